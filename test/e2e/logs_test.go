//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// logLine is one line a container wrote, with the kubelet's timestamp.
type logLine struct {
	pod  string
	at   time.Time
	text string
}

// logCollector follows the logs of every pod matching a selector, for as long
// as its context runs: a deleted pod's logs are gone with it, and the manager
// pods that a failover deletes are the ones whose logs matter. A stream that
// breaks (a kubelet restart) is reopened from the last line's time.
type logCollector struct {
	k        *kube
	ns, sel  string
	mu       sync.Mutex
	lines    []logLine
	followed map[string]bool // pod/restartCount being followed
}

func (k *kube) collectLogs(ctx context.Context, ns, selector string) *logCollector {
	c := &logCollector{k: k, ns: ns, sel: selector, followed: map[string]bool{}}
	go c.run(ctx)
	return c
}

func (c *logCollector) run(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := c.k.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: c.sel})
		if err == nil {
			for _, p := range pods.Items {
				if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
					continue
				}
				id := fmt.Sprintf("%s/%d", p.Name, p.Status.ContainerStatuses[0].RestartCount)
				c.mu.Lock()
				if !c.followed[id] {
					c.followed[id] = true
					go c.follow(ctx, p.Name, id)
				}
				c.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// follow streams one container instance's log until the pod or the instance
// is gone.
func (c *logCollector) follow(ctx context.Context, pod, id string) {
	var last time.Time
	for ctx.Err() == nil {
		opts := &corev1.PodLogOptions{Follow: true, Timestamps: true}
		if !last.IsZero() {
			opts.SinceTime = &metav1.Time{Time: last}
		}
		stream, err := c.k.cs.CoreV1().Pods(c.ns).GetLogs(pod, opts).Stream(ctx)
		if err == nil {
			sc := bufio.NewScanner(stream)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				ts, text, ok := strings.Cut(sc.Text(), " ")
				at, perr := time.Parse(time.RFC3339Nano, ts)
				if !ok || perr != nil || !at.After(last) {
					continue
				}
				last = at
				c.mu.Lock()
				c.lines = append(c.lines, logLine{pod: pod, at: at, text: text})
				c.mu.Unlock()
			}
			_ = stream.Close()
		}
		// Reopen while this instance still runs (the stream broke); stop when
		// the pod is gone or its container restarted (a new id follows that).
		p, err := c.k.cs.CoreV1().Pods(c.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil ||
			fmt.Sprintf("%s/%d", pod, p.Status.ContainerStatuses[0].RestartCount) != id {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// grep returns the lines containing every one of words.
func (c *logCollector) grep(words ...string) []logLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logLine
next:
	for _, l := range c.lines {
		for _, w := range words {
			if !strings.Contains(l.text, w) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// count is how many lines were collected.
func (c *logCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}
