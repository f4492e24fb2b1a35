package demo

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// failurePlan is when the demo's HTTP receiver (the default sink) fails, as a
// service downstream of a pipeline does now and then. Times are offsets into
// the run of length Duration:
//   - flaky, from 20% to 80% of the run: 5% of requests get 503 (retry topics);
//   - at the same time one shard is down: the keys on it (one in
//     brokenShardOf) get 503 on every attempt, so those records exhaust
//     their retries and land in the DLQ;
//   - an outage of 4 s at 30%: every request gets 503 (the circuit breaker
//     opens and the partitions pause: backpressure, not dead letters);
//   - a value that is not a valid order gets 400: a poison pill.
//
// After 80% everything succeeds: were the shard down for good, its last
// records, alone in the retry topics at the end of the run, would fail every
// call, and the circuit breaker would rightly keep them waiting there.
type failurePlan struct {
	Duration time.Duration
}

const (
	flakyShare    = 0.05
	outageLength  = 4 * time.Second
	brokenShardOf = 200
)

func (p failurePlan) flaky(t time.Duration) bool {
	return t >= p.Duration/5 && t < p.Duration*4/5
}

func (p failurePlan) outage(t time.Duration) bool {
	from := p.Duration * 3 / 10
	return t >= from && t < from+outageLength
}

// brokenShard says whether key lives on the shard that goes down.
func brokenShard(key string) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return h.Sum32()%brokenShardOf == 7
}

// order is what the receiver accepts.
type order struct {
	ID     string  `json:"id"`
	Amount float64 `json:"amount"`
}

// respond decides the receiver's answer to a POST t into the run; roll is a
// uniform random number in [0, 1).
func (p failurePlan) respond(t time.Duration, key string, body []byte, roll float64) (int, string) {
	var o order
	if err := json.Unmarshal(body, &o); err != nil || o.ID == "" {
		return http.StatusBadRequest, "not a valid order: " + shorten(errString(err), 80)
	}
	switch {
	case p.outage(t):
		return http.StatusServiceUnavailable, "outage"
	case p.flaky(t) && brokenShard(key):
		return http.StatusServiceUnavailable, "shard unavailable"
	case p.flaky(t) && roll < flakyShare:
		return http.StatusServiceUnavailable, "overloaded, try again"
	}
	return http.StatusOK, "ok"
}

func errString(err error) string {
	if err == nil {
		return "no id"
	}
	return err.Error()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// keyStats is what the receiver saw of one idempotency key.
type keyStats struct {
	Deliveries int // 2xx answers
	Failures   int // 503 answers
	Rejections int // 400 answers
	// Effect is the order id whose effect this key applied (first delivery).
	Effect string
}

// receiver is the demo's HTTP sink: a service that applies each order once
// per idempotency key (a redelivery is acknowledged and changes nothing) and
// counts every delivery.
type receiver struct {
	// runLength is the failure plan's Duration (0: no failures but the broken shard).
	runLength atomic.Int64
	start     atomic.Pointer[time.Time]

	mu sync.Mutex
	// keys and effects per pipeline (the URL path /ingest/<pipeline>).
	keys     map[string]map[string]*keyStats
	effects  map[string]map[string]int
	delivers map[string]int64

	delivered, failed, rejected atomic.Int64
	firstDelivery               atomic.Pointer[time.Time]

	srv *http.Server
	ln  net.Listener
}

func newReceiver(plan failurePlan) *receiver {
	r := &receiver{keys: map[string]map[string]*keyStats{}, effects: map[string]map[string]int{}, delivers: map[string]int64{}}
	r.runLength.Store(int64(plan.Duration))
	return r
}

func (r *receiver) plan() failurePlan {
	return failurePlan{Duration: time.Duration(r.runLength.Load())}
}

// listen binds the receiver to a loopback port and serves until Close.
func (r *receiver) listen() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/ingest/{pipeline}", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return nil
}

// URL is where pipeline's workers deliver.
func (r *receiver) URL(pipeline string) string {
	return "http://" + r.ln.Addr().String() + "/ingest/" + pipeline
}

// startRun sets the run's time zero, from which the failure plan counts.
func (r *receiver) startRun(t time.Time) { r.start.Store(&t) }

func (r *receiver) sinceStart() time.Duration {
	if s := r.start.Load(); s != nil {
		return time.Since(*s)
	}
	return -1
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	t := r.sinceStart()
	if req.Method == http.MethodHead { // the worker's readiness check
		if r.plan().outage(t) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	}
	if req.Method != http.MethodPost {
		http.Error(w, "POST orders here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := req.Header.Get("Idempotency-Key")
	pipeline := req.PathValue("pipeline")
	code, msg := r.plan().respond(t, key, body, rand.Float64())
	r.record(pipeline, key, body, code)
	if code != http.StatusOK {
		http.Error(w, msg, code)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// record counts one answer; a key's first successful delivery applies its
// effect.
func (r *receiver) record(pipeline, key string, body []byte, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := r.keys[pipeline]
	if ks == nil {
		ks = map[string]*keyStats{}
		r.keys[pipeline] = ks
		r.effects[pipeline] = map[string]int{}
	}
	st := ks[key]
	if st == nil {
		st = &keyStats{}
		ks[key] = st
	}
	switch code {
	case http.StatusOK:
		st.Deliveries++
		r.delivered.Add(1)
		r.delivers[pipeline]++
		if st.Deliveries == 1 {
			var o order
			_ = json.Unmarshal(body, &o)
			st.Effect = o.ID
			r.effects[pipeline][o.ID]++
			now := time.Now()
			r.firstDelivery.CompareAndSwap(nil, &now)
		}
	case http.StatusBadRequest:
		st.Rejections++
		r.rejected.Add(1)
	default:
		st.Failures++
		r.failed.Add(1)
	}
}

// deliveredTo counts the successful deliveries to pipeline's URL.
func (r *receiver) deliveredTo(pipeline string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivers[pipeline]
}

// snapshot copies what the receiver saw of pipeline: stats per key and
// effects per order id.
func (r *receiver) snapshot(pipeline string) (map[string]keyStats, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make(map[string]keyStats, len(r.keys[pipeline]))
	for k, v := range r.keys[pipeline] {
		keys[k] = *v
	}
	effects := make(map[string]int, len(r.effects[pipeline]))
	for k, v := range r.effects[pipeline] {
		effects[k] = v
	}
	return keys, effects
}

// phase names what the receiver is doing now, for the view.
func (r *receiver) phase() string {
	t, plan := r.sinceStart(), r.plan()
	var parts []string
	switch {
	case plan.outage(t):
		parts = append(parts, "OUTAGE: every request 503")
	case plan.flaky(t):
		parts = append(parts, "flaky: 5% of requests 503", "a shard is down: 1 key in 200 gets 503 on every attempt")
	default:
		parts = append(parts, "healthy")
	}
	return strings.Join(parts, " · ")
}

func (r *receiver) Close() error {
	if r.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return r.srv.Close()
	}
	return err
}
