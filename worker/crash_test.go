package worker

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/testpg"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

var (
	pgOnce   sync.Once
	pgServer *testpg.Server
	pgErr    error
	pgDBs    int
	pgMu     sync.Mutex
)

// postgresDB starts the package's PostgreSQL server on first use and gives the
// test a database of its own with table orders(id text primary key, payload jsonb).
func postgresDB(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = testpg.Start() })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	pgMu.Lock()
	pgDBs++
	name := fmt.Sprintf("worker_%d", pgDBs)
	pgMu.Unlock()
	return pgServer.NewDatabase(t, name, "CREATE TABLE orders (id text PRIMARY KEY, payload jsonb NOT NULL)")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		_ = pgServer.Stop()
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binDir holds the worker binary buildOnce built (removed after the tests).
var binDir string

// buildWorker compiles cmd/worker once per test binary.
var buildOnce = sync.OnceValues(func() (string, error) {
	root, err := modroot.Find()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "sluice-worker-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/worker: %w\n%s", err, out)
	}
	return bin, nil
})

func freePort(t testing.TB) int32 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// TestCrashLoopLosesNothingAndDuplicatesNothing runs the real worker binary and
// SIGKILLs it at random moments while 100,000 records flow, with broker faults
// in between (failed produces to the dead-letter topic, failed commits, slow
// fetches). Afterwards every good record is in PostgreSQL exactly once and every
// poison pill is in the dead-letter topic.
func TestCrashLoopLosesNothingAndDuplicatesNothing(t *testing.T) {
	testkafka.FakeOnly(t, "injects broker faults with kfake.Fault")
	testStart := time.Now()
	b := newBroker(t)
	b.createTopics(4, allTopics...)
	dsn, conn := postgresDB(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := crashConfig(t, b)
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	proc := newWorkerProcess(t, cfg)

	const total, poisonEvery = 100_000, 1000
	wantRows, wantSum := 0, int64(0)
	for i := range total {
		if i%poisonEvery != poisonEvery-1 {
			wantRows++
			wantSum += int64(i)
		}
	}
	wantPoison := total / poisonEvery

	// Records keep arriving while the workers crash; poison pills are not JSON,
	// so they have no idempotency key.
	produced := produceInBackground(b, total, 2000, 60*time.Millisecond, func(i int) []byte {
		return poisonOr(i, poisonEvery, fmt.Sprintf(`{"id":"r-%d","n":%d}`, i, i))
	})
	faults := []func(){
		func() { // the dead-letter topic refuses writes for a while
			b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "orders.dlq", Err: kerr.NotEnoughReplicas, Count: 3})
		},
		func() { // commits fail
			b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorLoadInProgress, Count: 5})
		},
		func() { // fetches stall: the leader "moves", the consumer backs off and refreshes
			// (kfake's SleepControl would be the direct way, but it races under -race)
			b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "orders", Err: kerr.NotLeaderForPartition, Count: 10})
		},
	}
	const kills = 12
	proc.crashLoop(kills, 300*time.Millisecond, 1200*time.Millisecond, func(i int) { faults[i%len(faults)]() })
	<-produced

	// A last worker runs to completion and shuts down gracefully. Like the
	// kubelet, the test would restart it if it exited on its own; it must not.
	t.Logf("%d SIGKILLs done after %v", kills, time.Since(testStart).Round(time.Millisecond))
	b.waitForDeadMembersToLeave(t, 60*time.Second)
	finalStart := time.Now()
	proc.env = []string{"SLUICE_KAFKA_LOG_LEVEL=info"} // franz-go's view of partitions, should the final worker get stuck
	final := proc.start()
	exited := make(chan error, 1)
	go func() { exited <- final.Wait() }()
	restarts := 0
	deadline := time.Now().Add(180 * time.Second)
	for {
		select {
		case err := <-exited:
			restarts++
			t.Logf("the final worker exited (%v); restarting it", err)
			final = proc.start()
			go func() { exited <- final.Wait() }()
		default:
		}
		n, _ := rowStats(t, conn)
		if n >= wantRows && len(poisonInDLQ(b)) >= wantPoison {
			break
		}
		if time.Now().After(deadline) {
			metrics := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.Server.Port))
			_ = final.Process.Signal(syscall.SIGQUIT) // the Go runtime dumps every goroutine
			if err := <-exited; err != nil {
				t.Logf("worker after SIGQUIT: %v", err)
			}
			log := proc.log()
			kept := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-crash-%d.log", time.Now().UnixNano()))
			_ = os.WriteFile(kept, log, 0o644)
			t.Logf("final worker metrics:\n%s\nfull worker log: %s", metrics, kept)
			t.Fatalf("after %d kills: %d of %d rows, %d of %d poison pills in the DLQ after 180s\nprogress: %s\nworker log tail:\n%s",
				kills, n, wantRows, len(poisonInDLQ(b)), wantPoison, b.progress("orders"), tail(log, 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitHealthy(t, cfg.Server.Port) // its SIGTERM handler is installed
	finalMetrics := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.Server.Port))
	t.Logf("the final worker caught up in %v", time.Since(finalStart).Round(time.Millisecond))
	if keep := os.Getenv("SLUICE_CRASH_KEEP_LOG"); keep != "" {
		_ = os.WriteFile(keep, proc.log(), 0o644)
	}
	if err := final.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("the worker did not exit cleanly on SIGTERM: %v", err)
	}

	n, sum := rowStats(t, conn)
	if n != wantRows || sum != wantSum {
		t.Errorf("PostgreSQL holds %d rows (sum %d), want %d (sum %d): every good record exactly once", n, sum, wantRows, wantSum)
	}
	got := poisonInDLQ(b)
	for i := poisonEvery - 1; i < total; i += poisonEvery {
		if !got[fmt.Sprintf("poison-%d", i)] {
			t.Errorf("poison pill %d is not in the dead-letter topic", i)
		}
	}
	if restarts > 0 {
		t.Errorf("the final worker exited %d times on its own", restarts)
	}
	t.Logf("%d SIGKILLs; %d rows; %d poison pills dead-lettered; final worker metrics:\n%s", kills, n, len(got), finalMetrics)
}

// poisonInDLQ is the set of values in the dead-letter topic (a crash between
// parking and committing may park a pill twice; the set must still be complete).
func poisonInDLQ(b *broker) map[string]bool {
	set := map[string]bool{}
	for _, r := range b.readAll("orders.dlq") {
		set[string(r.Value)] = true
	}
	return set
}

// scrape returns the worker's own metric samples (not histogram buckets, not
// the Kafka client's).
func scrape(url string) string {
	var out []string
	for _, line := range strings.Split(scrapeAll(url), "\n") {
		if strings.HasPrefix(line, "sluice_worker_") && !strings.Contains(line, "_bucket") && !strings.HasPrefix(line, "sluice_worker_kafka") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// waitHealthy waits until a worker process answers /healthz: main installs the
// SIGTERM handler before the health server starts, so a SIGTERM sent earlier
// would kill the process instead of shutting it down.
func waitHealthy(t *testing.T, port int32) {
	t.Helper()
	eventually(t, 30*time.Second, "the worker answers /healthz", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
