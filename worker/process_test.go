package worker

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// crashConfig is the crash tests' worker config: keys from the "id" JSON
// field (so non-JSON records are poison pills), large polls, and short session
// and rebalance timeouts so the group forgets killed members quickly.
func crashConfig(t *testing.T, b *broker) *workerconfig.Config {
	cfg := b.config()
	cfg.IdempotencyKey = &workerconfig.IdempotencyKey{JSONField: "id"}
	cfg.Consumer.MaxPollRecords = 500
	cfg.Consumer.SessionTimeout = metav1.Duration{Duration: time.Second}
	cfg.Consumer.MaxPollInterval = metav1.Duration{Duration: 3 * time.Second}
	// A record may take at most the poll interval (the config check refuses more).
	cfg.Delivery.ProcessingTimeout = cfg.Consumer.MaxPollInterval
	cfg.Server.Port = freePort(t)
	return cfg
}

// workerProcess runs the real cmd/worker binary with a config file, as a pod
// would; all its runs log to one file.
type workerProcess struct {
	t           *testing.T
	bin, config string
	logs        *os.File
	// env is added to the environment of the next starts (last value wins).
	env []string
}

func newWorkerProcess(t *testing.T, cfg *workerconfig.Config) *workerProcess {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logs.Close() })
	return &workerProcess{t: t, bin: bin, config: config, logs: logs}
}

func (p *workerProcess) start() *exec.Cmd {
	p.t.Helper()
	cmd := exec.Command(p.bin, "--config", p.config)
	cmd.Env = append(os.Environ(), "SLUICE_KAFKA_LOG_LEVEL="+os.Getenv("SLUICE_KAFKA_LOG_LEVEL"))
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	return cmd
}

// crashLoop starts the worker and SIGKILLs it after a random time in [minUp,
// maxUp), n times, calling between(i) after kill i.
func (p *workerProcess) crashLoop(n int, minUp, maxUp time.Duration, between func(i int)) {
	p.t.Helper()
	for i := range n {
		cmd := p.start()
		time.Sleep(minUp + rand.N(maxUp-minUp))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			p.t.Fatal(err)
		}
		_ = cmd.Wait()
		if between != nil {
			between(i)
		}
	}
}

func (p *workerProcess) log() []byte {
	log, _ := os.ReadFile(p.logs.Name())
	return log
}

// produceInBackground writes records 0..total-1 to "orders" in chunks with a
// pause between them (so they keep arriving while workers crash); value gives
// each record's value. The channel closes when all are written.
func produceInBackground(b *broker, total, chunk int, pause time.Duration, value func(i int) []byte) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for from := 0; from < total; from += chunk {
			b.produce("orders", from, from+chunk, func(i int, r *kgo.Record) { r.Value = value(i) })
			time.Sleep(pause)
		}
	}()
	return done
}

// poisonOr is the crash tests' value: every poisonEvery-th record is not JSON.
func poisonOr(i, poisonEvery int, good string) []byte {
	if i%poisonEvery == poisonEvery-1 {
		return fmt.Appendf(nil, "poison-%d", i)
	}
	return []byte(good)
}
