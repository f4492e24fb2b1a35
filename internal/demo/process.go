package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// localPod is one pod of a Deployment, run as a local process: started,
// probed for readiness, restarted with backoff when it exits on its own, and
// stopped with SIGTERM and the pod's grace period.
type localPod struct {
	Name, Namespace, Deployment, Revision string
	Dir                                   string
	launch                                *launch
	events                                func(format string, args ...any)
	onRestart                             func()

	mu          sync.Mutex
	cmd         *exec.Cmd
	ready       bool
	terminating bool
	started     time.Time // of the pod
	running     time.Time // of the current process
	lastExit    time.Time // of the last process that exited on its own
	restarts    int
	stop        chan struct{}
	done        chan struct{}
}

// state is the pod as the rollout plan sees it.
func (p *localPod) state() podState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return podState{Name: p.Name, Revision: p.Revision, Ready: p.ready, Terminating: p.terminating, Started: p.started}
}

// pid is the current process's id (0 when none runs).
func (p *localPod) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// writeFiles lays out the pod's volumes.
func (p *localPod) writeFiles() error {
	for _, d := range p.launch.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, f := range p.launch.Files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return err
		}
		// Written owner-readable whatever the volume's mode: the worker runs as
		// the demo's user, not as the image's (65532).
		if err := os.WriteFile(f.Path, f.Data, os.FileMode(f.Mode)|0o400); err != nil {
			return err
		}
	}
	return nil
}

// run keeps the pod's process running until stop is closed.
func (p *localPod) run() {
	defer close(p.done)
	go p.probe()
	var delay time.Duration
	for {
		ran, err := p.runOnce()
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		p.restarts++
		n := p.restarts
		p.mu.Unlock()
		delay = restartDelay(delay, ran)
		p.events("%s exited (%s) after %s; restarting in %s (restart %d)", p.Name, exitReason(err), ran.Round(100*time.Millisecond), delay, n)
		p.onRestart()
		select {
		case <-p.stop:
			return
		case <-time.After(delay):
		}
	}
}

// runOnce starts the process and waits for it; it returns how long it ran.
func (p *localPod) runOnce() (time.Duration, error) {
	logs, err := os.OpenFile(filepath.Join(p.Dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer func() { _ = logs.Close() }()
	stdout, err := os.OpenFile(filepath.Join(p.Dir, "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer func() { _ = stdout.Close() }()
	cmd := exec.Command(p.launch.Argv[0], p.launch.Argv[1:]...)
	cmd.Env = p.launch.Env
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = stdout, logs
	// Its own process group: a Ctrl-C in the terminal reaches the demo, which
	// stops the workers in order, not every worker at once. Pdeathsig: a demo
	// that is itself killed takes its workers along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	p.mu.Lock()
	if p.terminating {
		p.mu.Unlock()
		return 0, errors.New("terminating")
	}
	err = cmd.Start()
	if err == nil {
		p.cmd, p.running = cmd, start
	}
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	err = cmd.Wait()
	p.mu.Lock()
	p.cmd, p.ready, p.lastExit = nil, false, time.Now()
	p.mu.Unlock()
	return time.Since(start), err
}

func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
		return "exit code " + strconv.Itoa(ee.ExitCode())
	}
	if err == nil {
		return "exit code 0"
	}
	return err.Error()
}

// probe runs the readiness probe while the pod lives, as the kubelet would:
// every periodSeconds, ready after successThreshold successes in a row, not
// ready after failureThreshold failures (and whenever the process is gone).
func (p *localPod) probe() {
	pr := p.launch.Readiness
	if pr == nil || pr.HTTPGet == nil {
		p.mu.Lock()
		p.ready = true
		p.mu.Unlock()
		return
	}
	url, err := probeURL(pr.HTTPGet, p.launch)
	if err != nil {
		p.events("%s: readiness probe: %v", p.Name, err)
		return
	}
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	failures := int(max(pr.FailureThreshold, 1))
	successes := int(max(pr.SuccessThreshold, 1))
	client := &http.Client{Timeout: timeout}
	okRun, failRun := 0, 0
	t := time.NewTimer(time.Duration(pr.InitialDelaySeconds) * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		t.Reset(period)
		if p.pid() == 0 {
			okRun, failRun = 0, 0
			continue
		}
		ok := get(client, url)
		if ok {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		p.mu.Lock()
		switch {
		case ok && okRun >= successes:
			p.ready = true
		case !ok && failRun >= failures:
			p.ready = false
		}
		p.mu.Unlock()
	}
}

func probeURL(g *corev1.HTTPGetAction, l *launch) (string, error) {
	var cport int32
	if g.Port.StrVal != "" {
		for _, cp := range l.PortNames {
			if cp.Name == g.Port.StrVal {
				cport = cp.Port
			}
		}
	} else {
		cport = g.Port.IntVal
	}
	hp, ok := l.Ports[cport]
	if !ok {
		return "", fmt.Errorf("port %s is not a container port", g.Port.String())
	}
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp))) + g.Path, nil
}

func get(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// terminate stops the pod as the kubelet does: SIGTERM now, SIGKILL once the
// grace period is over (or at once when ctx ends). It returns at once; done
// closes when the process is gone.
func (p *localPod) terminate(ctx context.Context) {
	p.mu.Lock()
	if p.terminating {
		p.mu.Unlock()
		return
	}
	p.terminating, p.ready = true, false
	close(p.stop)
	cmd := p.cmd
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	go func() {
		select {
		case <-p.done:
			return
		case <-time.After(p.launch.Grace):
			p.events("%s did not stop within its grace period of %s: SIGKILL", p.Name, p.launch.Grace)
		case <-ctx.Done():
		}
		_ = cmd.Process.Kill()
	}()
}

// kill SIGKILLs the current process (chaos); the pod restarts it.
func (p *localPod) kill() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminating || p.cmd == nil || p.cmd.Process == nil {
		return 0, errors.New("not running")
	}
	return p.cmd.Process.Pid, p.cmd.Process.Kill()
}
