package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// gate is a TCP forwarder in front of a real server: closed, it refuses
// connections, as a database that is down does; opened, it forwards them.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   bool
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			if !open {
				_ = c.Close()
				continue
			}
			go g.forward(c)
		}
	}()
	return g
}

func (g *gate) forward(c net.Conn) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// readyzBody is the worker's /readyz answer.
func readyzBody(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestWorkerStartingWhilePostgresIsDownWaitsUnreadyAndRecovers: the database
// is down when the worker starts. It must not exit (in a pod: a crash loop
// whose restarts back off for minutes); it stays up, unready with the reason,
// and starts consuming once the database answers.
func TestWorkerStartingWhilePostgresIsDownWaitsUnreadyAndRecovers(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	dsn, conn := postgresDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	down := newGate(t, u.Host)
	u.Host = down.addr()
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(u.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := b.config()
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	r := startWorker(t, cfg, nil)

	eventually(t, 15*time.Second, "an unready worker that says the sink is not open", func() bool {
		code, body := readyzBody(r.addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "sink not open yet")
	})
	select {
	case err := <-r.done:
		t.Fatalf("the worker exited while the database was down: %v", err)
	case <-time.After(2 * time.Second):
	}

	b.produce("orders", 0, 20, func(i int, rec *kgo.Record) { rec.Value = fmt.Appendf(nil, `{"id":"r-%d"}`, i) })
	down.setOpen(true)
	eventually(t, 60*time.Second, "all 20 records in PostgreSQL", func() bool {
		n, _ := rowStats(t, conn)
		return n == 20
	})
	if code, body := readyzBody(r.addr); code != http.StatusOK {
		t.Errorf("readyz after recovery: %d %s", code, body)
	}
}

// TestShutdownStaysWithinItsBoundWhileAJoinIsInFlight: SIGTERM arrives while
// the worker's JoinGroup hangs at the broker (a rebalance that takes long).
// Leaving waits for the join, so shutdown used to take as long as the
// rebalance; it must end within shutdownTimeout + finalizeBudget.
func TestShutdownStaysWithinItsBoundWhileAJoinIsInFlight(t *testing.T) {
	testkafka.FakeOnly(t, "holds JoinGroup requests with a kfake control")
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	held := make(chan struct{}, 1)
	b.cluster.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.cluster.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		<-release // the whole fake broker waits: a join that takes long
		return nil, nil, false
	})

	cfg := b.config()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{
		Config: cfg, Sink: sink.NewLog(io.Discard, "JSON"), Listener: ln,
		Logger:    slog.New(slog.NewTextHandler(newUntilCleanupWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker never sent a JoinGroup")
	}

	sigterm := time.Now()
	cancel()
	bound := cfg.Consumer.ShutdownTimeout.Duration + finalizeBudget
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		t.Logf("shut down %v after SIGTERM (bound %v)", time.Since(sigterm).Round(time.Millisecond), bound)
	case <-time.After(bound + 5*time.Second):
		t.Fatalf("still shutting down %v after SIGTERM; the bound is %v", time.Since(sigterm).Round(time.Second), bound)
	}
	unblock()
}

// untilCleanupWriter logs to the test until it ends; the client's close goes
// on in the background after Run returned, and t.Log after a test's end panics.
type untilCleanupWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newUntilCleanupWriter(t *testing.T) *untilCleanupWriter {
	w := &untilCleanupWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *untilCleanupWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}
