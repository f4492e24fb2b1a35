package worker

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// slot is one worker of the group, restarted after each kill as a new pod.
type slot struct {
	r      *crashRun
	n      int
	proc   *workerProcess
	port   int32
	dsn    string // its DSN file (postgres guarantees)
	starts int
	cur    *workerRun // the last process started, nil before the first
}

// workerRun is one process of a slot.
type workerRun struct {
	pod      string
	port     int32
	cmd      *exec.Cmd
	started  time.Time
	killedAt time.Time
	exited   chan struct{}
	err      error       // how it exited, set before exited closes
	ended    atomic.Bool // the harness killed or stopped it
}

func (w *workerRun) clientID() string          { return "sluice-worker-" + w.pod }
func (w *workerRun) txnID(group string) string { return group + "-" + w.pod }

func (w *workerRun) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process and waits until it is gone (safe on kfake's
// goroutine: it waits for nothing kfake does).
func (w *workerRun) kill() {
	w.ended.Store(true)
	w.killedAt = time.Now()
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
	}
}

// terminate sends SIGTERM (the graceful shutdown).
func (w *workerRun) terminate() {
	w.ended.Store(true)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// progress is what the process handled since it started, from its metrics.
func (w *workerRun) progress() (processed float64, desc string) {
	resp, err := metricsClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", w.port))
	if err != nil {
		return 0, "no metrics: " + err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	v := func(outcome string) float64 {
		return sampleValue(string(body), fmt.Sprintf(`%s{outcome="%s",pipeline="orders"} `, metricRecords, outcome))
	}
	processed = v(outcomeProcessed)
	return processed, fmt.Sprintf("%.0f processed, %.0f retried, %.0f dead-lettered, %.0f duplicates skipped since its start",
		processed, v(outcomeRetried), v(outcomeDeadLettered), v(outcomeDuplicate))
}

// start starts the slot's next process.
func (s *slot) start() *workerRun {
	s.starts++
	pod := fmt.Sprintf("w%d-%d", s.n, s.starts)
	if s.dsn != "" {
		s.r.db.writeDSN(s.dsn, pod)
	}
	s.proc.env = []string{"POD_NAME=" + pod}
	cmd := s.proc.start()
	w := &workerRun{pod: pod, port: s.port, cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	s.cur = w
	return w
}

func (s *slot) up() bool { return s.cur != nil && s.cur.running() }

// supervise restarts, like a kubelet, a worker that exited on its own.
// A worker that exits with status 2 refuses its config (cmd/worker): a
// restart can't help, so the run fails at once, as it does after
// maxSelfExits exits of any kind.
func (r *crashRun) supervise() {
	r.t.Helper()
	for _, s := range r.slots {
		if w := s.cur; w != nil && !w.running() && !w.ended.Load() {
			r.selfExits++
			log := tail(s.proc.log(), 2000)
			var exit *exec.ExitError
			if errors.As(w.err, &exit) && exit.ExitCode() == 2 {
				r.t.Fatalf("worker %s refuses its config (exit status 2):\n%s", w.pod, log)
			}
			if r.selfExits > maxSelfExits {
				r.t.Fatalf("workers exited on their own %d times; the last, %s (%v):\n%s", r.selfExits, w.pod, w.err, log)
			}
			r.t.Logf("worker %s exited on its own (%v) after %v; restarting it\n%s", w.pod, w.err,
				time.Since(w.started).Round(time.Millisecond), log)
			s.start()
		}
	}
}

const maxSelfExits = 10

// stop shuts a worker down gracefully (SIGTERM) and expects a clean exit.
func (r *crashRun) stop(s *slot) {
	r.t.Helper()
	w := s.cur
	waitHealthy(r.t, w.port) // its SIGTERM handler is installed
	w.terminate()
	select {
	case <-w.exited:
		if w.err != nil {
			r.t.Errorf("worker %s did not exit cleanly on SIGTERM: %v\n%s", w.pod, w.err, tail(s.proc.log(), 3000))
		}
	case <-time.After(30 * time.Second):
		w.kill()
		r.t.Errorf("worker %s did not exit within 30s of SIGTERM", w.pod)
	}
}
