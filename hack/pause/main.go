// Command pause is the sandbox ("pause") container of the local cluster
// (hack/cluster.sh): containerd starts it first in every pod to hold the pod's
// namespaces. No registry is reachable here, so instead of pulling
// registry.k8s.io/pause the cluster builds this program statically and imports
// it under that name.
//
// As PID 1 of the pod it must do two things only: stay alive until it is told
// to stop, and reap the zombies of orphaned processes re-parented to it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		reapChildren()
	}
}

// reapChildren collects every exited child. Several children may exit while
// one SIGCHLD is pending (signals of one kind coalesce), so it loops until no
// exited child is left.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
