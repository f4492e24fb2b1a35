//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Node-level faults. They need the test to run on the node's host as root
// (hack/cluster.sh's cluster, or kind's node containers, whose processes the
// host sees too).

// envRestartKubelet is a shell command that restarts the kubelet (on kind:
// `docker exec sluice-control-plane systemctl restart kubelet`). Unset on the
// local cluster: the suite restarts it by its PID file.
const envRestartKubelet = "SLUICE_E2E_RESTART_KUBELET"

// containerPID finds the host PID of a pod's container's main process: the
// process whose cgroup names the container's ID and whose command is cmd.
func containerPID(pod *corev1.Pod, cmd string) (int, error) {
	if len(pod.Status.ContainerStatuses) == 0 {
		return 0, fmt.Errorf("pod %s has no container status", pod.Name)
	}
	_, id, ok := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok || id == "" {
		return 0, fmt.Errorf("pod %s: container ID %q", pod.Name, pod.Status.ContainerStatuses[0].ContainerID)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte(id)) {
			continue
		}
		argv, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil {
			continue
		}
		if first, _, _ := bytes.Cut(argv, []byte{0}); string(first) == cmd {
			return strconv.Atoi(filepath.Base(p))
		}
	}
	return 0, fmt.Errorf("no process %s in container %s of pod %s on this host (the suite must run as root on the node's host)", cmd, id[:12], pod.Name)
}

// sigkillWorker kills a pod's worker process at once, as the kernel's OOM
// killer or a node problem would: no SIGTERM, no graceful shutdown.
func sigkillWorker(pod *corev1.Pod) (int, error) {
	pid, err := containerPID(pod, "/worker")
	if err != nil {
		return 0, err
	}
	return pid, syscall.Kill(pid, syscall.SIGKILL)
}

// restartKubelet stops the node's kubelet and starts it again with the same
// command line. The pods keep running meanwhile (containerd runs them).
func (s *suite) restartKubelet() error {
	if cmd := os.Getenv(envRestartKubelet); cmd != "" {
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s (%s): %w\n%s", envRestartKubelet, cmd, err, out)
		}
		return nil
	}
	state := getenv("CLUSTER_STATE_DIR", filepath.Join(s.env.root, "bin", "cluster"))
	pidFile := filepath.Join(state, "run", "kubelet.pid")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("no kubelet PID file (%w): on a cluster other than hack/cluster.sh's, set %s to a command that restarts the kubelet", err, envRestartKubelet)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", pidFile, err)
	}
	argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("the kubelet (pid %d) does not run: %w", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// As hack/cluster.sh starts it: its own session, its log appended, its PID
	// in the PID file (so cluster.sh status and down keep tracking it).
	logf, err := os.OpenFile(filepath.Join(state, "logs", "kubelet.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the kubelet again: %w", err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	// Reaped if it exits while the suite runs; it outlives the suite (its
	// own session), as when cluster.sh started it.
	go func() { _ = cmd.Wait() }()
	return nil
}
