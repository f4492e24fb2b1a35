//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testpg"
)

// suite is what every scenario shares: one broker, one receiver and one
// PostgreSQL server on the host address, the API clients, and the operator's
// logs since the suite started.
type suite struct {
	env       env
	k         *kube
	b         *broker
	bootstrap string
	recv      *receiver
	pg        *testpg.Server
	managers  *logCollector
}

var s *suite

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		fmt.Fprintln(os.Stderr, "FAIL (the suite needs a cluster with the operator deployed: `make e2e` brings everything up, docs/e2e.md)")
		return 1
	}
	e, err := findEnv()
	if err != nil {
		return fail(err)
	}
	k, err := newKube(e.kubeconfig)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	err = k.preflight(pctx)
	pcancel()
	if err != nil {
		return fail(err)
	}
	b, err := startBroker(e.host)
	if err != nil {
		return fail(fmt.Errorf("the broker on %s: %w (on kind set %s to the kind network's gateway)", e.host, err, envHost))
	}
	defer b.close()
	recv, err := startReceiver(e.host)
	if err != nil {
		return fail(fmt.Errorf("the HTTP receiver on %s: %w", e.host, err))
	}
	defer recv.close()
	pg, err := testpg.Start(testpg.ListenOn(e.host), testpg.AllowClients(e.podCIDR))
	if err != nil {
		return fail(fmt.Errorf("PostgreSQL on %s: %w", e.host, err))
	}
	defer func() { _ = pg.Stop() }()

	s = &suite{env: e, k: k, b: b, bootstrap: b.bootstrap, recv: recv, pg: pg,
		managers: k.collectLogs(ctx, operatorNamespace, "app.kubernetes.io/component=operator")}
	fmt.Printf("e2e: cluster %s, broker %s, receiver %s, PostgreSQL %s, kubectl %s\n",
		k.cfg.Host, b.bootstrap, recv.addr, pg.DSNAt(e.host, ""), e.kubectl)
	start := time.Now()
	code := m.Run()
	fmt.Printf("e2e: suite took %s; the operator logged %d lines\n", time.Since(start).Round(time.Second), s.managers.count())
	return code
}

// rejectedStatusWrites are the operator's log lines that say the API server
// refused a status write (issue 10, defect 3).
func (s *suite) rejectedStatusWrites() []logLine {
	var out []logLine
	out = append(out, s.managers.grep("is invalid")...)
	for _, l := range s.managers.grep("status") {
		if strings.Contains(l.text, "rror") && (strings.Contains(l.text, "patch") || strings.Contains(l.text, "Patch")) &&
			!strings.Contains(l.text, "is invalid") {
			out = append(out, l)
		}
	}
	return out
}

// checkNoRejectedStatusWrites fails the test if the operator logged one since
// the suite started.
func (s *suite) checkNoRejectedStatusWrites(t testing.TB) {
	t.Helper()
	if bad := s.rejectedStatusWrites(); len(bad) > 0 {
		for _, l := range bad[:min(len(bad), 5)] {
			t.Errorf("rejected status write in %s: %s", l.pod, l.text)
		}
		t.Errorf("%d rejected status writes in the operator's log", len(bad))
	}
}

// report collects a scenario's numbers and prints them at its end.
type report struct {
	name   string
	start  time.Time
	fields map[string]string
	order  []string
}

func newReport(t testing.TB, name string) *report {
	r := &report{name: name, start: time.Now(), fields: map[string]string{}}
	t.Cleanup(func() { r.print(t) })
	return r
}

func (r *report) set(key string, format string, args ...any) {
	if _, ok := r.fields[key]; !ok {
		r.order = append(r.order, key)
	}
	r.fields[key] = fmt.Sprintf(format, args...)
}

// mark records a timing since the scenario started.
func (r *report) mark(key string) {
	r.set(key, "%.1fs", time.Since(r.start).Seconds())
}

func (r *report) print(t testing.TB) {
	keys := append([]string(nil), r.order...)
	if len(keys) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- numbers of %s (%.0fs)\n", r.name, time.Since(r.start).Seconds())
	for _, k := range keys {
		fmt.Fprintf(&b, "    %-28s %s\n", k, r.fields[k])
	}
	// Printed, not t.Log'ed: the numbers are the point of a passing run too.
	fmt.Print(b.String())
}
