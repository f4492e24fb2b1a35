//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Scenario 11 (in an s6 file: before scenario 5c in s7, which must run last):
// the KIP-848 sample (spec.consumer.groupProtocol Consumer) on the real
// kubelet. The workers' group is a KIP-848 group whose members are the
// worker pods, with every partition assigned; a scale-up from 2 to 3 and then
// a config rollout hand partitions over while records flow, and nothing is
// lost or applied twice.
//
// The broker is kfake, whose KIP-848 coordinator assigns like Kafka's
// (incrementally, from heartbeats) but is not Kafka: the worker's
// TestConsumerGroupProtocolSharesThePartitions runs the protocol on Apache
// Kafka 4.4 as well.
func TestScenario11ConsumerGroupProtocolScalesAndRolls(t *testing.T) {
	rep := newReport(t, "scenario 11 (KIP-848 consumer group protocol: members, scale-up, rollout)")
	ns := s.newNamespace(t, "nextgen")
	const topic = "settlements"
	s.b.createTopic(t, topic, 6)
	sp := s.sample(t, "nextgen", ns)
	sp.Spec.Source.Topic = topic
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Scaling.MinReplicas, sp.Spec.Scaling.MaxReplicas = ptrTo[int32](2), ptrTo[int32](2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t, ns, sp.Name, 3*time.Minute)
	rep.mark("Ready with 2 workers")
	s.waitConsumerGroupIsThePods(t, ctx, ns, sp, 2, time.Minute)
	rep.mark("a KIP-848 group of the 2 pods, 6 partitions assigned")

	recs, good, _ := orders(topic, "s", 0, 9000, 0)
	s.b.produce(t, recs[:3000])

	// Scale-up: the third pod joins by heartbeat and gets partitions from
	// the others, one member at a time.
	cur := s.getPipeline(t, ns, sp.Name)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Scaling.MinReplicas, cur.Spec.Scaling.MaxReplicas = ptrTo[int32](3), ptrTo[int32](3)
	if err := s.k.c.Patch(ctx, cur, patch); err != nil {
		t.Fatal(err)
	}
	scaled := time.Now()
	s.b.produce(t, recs[3000:6000])
	s.waitConsumerGroupIsThePods(t, ctx, ns, sp, 3, 3*time.Minute)
	rep.set("scale-up", "3 members, each with partitions, %.1fs after the patch", time.Since(scaled).Seconds())

	// A config change rolls the pods while records flow.
	cur = s.getPipeline(t, ns, sp.Name)
	oldHash := cur.Status.WorkerConfigHash
	patch = client.MergeFrom(cur.DeepCopy())
	cur.Spec.CircuitBreaker.FailureThreshold = ptrTo[int32](6)
	if err := s.k.c.Patch(ctx, cur, patch); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	s.b.produce(t, recs[6000:])
	eventually(t, 5*time.Minute, "the rollout done: 3 ready pods run the new config", func() (bool, string) {
		pods, err := s.workerPods(ctx, ns, sp.Name)
		if err != nil {
			return false, err.Error()
		}
		fresh, all := 0, 0
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue
			}
			all++
			if p.Annotations[sluicev1.AnnotationConfigHash] != oldHash && podReady(&p) {
				fresh++
			}
		}
		return fresh == 3 && all == 3, fmt.Sprintf("%d pods, %d new and ready", all, fresh)
	})
	rep.set("rollout took", "%.1fs", time.Since(changed).Seconds())
	s.waitConsumerGroupIsThePods(t, ctx, ns, sp, 3, 2*time.Minute)
	s.waitReady(t, ns, sp.Name, 2*time.Minute)

	s.checkAppliedOnce(t, rep, ns, sp.Name, good, 5*time.Minute)
	s.checkNoRejectedStatusWrites(t)
}

// waitConsumerGroupIsThePods waits until the pipeline's group, described
// with KIP-848's ConsumerGroupDescribe, has exactly the running worker pods
// as members (by client ID, "sluice-worker-<pod>"), n of them, all of the
// consumer protocol, each with partitions (of the source or retry topics: the
// broker's assignor spreads them all) and every partition of the source
// topic assigned once.
func (s *suite) waitConsumerGroupIsThePods(t testing.TB, ctx context.Context, ns string, sp *sluicev1.StreamPipeline, n int, within time.Duration) {
	t.Helper()
	group, topic := sp.ConsumerGroup(), sp.Spec.Source.Topic
	eventually(t, within, fmt.Sprintf("the KIP-848 group %s is the %d worker pods", group, n), func() (bool, string) {
		pods, err := s.workerPods(ctx, ns, sp.Name)
		if err != nil {
			return false, err.Error()
		}
		var running []string
		for _, p := range pods {
			if p.DeletionTimestamp == nil && podReady(&p) {
				running = append(running, p.Name)
			}
		}
		slices.Sort(running)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		topics, err := s.b.adm.ListTopics(dctx, topic)
		if err != nil {
			return false, "list topics: " + err.Error()
		}
		sourceID := topics[topic].ID
		// The raw ConsumerGroupDescribe: kfake answers with topic IDs only
		// (Kafka sends the names too), which kadm's describe keys by name.
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(dctx, s.b.cl)
		if err != nil {
			return false, "describe: " + err.Error()
		}
		if len(resp.Groups) != 1 {
			return false, fmt.Sprintf("describe: %d groups", len(resp.Groups))
		}
		g := resp.Groups[0]
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return false, "describe: " + err.Error()
		}
		var members []string
		assigned := map[int32]int{}
		for _, m := range g.Members {
			if m.MemberType == 0 {
				return false, fmt.Sprintf("member %s runs the classic protocol", m.ClientID)
			}
			n := 0 // the broker's assignment, over the source and retry topics
			for _, tp := range m.Assignment.TopicPartitions {
				n += len(tp.Partitions)
				if tp.TopicID == sourceID || tp.Topic == topic {
					for _, p := range tp.Partitions {
						assigned[p]++
					}
				}
			}
			if n == 0 {
				return false, fmt.Sprintf("member %s has no partition yet", m.ClientID)
			}
			members = append(members, strings.TrimPrefix(m.ClientID, "sluice-worker-")) // the worker's client ID
		}
		slices.Sort(members)
		state := fmt.Sprintf("members %v, pods %v, partitions %v", members, running, assigned)
		if len(running) != n || !slices.Equal(members, running) || len(assigned) != 6 {
			return false, state
		}
		for _, k := range assigned {
			if k != 1 {
				return false, state
			}
		}
		return true, state
	})
}
