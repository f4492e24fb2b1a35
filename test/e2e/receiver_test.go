//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

// receiver is a real HTTP service the http pipelines deliver to, one sink per
// URL path (/<namespace>/<pipeline>). It applies each order once per
// Idempotency-Key, as a careful service does, and counts what it saw: every
// delivery per key, the effects per order id (a second effect for one id is a
// duplicate effect: a redelivery under another key), and when each pod (by
// its address: pods are not masqueraded) delivered. It answers 400 to a body
// that is not an order (a poison pill), 503 to a share of requests (transient
// failures), and 501 to HEAD, as the service in issue 10 did.
type receiver struct {
	addr string
	srv  *http.Server

	mu    sync.Mutex
	sinks map[string]*sinkStats
}

type sinkStats struct {
	failShare  float64
	keys       map[string]int         // idempotency key → 2xx deliveries
	effects    map[string]int         // order id → effects applied
	byAddr     map[string][]time.Time // remote IP → times of its 2xx deliveries
	failures   int                    // 503s sent
	rejections int                    // 400s sent
}

func startReceiver(host string) (*receiver, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	r := &receiver{addr: ln.Addr().String(), sinks: map[string]*sinkStats{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) close() { _ = r.srv.Close() }

// url is the sink URL of one pipeline.
func (r *receiver) url(ns, pipeline string) string {
	return fmt.Sprintf("http://%s/%s/%s", r.addr, ns, pipeline)
}

func (r *receiver) sink(path string) *sinkStats {
	s := r.sinks[path]
	if s == nil {
		s = &sinkStats{keys: map[string]int{}, effects: map[string]int{}, byAddr: map[string][]time.Time{}}
		r.sinks[path] = s
	}
	return s
}

// failShare makes a share of one pipeline's requests fail with 503.
func (r *receiver) setFailShare(ns, pipeline string, share float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sink("/" + ns + "/" + pipeline).failShare = share
}

// order is what the receiver accepts.
type order struct {
	ID string `json:"id"`
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodHead {
		w.WriteHeader(http.StatusNotImplemented)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	now := time.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sink(req.URL.Path)
	var o order
	if err := json.Unmarshal(body, &o); err != nil || o.ID == "" {
		s.rejections++
		http.Error(w, "not an order", http.StatusBadRequest)
		return
	}
	if s.failShare > 0 && rand.Float64() < s.failShare {
		s.failures++
		http.Error(w, "overloaded, try again", http.StatusServiceUnavailable)
		return
	}
	key := req.Header.Get("Idempotency-Key")
	if s.keys[key] == 0 {
		s.effects[o.ID]++
	}
	s.keys[key]++
	s.byAddr[host] = append(s.byAddr[host], now)
	w.WriteHeader(http.StatusOK)
}

// sinkReport is what one pipeline's sink saw.
type sinkReport struct {
	deliveries, keys, failures, rejections int
	effects                                map[string]int
	// deliveriesByKey counts 2xx deliveries per idempotency key.
	deliveriesByKey map[string]int
	byAddr          map[string][]time.Time
}

func (r *receiver) report(ns, pipeline string) sinkReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sink("/" + ns + "/" + pipeline)
	rep := sinkReport{keys: len(s.keys), failures: s.failures, rejections: s.rejections,
		effects: make(map[string]int, len(s.effects)), deliveriesByKey: make(map[string]int, len(s.keys)), byAddr: map[string][]time.Time{}}
	for k, n := range s.keys {
		rep.deliveries += n
		rep.deliveriesByKey[k] = n
	}
	for id, n := range s.effects {
		rep.effects[id] = n
	}
	for a, ts := range s.byAddr {
		rep.byAddr[a] = append([]time.Time(nil), ts...)
	}
	return rep
}

// effectCheck compares the effects with the good ids produced.
type effectCheck struct {
	applied, duplicates, lost, unexpected int
	lostIDs                               []string
}

func checkEffects(effects map[string]int, want []string) effectCheck {
	var c effectCheck
	wanted := make(map[string]bool, len(want))
	for _, id := range want {
		wanted[id] = true
		switch n := effects[id]; n {
		case 0:
			c.lost++
			if len(c.lostIDs) < 10 {
				c.lostIDs = append(c.lostIDs, id)
			}
		default:
			c.applied++
			c.duplicates += n - 1
		}
	}
	for id := range effects {
		if !wanted[id] {
			c.unexpected++
		}
	}
	return c
}

// checkAppliedOnce waits until every good record took effect at the
// pipeline's service, reports the effects (and the redeliveries, which
// at-least-once allows) as "effects", and fails on a duplicate effect or a
// loss.
func (s *suite) checkAppliedOnce(t testing.TB, rep *report, ns, pipeline string, good []string, within time.Duration) {
	t.Helper()
	eventually(t, within, "every record applied", func() (bool, string) {
		c := checkEffects(s.recv.report(ns, pipeline).effects, good)
		return c.lost == 0, fmt.Sprintf("%d of %d", c.applied, len(good))
	})
	r := s.recv.report(ns, pipeline)
	c := checkEffects(r.effects, good)
	rep.set("effects", "%d applied, %d duplicate, %d lost; %d redeliveries", c.applied, c.duplicates, c.lost, r.deliveries-r.keys)
	if c.duplicates > 0 || c.lost > 0 {
		t.Errorf("effects: %+v", c)
	}
}

// firstDelivery is when each address first delivered, sorted by time.
func firstDeliveries(byAddr map[string][]time.Time) []addrTime {
	var out []addrTime
	for a, ts := range byAddr {
		if len(ts) > 0 {
			out = append(out, addrTime{a, ts[0]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

type addrTime struct {
	addr string
	at   time.Time
}

func (a addrTime) String() string { return a.addr + "@" + a.at.Format("15:04:05.000") }
