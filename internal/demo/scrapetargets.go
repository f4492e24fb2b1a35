package demo

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/render"
)

// The demo can tell a Prometheus what to scrape: with --scrape-targets DIR it
// keeps two files of Prometheus's file-based service discovery (file_sd) in
// DIR, the operator's metrics endpoint in operator.json and every running
// worker pod's /metrics in workers.json, rewritten when a pod comes or goes.
// A worker target carries what a PodMonitor would give it on a cluster: the
// pod's namespace, its streaming.sluice.dev/pipeline label as pipeline, and
// the pod's name. docs/observability.md shows a Prometheus config that reads
// them, and config/grafana's dashboard test scrapes the demo this way.

const (
	// OperatorTargetsFile and WorkerTargetsFile are the file_sd files the demo
	// writes into --scrape-targets.
	OperatorTargetsFile = "operator.json"
	WorkerTargetsFile   = "workers.json"
)

// targetGroup is one entry of a file_sd file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// operatorTargets lists the operator's metrics endpoint ("" or "0": none).
func operatorTargets(bindAddress string) []targetGroup {
	if bindAddress == "" || bindAddress == "0" {
		return []targetGroup{}
	}
	host, port, err := net.SplitHostPort(bindAddress)
	if err != nil {
		return []targetGroup{}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // the endpoint listens on every address; scrape it on loopback
	}
	return []targetGroup{{Targets: []string{net.JoinHostPort(host, port)}}}
}

// workerTargets lists every running pod's metrics endpoint, one group per pod
// so that each gets its own labels, in a stable order.
func workerTargets(pods []podTarget) []targetGroup {
	out := []targetGroup{}
	for _, p := range pods {
		if p.Port == 0 {
			continue
		}
		out = append(out, targetGroup{
			Targets: []string{"127.0.0.1:" + strconv.Itoa(int(p.Port))},
			Labels:  map[string]string{"namespace": p.Namespace, "pipeline": p.Pipeline, "pod": p.Name},
		})
	}
	slices.SortFunc(out, func(a, b targetGroup) int { return strings.Compare(a.Labels["pod"], b.Labels["pod"]) })
	return out
}

// podTarget is what a worker target needs of a pod.
type podTarget struct {
	Namespace, Pipeline, Name string
	Port                      int32 // on 127.0.0.1
}

// podTargets are the runner's pods that are not terminating.
func (r *podRunner) podTargets() []podTarget {
	var out []podTarget
	for _, p := range r.pods() {
		out = append(out, podTarget{Namespace: p.pod.Namespace, Pipeline: p.Pipeline, Name: p.Name,
			Port: p.pod.launch.Ports[render.HealthPort]})
	}
	return out
}

// writeScrapeTargets keeps dir's target files current until ctx ends,
// checking every second.
func writeScrapeTargets(ctx context.Context, dir, operatorAddress string, r *podRunner) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeJSONAtomically(filepath.Join(dir, OperatorTargetsFile), operatorTargets(operatorAddress)); err != nil {
		return err
	}
	var last []targetGroup
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		groups := workerTargets(r.podTargets())
		if last == nil || !equalGroups(groups, last) {
			if err := writeJSONAtomically(filepath.Join(dir, WorkerTargetsFile), groups); err != nil {
				return err
			}
			last = groups
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func equalGroups(a, b []targetGroup) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// writeJSONAtomically replaces path with v as JSON through a rename, so that
// Prometheus, which watches the folder, never reads a half-written file.
func writeJSONAtomically(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
