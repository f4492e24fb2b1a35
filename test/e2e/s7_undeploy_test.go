//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scenario 5c (last: it takes the operator away and puts it back): `make
// undeploy` completes while a pipeline with deletionPolicy Delete exists, and
// the pipeline's topics are deleted by its finalizer on the way. Then `make
// install deploy` restores the operator with the image it ran.
//
// Pins issue 10's defect 5 (undeploy hung: the manager and its RBAC went in
// the same command as the pipelines, so the finalizer never ran).
func TestScenario5UndeployCompletesWithPipelinesPresent(t *testing.T) {
	rep := newReport(t, "scenario 5c (make undeploy with a Delete pipeline present)")
	ctx := context.Background()
	d := &appsv1.Deployment{}
	if err := s.k.c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: operatorDeployment}, d); err != nil {
		t.Fatal(err)
	}
	img := d.Spec.Template.Spec.Containers[0].Image

	ns := s.newNamespace(t, "undeploy")
	s.b.createTopic(t, "leaving", 1)
	m := manifest(ns, "leaving", s.bootstrap, "leaving", "")
	m = strings.Replace(m, "  topics: {replicationFactor: 1, minInSyncReplicas: 1}\n",
		"  topics: {replicationFactor: 1, minInSyncReplicas: 1, deletionPolicy: Delete}\n", 1)
	if out, err := s.env.runKubectl(m, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s.waitReady(t, ns, "leaving", 3*time.Minute)
	dlq := ns + ".leaving.dlq"
	if !s.b.topics(t)[dlq] {
		t.Fatalf("no topic %s", dlq)
	}

	t0 := time.Now()
	out, err := s.make(t, 4*time.Minute, "undeploy")
	if err != nil {
		t.Fatalf("make undeploy: %v\n%s", err, out)
	}
	rep.set("make undeploy", "%.1fs", time.Since(t0).Seconds())
	if s.b.topics(t)[dlq] {
		t.Errorf("make undeploy left the Delete pipeline's topic %s", dlq)
	}
	if _, err := s.k.cs.Discovery().ServerResourcesForGroupVersion("streaming.sluice.dev/v1alpha1"); err == nil {
		t.Errorf("the CRD is still served after make undeploy")
	}

	t1 := time.Now()
	if out, err := s.make(t, 5*time.Minute, "install", "deploy", "IMG="+img); err != nil {
		t.Fatalf("make install deploy: %v\n%s", err, out)
	}
	s.scaleOperator(t, 1)
	rep.set("make install deploy (restore)", "%.1fs, image %s", time.Since(t1).Seconds(), img)
}

// make runs a Makefile target of the repository with the suite's kubectl and
// kubeconfig.
func (s *suite) make(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", append([]string{"-s", "KUBECTL=" + s.env.kubectl}, args...)...)
	cmd.Dir = s.env.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.env.kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
