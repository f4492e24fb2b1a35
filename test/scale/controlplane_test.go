package scale

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// controlPlane are the envtest processes serving a fleet: their CPU is the
// other half of what an operator's writes cost.
type controlPlane struct {
	apiServer, etcd int
}

// findControlPlane finds, among the running processes, the kube-apiserver that
// serves host (https://127.0.0.1:<port>) and the etcd it stores in.
func findControlPlane(host string) (controlPlane, error) {
	u, err := url.Parse(host)
	if err != nil {
		return controlPlane{}, err
	}
	procs, err := commandLines()
	if err != nil {
		return controlPlane{}, err
	}
	var cp controlPlane
	var etcdURL string
	for pid, args := range procs {
		if filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, "--secure-port="+u.Port()) {
			cp.apiServer = pid
			etcdURL = argValue(args, "--etcd-servers=")
		}
	}
	if cp.apiServer == 0 || etcdURL == "" {
		return cp, fmt.Errorf("no kube-apiserver process serving %s", host)
	}
	for pid, args := range procs {
		if filepath.Base(args[0]) == "etcd" && slices.Contains(args, "--listen-client-urls="+etcdURL) {
			cp.etcd = pid
		}
	}
	if cp.etcd == 0 {
		return cp, fmt.Errorf("no etcd process listening on %s", etcdURL)
	}
	return cp, nil
}

// commandLines are the arguments of every process this user may read.
func commandLines() (map[int][]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int][]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue // gone, or a kernel thread
		}
		out[pid] = strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	}
	return out, nil
}

func argValue(args []string, prefix string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			return v
		}
	}
	return ""
}

// TestFindControlPlane checks that the processes whose CPU the fleet
// benchmarks report are the ones serving the benchmark's API server.
func TestFindControlPlane(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	cp, err := findControlPlane(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"kube-apiserver": cp.apiServer, "etcd": cp.etcd} {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(exe) != name {
			t.Errorf("pid %d runs %s, want %s", pid, exe, name)
		}
		if ppid := parentPID(t, pid); ppid != os.Getpid() {
			t.Errorf("%s (pid %d) is a child of %d, not of this test (%d)", name, pid, ppid, os.Getpid())
		}
	}
}

func parentPID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	return ppid
}
