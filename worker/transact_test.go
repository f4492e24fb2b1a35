package worker

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// readCommitted reads a topic as a read_committed consumer until it has been
// quiet for a while (transaction markers make end offsets unusable as a stop).
// It first waits until no transaction is open on the topic: a SIGKILLed
// worker's transaction holds read_committed readers back (at the last stable
// offset) until the broker aborts it, up to its timeout plus Kafka's 10 s
// cleanup interval later.
func (b *broker) readCommitted(topic string) []*kgo.Record {
	b.t.Helper()
	b.waitNoOpenTransactions(topic)
	return b.readUntilQuiet(topic, true)
}

// readUntilQuiet reads a topic from the start until it has been quiet for a
// while, as a read_committed consumer or, with committed false, as a
// read_uncommitted one (which sees the records of aborted transactions too).
func (b *broker) readUntilQuiet(topic string, committed bool) []*kgo.Record {
	b.t.Helper()
	isolation := kgo.ReadUncommitted()
	if committed {
		isolation = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ConsumeTopics(b.name(topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(isolation),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for quiet := 0; quiet < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return out
}

// waitNoOpenTransactions waits until every partition's last stable offset has
// reached its high watermark.
func (b *broker) waitNoOpenTransactions(topic string) {
	b.t.Helper()
	ctx := context.Background()
	var open []string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		hw, err := b.admin.ListEndOffsets(ctx, b.name(topic))
		if err != nil {
			b.t.Fatal(err)
		}
		lso, err := b.admin.ListCommittedOffsets(ctx, b.name(topic))
		if err != nil {
			b.t.Fatal(err)
		}
		open = open[:0]
		hw.Each(func(o kadm.ListedOffset) {
			if s, ok := lso.Lookup(o.Topic, o.Partition); !ok || s.Offset != o.Offset {
				open = append(open, fmt.Sprintf("%d: stable %d, end %d", o.Partition, s.Offset, o.Offset))
			}
		})
		if len(open) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("%s: transactions still open after 60s: %v", topic, open)
}

// TestExactlyOnceKafkaSinkSurvivesCrashes runs the crash harness
// (crashharness_test.go) on the transactional kafka sink: three worker
// processes, 10 SIGKILLs at points spread over a transaction's life (its
// output produce, its dead-letter copy, its commit, a member joining,
// shutdown), each while its victim works. A read_committed reader then sees
// every source record exactly once, in the output or (a pill) in the
// dead-letter topic; a read_uncommitted reader counts the redeliveries that
// aborted transactions carried.
func TestExactlyOnceKafkaSinkSurvivesCrashes(t *testing.T) {
	newCrashRun(t, crashPlan{
		g: kafkaExactlyOnce, kills: 10, workers: 3,
		wl: workload{total: 400_000, poisonEvery: 500},
	}).run()
}

// TestExactlyOnceKafkaSinkSurvivesRandomKillsOnRealKafka is the transactional
// kafka sink's crash test on a real cluster (`make test-kafka`), where the
// harness can't land its kills with kfake's request control: it SIGKILLs the
// worker binary at random moments while 20,000 records flow, and a
// read_committed reader sees every source record exactly once.
func TestExactlyOnceKafkaSinkSurvivesRandomKillsOnRealKafka(t *testing.T) {
	if !testkafka.Real() {
		t.Skipf("the real-Kafka counterpart of TestExactlyOnceKafkaSinkSurvivesCrashes: runs under `make test-kafka` (%s set)", testkafka.EnvBrokers)
	}
	b := newBroker(t)
	b.createTopics(4, "orders", "orders.dlq", "orders-out")
	cfg := crashConfig(t, b)
	cfg.Sink = workerconfig.Sink{Kafka: &workerconfig.KafkaSink{Topic: b.name("orders-out")}}
	cfg.Delivery.Semantics = "ExactlyOnce"
	cfg.Delivery.ProcessingTimeout = cfg.Consumer.MaxPollInterval // the config check refuses longer
	proc := newWorkerProcess(t, cfg)

	const total, poisonEvery, kills = 20_000, 1000, 10
	value := func(i int) []byte { return poisonOr(i, poisonEvery, fmt.Sprintf(`{"id":"r-%d"}`, i)) }
	produced := produceInBackground(b, total, 1000, 50*time.Millisecond, value)
	proc.crashLoop(kills, 300*time.Millisecond, time.Second, nil)
	<-produced

	b.waitForDeadMembersToLeave(t, 60*time.Second)
	final := proc.start()
	committed := func() int64 { return sumCommitted(b.committed("test.orders"), "orders") }
	deadline := time.Now().Add(120 * time.Second)
	for committed() < total {
		if time.Now().After(deadline) {
			_ = final.Process.Signal(syscall.SIGQUIT)
			_ = final.Wait()
			log := proc.log()
			t.Fatalf("after %d kills the group committed %d of %d in 120s\n%s", kills, committed(), total, tail(log, 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitHealthy(t, cfg.Server.Port) // its SIGTERM handler is installed
	_ = final.Process.Signal(syscall.SIGTERM)
	if err := final.Wait(); err != nil {
		log := proc.log()
		t.Errorf("the worker did not exit cleanly on SIGTERM: %v\n%s", err, tail(log, 3000))
	}

	distinct := expectEachOnceReadCommitted(t, b, total, value)
	t.Logf("%d SIGKILLs; %d records, each exactly once", kills, distinct)
}

// expectEachOnceReadCommitted reads the output topic and the DLQ with
// read_committed and checks that each of the total records (value(i)) is there
// exactly once; it returns how many distinct records it saw.
func expectEachOnceReadCommitted(t *testing.T, b *broker, total int, value func(int) []byte) int {
	t.Helper()
	seen := map[string]int{}
	for _, r := range b.readCommitted("orders-out") {
		seen[string(r.Value)]++
	}
	for _, r := range b.readCommitted("orders.dlq") {
		seen[string(r.Value)]++
	}
	for i := range total {
		if n := seen[string(value(i))]; n != 1 {
			t.Errorf("%s seen %d times by a read_committed reader, want exactly once", value(i), n)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct records in the output and DLQ, want %d", len(seen), total)
	}
	return len(seen)
}
