package demo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The live view: on a terminal, a frame redrawn in place every second with
// plain ANSI escapes (cursor home, clear to end of line); otherwise one plain
// status line every few seconds.

// terminalWidth returns the width of f's terminal, or false when f is not a
// terminal (a pipe, a file, /dev/null).
func terminalWidth(f *os.File) (int, bool) {
	var ws struct{ Row, Col, X, Y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0, false
	}
	if ws.Col == 0 {
		return 100, true
	}
	return int(ws.Col), true
}

// showLive redraws the view every second until ctx ends.
func showLive(ctx context.Context, w io.Writer, f *os.File, s *sampler) {
	_, _ = io.WriteString(w, "\x1b[2J\x1b[H\x1b[?25l") // clear, home, hide the cursor
	defer func() { _, _ = io.WriteString(w, "\x1b[?25h") }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		width, _ := terminalWidth(f)
		frame := renderFrame(s.current(), width)
		var b strings.Builder
		b.WriteString("\x1b[H")
		for _, line := range strings.Split(frame, "\n") {
			b.WriteString(line)
			b.WriteString("\x1b[K\n")
		}
		b.WriteString("\x1b[J")
		_, _ = io.WriteString(w, b.String())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// showPlain prints one status line every interval until ctx ends.
func showPlain(ctx context.Context, w io.Writer, s *sampler, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = io.WriteString(w, statusLine(s.current())+"\n")
		}
	}
}

// statusLine is the view in one line.
func statusLine(s snapshot) string {
	var parts []string
	for _, p := range s.Pipelines {
		parts = append(parts, fmt.Sprintf("%s: ready %s, replicas %d (%d ready), lag %d, produced %d (%.0f/s), delivered %d (%.0f/s), DLQ %d, circuit %s",
			p.Name, orDash(p.Row.Ready), p.Replicas, p.ReadyWorkers, p.TotalLag, p.Produced, p.ProducedRate,
			p.Delivered, p.DeliveredRate, sum(p.DeadLetters), circuitText(p.Circuit)))
	}
	line := fmt.Sprintf("[%5.1fs] t=%s %s | restarts %d", time.Since(processStart).Seconds(), clock(s.Elapsed), strings.Join(parts, " | "), s.Restarts)
	if s.Chaos {
		line += fmt.Sprintf(", chaos kills %d", s.Kills)
	}
	return line
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// renderFrame draws the whole view for a terminal width wide.
func renderFrame(s snapshot, width int) string {
	width = max(width, 60)
	var b strings.Builder
	line := func(format string, args ...any) {
		b.WriteString(clip(fmt.Sprintf(format, args...), width))
		b.WriteByte('\n')
	}
	rule := strings.Repeat("─", width)
	chaos := "off"
	if s.Chaos {
		chaos = fmt.Sprintf("on (%d kills)", s.Kills)
	}
	line("Sluice demo  t=%s / %s   %s", clock(s.Elapsed), clock(s.Duration), s.Phase)
	line("chaos %s · worker restarts %d · state %s · Ctrl-C stops everything", chaos, s.Restarts, s.StateDir)
	line("%s", rule)
	line("$ kubectl get sp -n %s -o wide", demoNamespace)
	rows := [][]string{{"NAME", "READY", "REPLICAS", "LAG", "DLQ", "AGE", "TOPIC", "GROUP", "RATE", "STATUS"}}
	for _, p := range s.Pipelines {
		r := p.Row
		rows = append(rows, []string{p.Name, r.Ready, r.Replicas, r.Lag, r.DLQ, r.Age, r.Topic, r.Group, r.Rate, r.Status})
	}
	for _, r := range table(rows) {
		line("%s", r)
	}
	for _, p := range s.Pipelines {
		line("%s", rule)
		if len(s.Pipelines) > 1 {
			line("pipeline %s", p.Name)
		}
		line("records/s     produced %5.0f   delivered %5.0f     (total produced %d, delivered %d)",
			p.ProducedRate, p.DeliveredRate, p.Produced, p.Delivered)
		line("lag by partition  %s", partitionBars(p.PartitionLag, width-18))
		hist := width - 34
		line("lag        %s  now %d, max %d", sparkline(tail(p.LagHistory, hist)), p.TotalLag, maxOf(p.LagHistory))
		line("replicas   %s  now %d, %d ready", replicaStrip(tail(p.ReplicaHistory, hist)), p.Replicas, p.ReadyWorkers)
		line("DLQ        %s", deadLetterText(p.DeadLetters))
		line("circuit    %s", circuitText(p.Circuit))
	}
	if s.Receiver != "" {
		line("receiver   %s", s.Receiver)
	}
	line("%s", rule)
	line("Events (kubectl get events -n %s)", demoNamespace)
	for _, p := range s.Pipelines {
		for _, e := range p.Events {
			line("  %s", e)
		}
	}
	line("%s", rule)
	line("pod runner (stands in for a kubelet: each pod is a real cmd/worker process, no container)")
	for _, p := range s.Pods {
		ready := "not ready"
		if p.Ready {
			ready = "ready"
		}
		pid := "restarting"
		if p.PID != 0 {
			pid = "pid " + strconv.Itoa(p.PID)
		}
		line("  %-44s %-12s %-9s restarts %d", p.Name, pid, ready, p.Restarts)
	}
	for _, l := range s.Log {
		line("  %s", l)
	}
	return strings.TrimRight(b.String(), "\n")
}

func clock(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// clip cuts a line to width runes.
func clip(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// table aligns columns as kubectl does (three spaces apart, <none> for a
// value that is not set).
func table(rows [][]string) []string {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			if c == "" {
				r[i] = "<none>"
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+3))
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	return out
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws values as bars, scaled to their maximum.
func sparkline(vals []int64) string {
	top := maxOf(vals)
	var b strings.Builder
	for _, v := range vals {
		i := 0
		if top > 0 {
			i = int((v*int64(len(sparks)-1) + top - 1) / top)
		}
		b.WriteRune(sparks[min(i, len(sparks)-1)])
	}
	return b.String()
}

// replicaStrip writes one digit per sample (+ for ten or more).
func replicaStrip(vals []int32) string {
	var b strings.Builder
	for _, v := range vals {
		if v > 9 {
			b.WriteByte('+')
		} else {
			b.WriteByte(byte('0' + v))
		}
	}
	return b.String()
}

// partitionBars draws each partition's lag as a short bar and a number.
func partitionBars(lags []int64, width int) string {
	if len(lags) == 0 {
		return "-"
	}
	top := maxOf(lags)
	barWidth := max(min(width/len(lags)-8, 8), 1)
	var parts []string
	for i, l := range lags {
		n := 0
		if top > 0 {
			n = int((l*int64(barWidth) + top - 1) / top)
		}
		parts = append(parts, fmt.Sprintf("p%d %s%s %d", i, strings.Repeat("█", n), strings.Repeat("·", barWidth-n), l))
	}
	return strings.Join(parts, "  ")
}

func deadLetterText(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	byClass := map[string]int{}
	for r, n := range m {
		class, _, _ := strings.Cut(r, ":")
		byClass[class] += n
	}
	var parts []string
	for _, class := range slices.Sorted(maps.Keys(byClass)) {
		var why []string
		for _, r := range slices.Sorted(maps.Keys(m)) {
			if c, rest, _ := strings.Cut(r, ":"); c == class {
				why = append(why, fmt.Sprintf("%s %d", strings.TrimSpace(rest), m[r]))
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d (%s)", class, byClass[class], strings.Join(why, ", ")))
	}
	return fmt.Sprintf("%d: %s", sum(m), strings.Join(parts, " · "))
}

func circuitText(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, st := range []string{"closed", "half-open", "open"} {
		if m[st] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, m[st]))
		}
	}
	return strings.Join(parts, " · ")
}

func tail[T any](s []T, n int) []T {
	if n <= 0 {
		return nil
	}
	return s[max(len(s)-n, 0):]
}

func maxOf[T int64 | int32](vals []T) T {
	var m T
	for _, v := range vals {
		m = max(m, v)
	}
	return m
}
