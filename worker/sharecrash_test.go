package worker

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// shareCrashService is the downstream of a share group crash run: one URL
// path per worker slot (/w0, /w1, …), so it knows whose request is at the
// sink; it answers after 0-30 ms, refuses poison pills (422), and counts the
// effects per idempotency key. A kill can be armed to fire right after it
// answered one of a slot's requests.
type shareCrashService struct {
	srv      *httptest.Server
	inFlight []atomic.Int32
	mu       sync.Mutex
	effects  map[string]int // idempotency key → accepted requests
	pills    map[string]int // idempotency key → refused requests
	armed    []chan struct{}
}

func newShareCrashService(t *testing.T, slots int) *shareCrashService {
	s := &shareCrashService{inFlight: make([]atomic.Int32, slots), effects: map[string]int{}, pills: map[string]int{}, armed: make([]chan struct{}, slots)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return
		}
		slot, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/w"))
		if err != nil || slot < 0 || slot >= slots {
			rw.WriteHeader(http.StatusNotFound)
			return
		}
		s.inFlight[slot].Add(1)
		defer s.inFlight[slot].Add(-1)
		body, _ := io.ReadAll(r.Body)
		time.Sleep(rand.N(30 * time.Millisecond))
		key := r.Header.Get(sink.HeaderIdempotencyKey)
		s.mu.Lock()
		poison := strings.HasPrefix(string(body), "poison-")
		if poison {
			s.pills[key]++
		} else {
			s.effects[key]++
		}
		fire := s.armed[slot]
		s.armed[slot] = nil
		s.mu.Unlock()
		if poison {
			rw.WriteHeader(http.StatusUnprocessableEntity)
		} else {
			rw.WriteHeader(http.StatusOK)
		}
		if fire != nil {
			rw.(http.Flusher).Flush()
			close(fire)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// arm returns a channel closed right after the service answers slot's next
// request.
func (s *shareCrashService) arm(slot int) <-chan struct{} {
	c := make(chan struct{})
	s.mu.Lock()
	s.armed[slot] = c
	s.mu.Unlock()
	return c
}

func (s *shareCrashService) counts() (effects, pills map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.effects), maps.Clone(s.pills)
}

// TestShareGroupCrashLoopLosesNothing: three share group worker processes on
// a 2-partition topic while records flow in (1,000/s, 1 % poison pills);
// 12 SIGKILLs, each while its victim works: half while one of its requests is
// at the sink, half right after the sink answered one (its Accept is on its
// way: kgo sends acknowledgements within a second). Each victim is replaced
// at once. Every good record must take effect (none lost; redeliveries are
// reported, an idempotent sink absorbs them), every pill must reach the
// dead-letter topic and none take effect, and the group's lag must drain to 0.
func TestShareGroupCrashLoopLosesNothing(t *testing.T) {
	const slots, kills = 3, 12
	// The delivery count limit the operator sets (Kafka's highest): a record
	// whose holders die that many times is archived by the broker, lost
	// without a dead letter.
	limits := shareLimits{retries: 2, deliveryLimit: sluicev1.ShareDeliveryCountLimit, lock: 15 * time.Second}
	b := newShareBroker(t, limits)
	b.createTopics(2, "orders", "orders.dlq")
	svc := newShareCrashService(t, slots)
	base := b.shareConfig(b.httpConfig(svc.srv.URL), limits, 16)
	base.CircuitBreaker.FailureThreshold = 1000 // pills are not a sick downstream
	base.RateLimit.WarmupRecordsPerSecond = 0

	procs := make([]*workerProcess, slots)
	cmds := make([]*exec.Cmd, slots)
	for i := range slots {
		cfg := *base
		cfg.Sink = workerconfig.Sink{HTTP: &workerconfig.HTTPSink{URL: fmt.Sprintf("%s/w%d", svc.srv.URL, i), Timeout: base.Sink.HTTP.Timeout}}
		cfg.Server.Port = freePort(t)
		procs[i] = newWorkerProcess(t, &cfg)
		cmds[i] = procs[i].start()
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})

	// The flow: 50 records every 50 ms until the kills are done, 1 in 100 a
	// poison pill.
	isPill := func(i int) bool { return i%100 == 7 }
	stopFlow := make(chan struct{})
	produced := make(chan int)
	go func() {
		n := 0
		defer func() { produced <- n }()
		for {
			select {
			case <-stopFlow:
				return
			case <-time.After(50 * time.Millisecond):
			}
			b.produce("orders", n, n+50, func(i int, r *kgo.Record) {
				if isPill(i) {
					r.Value = []byte("poison-" + strconv.Itoa(i))
				}
			})
			n += 50
		}
	}()

	inFlight := 0
	for k := range kills {
		slot := k % slots
		time.Sleep(500*time.Millisecond + rand.N(time.Second)) // the victim (restarted two kills ago) is at work again
		point, landed := "sink-call", false
		if k%2 == 0 {
			landed = within(15*time.Second, func() bool { return svc.inFlight[slot].Load() > 0 })
		} else {
			point = "after-sink-answer"
			select {
			case <-svc.arm(slot):
				time.Sleep(rand.N(5 * time.Millisecond))
				landed = true
			case <-time.After(15 * time.Second):
			}
		}
		_ = cmds[slot].Process.Signal(syscall.SIGKILL)
		_ = cmds[slot].Wait()
		if landed {
			inFlight++
		}
		t.Logf("kill %d: slot %d at %s (in flight: %v)", k+1, slot, point, landed)
		cmds[slot] = procs[slot].start()
	}
	if inFlight < kills*8/10 {
		t.Errorf("only %d of %d kills landed while the victim worked (want at least 80 %%)", inFlight, kills)
	}
	close(stopFlow)
	total := <-produced
	pillCount := 0
	for i := range total {
		if isPill(i) {
			pillCount++
		}
	}

	// Wait for the drain; the checks below then name what is missing.
	deadline := time.Now().Add(90 * time.Second)
	for {
		effects, _ := svc.counts()
		dl := b.readAll("orders.dlq")
		if len(effects) >= total-pillCount && len(dl) >= pillCount && b.shareLag("test.orders") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after 90 s: %d of %d good records took effect, %d dead letters (want %d), share lag %d",
				len(effects), total-pillCount, len(dl), pillCount, b.shareLag("test.orders"))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	effects, pills := svc.counts()
	redelivered := 0
	for _, n := range effects {
		redelivered += n - 1
	}
	missing := 0
	for _, r := range b.readAll("orders") {
		key := fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
		if strings.HasPrefix(string(r.Value), "poison-") {
			if effects[key] > 0 {
				t.Errorf("poison pill %s took effect", r.Value)
			}
			continue
		}
		if effects[key] == 0 {
			missing++
			if missing <= 10 {
				t.Errorf("record %s (%s) never took effect", r.Value, key)
			}
		}
	}
	deadLettered := map[string]bool{}
	for _, r := range b.readAll("orders.dlq") {
		if !strings.HasPrefix(string(r.Value), "poison-") {
			t.Errorf("a good record was dead-lettered: %s (%v)", r.Value, headerMap(r))
		}
		deadLettered[string(r.Value)] = true
	}
	if len(deadLettered) != pillCount {
		t.Errorf("%d distinct pills dead-lettered, want %d", len(deadLettered), pillCount)
	}
	t.Logf("%d good records took effect, %d redeliveries (at-least-once, absorbed by the idempotent sink), %d pill requests for %d pills, %d missing",
		len(effects), redelivered, sumCounts(pills), pillCount, missing)
}

// within polls cond every millisecond for up to d and says whether it held.
func within(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
