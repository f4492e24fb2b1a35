//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// manifest is a log-sink pipeline as a user writes it, with extra spec lines.
func manifest(ns, name, bootstrap, topic, extra string) string {
	return fmt.Sprintf(`apiVersion: streaming.sluice.dev/v1alpha1
kind: StreamPipeline
metadata: {name: %s, namespace: %s}
spec:
  kafka: {bootstrapServers: [%q]}
  source: {topic: %s}
  sink: {log: {}}
  topics: {replicationFactor: 1, minInSyncReplicas: 1}
%s`, name, ns, bootstrap, topic, extra)
}

// Scenario 5a: `kubectl apply` refuses invalid manifests, a few of each class,
// with a message that names the field, and creates nothing.
func TestScenario5InvalidManifestsAreRefused(t *testing.T) {
	rep := newReport(t, "scenario 5a (invalid manifests refused by kubectl apply)")
	ns := s.newNamespace(t, "admission")
	for _, tc := range []struct {
		name, extra string
		bootstrap   string // default: the test broker
		topic       string // default: orders
		want        string // in kubectl's message
	}{
		{"bad-duration", "  consumer: {sessionTimeout: 10 seconds}\n", "", "", "spec.consumer.sessionTimeout"},
		{"bad-duration-negative", "  startup: {maxJitter: -5s}\n", "", "", "spec.startup.maxJitter"},
		{"port-out-of-range", "", "kafka:70000", "", "spec.kafka.bootstrapServers"},
		{"port-zero", "", "kafka:0", "", "spec.kafka.bootstrapServers"},
		{"dlq-is-source", "  delivery: {deadLetterTopic: orders}\n", "", "", "spec.delivery.deadLetterTopic"},
		// the source topic is one of the retry topics (orders.r.1)
		{"retry-is-source", "  delivery: {retry: {topicPrefix: orders.r}}\n", "", "orders.r.1", "spec.delivery.retry.topicPrefix"},
		{"sink-is-source", "  sink: {kafka: {topic: orders}}\n", "", "", "spec.sink.kafka.topic"},
		{"label-value", "  template: {labels: {team: \"not a valid/label\"}}\n", "", "", "spec.template.labels"},
		{"label-value-too-long", "  template: {labels: {team: " + strings.Repeat("x", 64) + "}}\n", "", "", "spec.template.labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bootstrap := tc.bootstrap
			if bootstrap == "" {
				bootstrap = s.bootstrap
			}
			topic := tc.topic
			if topic == "" {
				topic = "orders"
			}
			m := manifest(ns, tc.name, bootstrap, topic, tc.extra)
			if strings.Contains(tc.extra, "  sink:") { // one sink: the case's
				m = strings.Replace(m, "  sink: {log: {}}\n", "", 1)
			}
			out, err := s.env.runKubectl(m, "apply", "-f", "-")
			var exit *exec.ExitError
			if err == nil || !asExit(err, &exit) {
				t.Fatalf("kubectl apply accepted:\n%s\n%s", m, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("refused, but the message does not name %s: %s", tc.want, out)
			}
			rep.set(tc.name, "%s", firstLine(out))
		})
	}
	l := &sluicev1.StreamPipelineList{}
	if err := s.k.c.List(context.Background(), l, client.InNamespace(ns)); err != nil || len(l.Items) > 0 {
		t.Errorf("refused manifests left %d pipelines (%v)", len(l.Items), err)
	}
}

func asExit(err error, exit **exec.ExitError) bool {
	ok := errors.As(err, exit)
	return ok && (*exit).ExitCode() != 0
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(l) > 160 {
		l = l[:160] + "…"
	}
	return l
}

// Scenario 5b: two pipelines on one source topic get topics of their own, and
// deleting one removes its Deployment and, with deletionPolicy Delete, its
// own topics only; with Retain its topics stay.
//
// Pins issue 10's defect 6 (shared default retry/DLQ names, and Delete
// deleting the other pipeline's topics).
func TestScenario5DeletionRemovesOnlyItsOwn(t *testing.T) {
	rep := newReport(t, "scenario 5b (two pipelines on one topic; Delete and Retain)")
	ns := s.newNamespace(t, "deletion")
	s.b.createTopic(t, "shared", 2)
	ctx := context.Background()
	for _, p := range []struct{ name, policy string }{{"deleter", "Delete"}, {"keeper", "Retain"}} {
		m := manifest(ns, p.name, s.bootstrap, "shared", "") + "    deletionPolicy: " + p.policy + "\n"
		m = strings.Replace(m, "  topics: {replicationFactor: 1, minInSyncReplicas: 1}\n", "  topics:\n    replicationFactor: 1\n    minInSyncReplicas: 1\n", 1)
		if out, err := s.env.runKubectl(m, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply %s: %v\n%s", p.name, err, out)
		}
	}
	s.waitReady(t, ns, "deleter", 3*time.Minute)
	s.waitReady(t, ns, "keeper", 3*time.Minute)
	own := func(name string) []string {
		g := ns + "." + name
		return []string{g + ".retry.1", g + ".retry.2", g + ".retry.3", g + ".dlq"}
	}
	topics := s.b.topics(t)
	for _, name := range append(own("deleter"), own("keeper")...) {
		if !topics[name] {
			t.Errorf("topic %s missing: each pipeline on one source topic gets its own retry and DLQ topics", name)
		}
	}
	rep.set("topics of deleter", "%s", strings.Join(own("deleter"), ", "))
	rep.set("topics of keeper", "%s", strings.Join(own("keeper"), ", "))

	del := func(name string) {
		t0 := time.Now()
		if out, err := s.env.runKubectl("", "-n", ns, "delete", "sp", name, "--wait", "--timeout=2m"); err != nil {
			t.Fatalf("kubectl delete sp %s: %v\n%s", name, err, out)
		}
		eventually(t, time.Minute, name+"'s Deployment gone", func() (bool, string) {
			d := &appsv1.Deployment{}
			err := s.k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-worker"}, d)
			return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprint(err)
		})
		rep.set("deleted "+name, "in %.1fs", time.Since(t0).Seconds())
	}
	del("deleter")
	topics = s.b.topics(t)
	for _, name := range own("deleter") {
		if topics[name] {
			t.Errorf("deletionPolicy Delete left topic %s", name)
		}
	}
	for _, name := range append(own("keeper"), "shared") {
		if !topics[name] {
			t.Errorf("deleting the Delete pipeline removed %s, which is not its own", name)
		}
	}
	del("keeper")
	topics = s.b.topics(t)
	for _, name := range own("keeper") {
		if !topics[name] {
			t.Errorf("deletionPolicy Retain: topic %s was deleted", name)
		}
	}
}
