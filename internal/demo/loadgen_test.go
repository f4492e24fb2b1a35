package demo

import (
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestLoadProfileSpikesInTheMiddle(t *testing.T) {
	p := loadProfile{Rate: 50, Spike: 10, Duration: 2 * time.Minute}
	from, to := p.spikeWindow()
	if from != 52500*time.Millisecond || to != 67500*time.Millisecond {
		t.Errorf("spike window %v–%v, want 52.5s–67.5s (an eighth of 2m, centred)", from, to)
	}
	cases := []struct {
		at   time.Duration
		want float64
	}{
		{0, 50}, {52 * time.Second, 50}, {55 * time.Second, 500}, {67 * time.Second, 500},
		{68 * time.Second, 50}, {2 * time.Minute, 0}, {-time.Second, 0},
	}
	for _, tc := range cases {
		if got := p.rateAt(tc.at); got != tc.want {
			t.Errorf("rateAt(%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	short := loadProfile{Rate: 50, Spike: 10, Duration: 30 * time.Second}
	if from, to := short.spikeWindow(); to-from != 5*time.Second {
		t.Errorf("short run: spike %v long, want at least 5s", to-from)
	}
}

func TestKindOfMakesOnePoisonPillInAHundredAndOne(t *testing.T) {
	counts := map[recordKind]int{}
	for seq := range int64(poisonEvery * 10) {
		counts[kindOf(seq, true)]++
	}
	if counts[kindNoKey] != 5 || counts[kindMalformed] != 5 || counts[kindGood] != poisonEvery*10-10 {
		t.Errorf("kinds %v", counts)
	}
	for seq := range int64(poisonEvery * 10) {
		if kindOf(seq, false) == kindMalformed {
			t.Fatal("a malformed record for a sink that takes any value (log)")
		}
	}
}

func TestDemoRecordCarriesItsIDInKeyAndHeader(t *testing.T) {
	r := demoRecord("orders", "orders", 7, kindGood, sinkHTTP)
	if string(r.Key) != "orders-000007" || header(r.Headers, headerEventID) != "orders-000007" {
		t.Errorf("key %s headers %v", r.Key, r.Headers)
	}
	if nk := demoRecord("orders", "orders", 7, kindNoKey, sinkHTTP); header(nk.Headers, headerEventID) != "" {
		t.Error("a no-key pill has the key header")
	}
}

func TestReceiverFailurePlan(t *testing.T) {
	p := failurePlan{Duration: 100 * time.Second}
	good := []byte(`{"id":"o-1","amount":3.5}`)
	healthyKey := "orders-000001"
	if brokenShard(healthyKey) {
		t.Fatal("pick another healthy key")
	}
	broken := ""
	for i := range 10000 {
		if k := demoRecordID(i); brokenShard(k) {
			broken = k
			break
		}
	}
	cases := []struct {
		name string
		at   time.Duration
		key  string
		body []byte
		roll float64
		want int
	}{
		{"healthy", 5 * time.Second, healthyKey, good, 0, http.StatusOK},
		{"flaky window, unlucky roll", 25 * time.Second, healthyKey, good, 0.01, http.StatusServiceUnavailable},
		{"flaky window, lucky roll", 25 * time.Second, healthyKey, good, 0.5, http.StatusOK},
		{"outage", 31 * time.Second, healthyKey, good, 0.9, http.StatusServiceUnavailable},
		{"after the outage", 35 * time.Second, healthyKey, good, 0.9, http.StatusOK},
		{"broken shard while it is down", 25 * time.Second, broken, good, 0.9, http.StatusServiceUnavailable},
		{"broken shard before it goes down", 5 * time.Second, broken, good, 0.9, http.StatusOK},
		{"broken shard back after 80% of the run", 85 * time.Second, broken, good, 0.9, http.StatusOK},
		{"amount is not a number", 5 * time.Second, healthyKey, []byte(`{"id":"o-1","amount":"twelve"}`), 0, http.StatusBadRequest},
		{"not JSON", 5 * time.Second, healthyKey, []byte(`<x>`), 0, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if got, _ := p.respond(tc.at, tc.key, tc.body, tc.roll); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func demoRecordID(i int) string {
	return string(demoRecord("orders", "orders", int64(i), kindGood, sinkHTTP).Key)
}

func TestReceiverAppliesAnEffectOncePerKey(t *testing.T) {
	r := newReceiver(failurePlan{})
	body := []byte(`{"id":"o-1","amount":1}`)
	r.record("p", "o-1", body, http.StatusServiceUnavailable)
	r.record("p", "o-1", body, http.StatusOK)
	r.record("p", "o-1", body, http.StatusOK) // a redelivery
	keys, effects := r.snapshot("p")
	if k := keys["o-1"]; k.Deliveries != 2 || k.Failures != 1 || k.Effect != "o-1" {
		t.Errorf("key stats %+v", k)
	}
	if effects["o-1"] != 1 {
		t.Errorf("effects %v, want o-1 applied once", effects)
	}
}

func header(hs []kgo.RecordHeader, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
