package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// orderWatch is a downstream that checks ordering as records arrive: values are
// "<key>:<seq>", seq growing per key in the order they were produced. It
// records how many calls were at it at once (in all and per key), each key's
// sequence and any record of a key that arrived before an earlier one.
type orderWatch struct {
	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	perKey      map[string]int // calls of a key at the sink now
	maxPerKey   int
	last        map[string]int // highest seq delivered per key
	delivered   map[string]int // value → times acknowledged
	overtaken   []string       // "k:5 after k:7", first effects only
}

func newOrderWatch() *orderWatch {
	return &orderWatch{perKey: map[string]int{}, last: map[string]int{}, delivered: map[string]int{}}
}

// enter registers a call of value v and returns its key and seq.
func (o *orderWatch) enter(v string) (string, int) {
	key, seqText, _ := strings.Cut(v, ":")
	seq, _ := strconv.Atoi(seqText)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight++
	o.maxInFlight = max(o.maxInFlight, o.inFlight)
	o.perKey[key]++
	o.maxPerKey = max(o.maxPerKey, o.perKey[key])
	return key, seq
}

// leave ends the call; acked says whether the downstream took it.
func (o *orderWatch) leave(v, key string, seq int, acked bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight--
	o.perKey[key]--
	if !acked {
		return
	}
	if o.delivered[v] > 0 {
		// A redelivery (after a rewind) repeats an effect that took place in
		// order; an idempotent sink keeps the first. Order is checked on first
		// effects.
		o.delivered[v]++
		return
	}
	if last, ok := o.last[key]; ok && seq < last {
		o.overtaken = append(o.overtaken, fmt.Sprintf("%s:%d after %s:%d", key, seq, key, last))
	}
	o.last[key] = max(o.last[key], seq)
	o.delivered[v]++
}

func (o *orderWatch) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.delivered)
}

// produceKeyed writes n records with keys k-<i mod keys> and values
// "k-<key>:<i>" to topic (the same key always lands in the same partition).
func (b *broker) produceKeyed(topic string, n, keys int, key func(i int) int) {
	b.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range n {
		k := i % keys
		if key != nil {
			k = key(i)
		}
		recs[i] = &kgo.Record{Topic: b.name(topic), Key: fmt.Appendf(nil, "k-%d", k), Value: fmt.Appendf(nil, "k-%d:%d", k, i),
			Headers: []kgo.RecordHeader{{Key: "event-id", Value: fmt.Appendf(nil, "e-%d", i)}}}
	}
	if err := b.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.t.Fatal(err)
	}
}

func concurrentConfig(cfg *workerconfig.Config, ordering string, maxInFlight int32) *workerconfig.Config {
	cfg.Processing = workerconfig.Processing{Ordering: ordering, MaxInFlight: maxInFlight}
	cfg.Consumer.MaxPollRecords = 4 * maxInFlight
	return cfg
}

// watchedService is an HTTP downstream behind o that answers after 0-latency
// (uniform) and rejects values respond says to (400: poison).
func watchedService(t *testing.T, o *orderWatch, latency time.Duration, respond func(key string, seq int) int) *service {
	return newService(t, func(c call) int {
		key, seq := o.enter(c.body)
		time.Sleep(rand.N(latency + 1))
		code := respond(key, seq)
		o.leave(c.body, key, seq, code == http.StatusOK)
		return code
	})
}

func TestKeyOrderingKeepsEachKeyInOrderWhileKeysOverlap(t *testing.T) {
	b := newBroker(t)
	b.createTopics(2, allTopics...)
	o := newOrderWatch()
	const n, keys, poisonEvery = 1200, 40, 97
	svc := watchedService(t, o, 4*time.Millisecond, func(_ string, seq int) int {
		if seq%poisonEvery == 0 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	b.produceKeyed("orders", n, keys, nil)
	startWorker(t, concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingKey, 32), nil)

	poison := (n + poisonEvery - 1) / poisonEvery
	eventually(t, 60*time.Second, "every good record delivered", func() bool { return o.count() == n-poison })
	eventually(t, 10*time.Second, "everything committed", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == n
	})
	if got := len(b.readAll("orders.dlq")); got != poison {
		t.Errorf("%d records in the DLQ, want the %d poison pills", got, poison)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.overtaken) > 0 {
		t.Errorf("a key's records overtook each other: %v", o.overtaken[:min(5, len(o.overtaken))])
	}
	if o.maxPerKey != 1 {
		t.Errorf("%d records of one key were at the sink at once, want 1", o.maxPerKey)
	}
	for v, times := range o.delivered {
		if times != 1 {
			t.Errorf("%s delivered %d times", v, times)
		}
	}
	// 40 keys over 2 partitions, 32 in flight: the sink sees far more than the
	// 2 calls at once that Partition ordering allows, and never more than 32.
	if o.maxInFlight <= 2 || o.maxInFlight > 32 {
		t.Errorf("at most %d calls were at the sink at once, want 3-32", o.maxInFlight)
	}
	t.Logf("max calls at once: %d", o.maxInFlight)
}

// An idempotency key unique per record (an event id) doesn't make every record
// a key of its own: the ordering key stays the Kafka record key.
func TestKeyOrderingUsesTheKafkaKeyEvenWithAnIdempotencyKey(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	o := newOrderWatch()
	const n = 600
	svc := watchedService(t, o, 3*time.Millisecond, func(string, int) int { return http.StatusOK })
	b.produceKeyed("orders", n, 10, nil)
	cfg := concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingKey, 32)
	cfg.IdempotencyKey = &workerconfig.IdempotencyKey{Header: "event-id"}
	startWorker(t, cfg, nil)

	eventually(t, 60*time.Second, "every record delivered", func() bool { return o.count() == n })
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.overtaken) > 0 || o.maxPerKey != 1 {
		t.Errorf("the Kafka key's order was not kept: %d of one key at once, overtaken %v", o.maxPerKey, o.overtaken[:min(5, len(o.overtaken))])
	}
	if o.maxInFlight < 2 {
		t.Errorf("10 keys, yet at most %d call at a time", o.maxInFlight)
	}
}

func TestUnorderedLetsRecordsOfOneKeyOverlap(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	o := newOrderWatch()
	const n = 400
	svc := watchedService(t, o, 3*time.Millisecond, func(string, int) int { return http.StatusOK })
	b.produceKeyed("orders", n, 1, nil) // one key
	startWorker(t, concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingUnordered, 16), nil)

	eventually(t, 60*time.Second, "every record delivered", func() bool { return o.count() == n })
	eventually(t, 10*time.Second, "everything committed", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == n
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.maxPerKey < 2 || o.maxInFlight > 16 {
		t.Errorf("one key had at most %d records at the sink at once (want 2-16), %d in all (want at most 16)", o.maxPerKey, o.maxInFlight)
	}
}

// TestKeyRoundsRefillFromTheClientsBuffer: a round takes the records the
// client fetched while the round's own records are at the sink, instead of
// waiting for them to finish and polling; a refill's records of a key wait
// behind the key's record at the sink. The first poll holds keys 0-3 (all
// there is); while they are at the sink, keys 4-7 and 0-3 arrive. The calls
// of the first 8 records wait (up to 10 s) for 8 records at the sink (of 12
// slots): with refills, keys 4-7 join
// the first four there; the second records of keys 0-3 must not. The refill
// window is widened to 30 s, the processing and http timeouts to 30 s (the
// poll interval to a minute, above them): on a loaded machine (the CI's race
// run) the produce after the first wave took longer than the 1 s window, and first-wave calls that timed out went to the
// retry topic, whose copies may overlap their key's later records (another
// partition) while the handlers of the calls given up on still finished.
func TestKeyRoundsRefillFromTheClientsBuffer(t *testing.T) {
	defer func(w time.Duration) { refillWindow = w }(refillWindow)
	refillWindow = 30 * time.Second
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	o := newOrderWatch()
	// 8 keys; 12 slots, so that a key's second record, were it handed out
	// beside its first, would find a free one.
	const keys, wave, maxInFlight = 8, 8, 12
	var firstPollAtSink atomic.Int32 // first-poll records at the sink now
	var fullBesideFirstPoll atomic.Bool
	svc := newService(t, func(c call) int {
		key, seq := o.enter(c.body)
		if seq < 4 {
			firstPollAtSink.Add(1)
			defer firstPollAtSink.Add(-1)
		}
		for deadline := time.Now().Add(10 * time.Second); seq < wave && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			o.mu.Lock()
			full := o.inFlight >= wave
			o.mu.Unlock()
			if full && firstPollAtSink.Load() > 0 {
				fullBesideFirstPoll.Store(true)
			}
			if full || fullBesideFirstPoll.Load() {
				break // everyone waiting goes, not only who saw it
			}
		}
		o.leave(c.body, key, seq, true)
		return http.StatusOK
	})
	produce := func(from, to int) {
		var recs []*kgo.Record
		for seq := from; seq < to; seq++ {
			k := seq % keys
			recs = append(recs, &kgo.Record{Topic: b.name("orders"), Key: fmt.Appendf(nil, "k-%d", k), Value: fmt.Appendf(nil, "k-%d:%d", k, seq)})
		}
		if err := b.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 4)
	cfg := concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingKey, maxInFlight)
	cfg.Sink.HTTP.Timeout.Duration = 30 * time.Second
	cfg.Delivery.ProcessingTimeout.Duration = 30 * time.Second
	cfg.Consumer.MaxPollInterval.Duration = time.Minute
	startWorker(t, cfg, nil)
	eventually(t, 30*time.Second, "the first poll's 4 records at the sink", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.inFlight == 4
	})
	produce(4, 12)

	eventually(t, 60*time.Second, "every record delivered", func() bool { return o.count() == 12 })
	eventually(t, 10*time.Second, "everything committed", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == 12
	})
	if !fullBesideFirstPoll.Load() {
		t.Errorf("%d records were never at the sink while the first poll's were: the round did not take the records fetched meanwhile", wave)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.maxPerKey != 1 || len(o.overtaken) > 0 {
		t.Errorf("a key had %d records at the sink at once (want 1); overtaken: %v", o.maxPerKey, o.overtaken)
	}
}

// batchWatch is an in-process batching sink (like postgres, MaxBatch 0) that
// checks each batch holds no two records of one key and that no key is in two
// calls at once.
type batchWatch struct {
	o       *orderWatch
	mu      sync.Mutex
	batches int
	biggest int
	dupKeys []string
}

func (s *batchWatch) Write(_ context.Context, recs []*sink.Record) []error {
	seen := map[string]bool{}
	type entered struct {
		v, key string
		seq    int
	}
	in := make([]entered, len(recs))
	for i, r := range recs {
		v := string(r.Rec.Value)
		key, seq := s.o.enter(v)
		in[i] = entered{v, key, seq}
		if seen[key] {
			s.mu.Lock()
			s.dupKeys = append(s.dupKeys, v)
			s.mu.Unlock()
		}
		seen[key] = true
	}
	time.Sleep(rand.N(3 * time.Millisecond))
	for _, e := range in {
		s.o.leave(e.v, e.key, e.seq, true)
	}
	s.mu.Lock()
	s.batches++
	s.biggest = max(s.biggest, len(recs))
	s.mu.Unlock()
	return make([]error, len(recs))
}
func (s *batchWatch) MaxBatch() int              { return 0 }
func (s *batchWatch) Ping(context.Context) error { return nil }
func (s *batchWatch) Close() error               { return nil }
func (s *batchWatch) snapshot() (int, int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches, s.biggest, append([]string(nil), s.dupKeys...)
}

func TestKeyOrderingBatchesHoldEachKeyOnce(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	o := newOrderWatch()
	snk := &batchWatch{o: o}
	const n, keys = 2000, 25
	b.produceKeyed("orders", n, keys, nil)
	startWorker(t, concurrentConfig(b.config(), workerconfig.OrderingKey, 64), snk)

	eventually(t, 60*time.Second, "every record delivered", func() bool { return o.count() == n })
	batches, biggest, dup := snk.snapshot()
	if len(dup) > 0 {
		t.Errorf("batches held two records of one key: %v", dup[:min(5, len(dup))])
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.overtaken) > 0 || o.maxPerKey != 1 {
		t.Errorf("key order broken: %v, %d of one key at once", o.overtaken[:min(5, len(o.overtaken))], o.maxPerKey)
	}
	if biggest < 2 {
		t.Errorf("the batching sink got batches of at most %d records", biggest)
	}
	t.Logf("%d batches, biggest %d, max records at the sink at once %d", batches, biggest, o.maxInFlight)
}

// A worker stopped while records of many keys are at the sink, finishing in
// any order and some never, commits only below its first unfinished record
// per partition: every record below the commit was acknowledged (or parked in
// a retry topic when its call was cut off by the shutdown), and the next owner
// re-reads the rest.
func TestConcurrentShutdownCommitsOnlyTheFinishedPrefix(t *testing.T) {
	b := newBroker(t)
	b.createTopics(3, allTopics...)
	o := newOrderWatch()
	hold := make(chan struct{})
	var holdOnce sync.Once
	var held atomic.Int32
	svc := watchedService(t, o, 40*time.Millisecond, func(key string, seq int) int {
		if key == "k-7" && seq >= 1000 {
			held.Add(1)
			<-hold // this key's later records never finish before the stop
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	const n = 3000
	b.produceKeyed("orders", n, 300, nil)
	cfg := concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingKey, 64)
	cfg.Consumer.ShutdownTimeout = metav1.Duration{Duration: 2 * time.Second}
	w := startWorker(t, cfg, nil)
	t.Cleanup(func() { holdOnce.Do(func() { close(hold) }) })
	eventually(t, 30*time.Second, "a held record and a few hundred delivered", func() bool { return held.Load() > 0 && o.count() >= 300 })
	w.stop(t)

	handled := map[string]bool{}
	o.mu.Lock()
	for v := range o.delivered {
		handled[v] = true
	}
	o.mu.Unlock()
	for _, r := range b.readAll("orders.retry.1") {
		handled[string(r.Value)] = true
	}
	committed := b.committed("test.orders")["orders"]
	total := int64(0)
	for _, r := range b.readAll("orders") {
		if r.Offset >= committed[r.Partition] {
			continue
		}
		total++
		if !handled[string(r.Value)] {
			t.Errorf("partition %d offset %d (%s) committed but neither acknowledged nor parked", r.Partition, r.Offset, r.Value)
		}
	}
	if total == 0 || total == n {
		t.Errorf("%d records committed at shutdown; the test wants a stop mid-stream", total)
	}
	t.Logf("%d acknowledged or parked, %d committed at shutdown", len(handled), total)
}

// With many records at the sink when it goes down, the circuit opens and the
// worker stops issuing: the records it did not get to stay in Kafka (not in
// the dead-letter topic), and every one is delivered once the sink is back.
// Only calls admitted while the breaker was closed may go to the retry topics:
// those at the sink when it tripped, up to maxInFlight, and the few admitted
// while the failures that trip it were coming back (fewer than the
// threshold), not the backlog.
func TestConcurrentCircuitOpenPausesAndLosesNothing(t *testing.T) {
	b := newBroker(t)
	b.createTopics(2, allTopics...)
	o := newOrderWatch()
	var down, fell atomic.Bool
	svc := watchedService(t, o, 2*time.Millisecond, func(_ string, seq int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		if seq == 600 && fell.CompareAndSwap(false, true) {
			down.Store(true) // the downstream falls over mid-stream, once
		}
		return http.StatusOK
	})
	const n, maxInFlight = 2000, 32
	b.produceKeyed("orders", n, 100, nil)
	cfg := concurrentConfig(b.httpConfig(svc.srv.URL), workerconfig.OrderingKey, maxInFlight)
	cfg.CircuitBreaker.FailureThreshold = 3
	cfg.CircuitBreaker.OpenDuration = metav1.Duration{Duration: 300 * time.Millisecond}
	w := startWorker(t, cfg, nil)

	eventually(t, 20*time.Second, "the circuit opens", func() bool {
		return counterValue(t, w.w, metricCircuitState, "", "") == circuitOpen
	})
	time.Sleep(time.Second)
	down.Store(false)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("delivered %d of %d; %s", o.count(), n, b.progress("orders"))
		}
	})
	eventually(t, 60*time.Second, "every record delivered after recovery", func() bool { return o.count() == n })
	eventually(t, 10*time.Second, "everything committed", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == n
	})
	if got := len(b.readAll("orders.dlq")); got != 0 {
		t.Errorf("%d records dead-lettered: an open circuit must pause, not drain", got)
	}
	if got, most := len(b.readAll("orders.retry.1")), maxInFlight+int(cfg.CircuitBreaker.FailureThreshold); got > most {
		t.Errorf("%d records parked in the first retry topic, want at most %d (maxInFlight + failureThreshold)", got, most)
	}
}
