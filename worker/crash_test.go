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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/modroot"
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

// TestCrashLoopLosesNothingAndDuplicatesNothing runs the crash harness
// (crashharness_test.go) on the at-least-once postgres sink: three worker
// processes in one group, 12 SIGKILLs, each while its victim works, at points
// spread over a record's life (in the sink call, between the sink's
// acknowledgement and the commit, with a retry or dead-letter copy in flight,
// after a refused copy, while a member joins, while shutting down), with
// broker faults in between. Afterwards no record is missing, none took effect
// twice, every poison pill is in the dead-letter topic, and the sink saw
// redeliveries (what at-least-once allows).
func TestCrashLoopLosesNothingAndDuplicatesNothing(t *testing.T) {
	newCrashRun(t, crashPlan{
		g: postgresAtLeastOnce, kills: 12, workers: 3,
		wl:     workload{total: 400_000, poisonEvery: 500, flakyEvery: 2500},
		faults: brokerFaults,
	}).run()
}

// TestCrashLoopKeepsEachKeysOrder runs the crash harness on the at-least-once
// postgres sink with ordering Key: 200 Kafka keys over 4 partitions (record i
// has key key-<i mod 200>), up to 64 records at the sink at once per worker,
// three workers, 12 SIGKILLs at the same points with the same broker faults.
// Beside what TestCrashLoopLosesNothingAndDuplicatesNothing checks, every
// key's records took effect in offset order (their first effects, in the
// delivery log's order; records that went through a retry topic may come
// later and are left out).
func TestCrashLoopKeepsEachKeysOrder(t *testing.T) {
	newCrashRun(t, crashPlan{
		g: postgresAtLeastOnce, kills: 12, workers: 3,
		wl:       workload{total: 400_000, poisonEvery: 500, flakyEvery: 2500},
		faults:   brokerFaults,
		ordering: workerconfig.OrderingKey, maxInFlight: 64, keys: 200,
	}).run()
}

// brokerFaults are injected between kills: the dead-letter and retry topics
// refuse writes for a while, commits fail, fetches stall (the leader "moves",
// the consumer backs off and refreshes; kfake's SleepControl would be the
// direct way, but it races under -race).
var brokerFaults = []func(b *broker){
	func(b *broker) {
		b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: b.name("orders.dlq"), Err: kerr.NotEnoughReplicas, Count: 3})
	},
	func(b *broker) {
		b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorLoadInProgress, Count: 5})
	},
	func(b *broker) {
		b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: b.name("orders.retry.1"), Err: kerr.NotEnoughReplicas, Count: 3})
	},
	func(b *broker) {
		b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: b.name("orders"), Err: kerr.NotLeaderForPartition, Count: 10})
	},
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
