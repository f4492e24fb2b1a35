package kubectlsluice

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// replayFlags are the flags redrive and replay share.
type replayFlags struct {
	target    string
	reprocess bool
	rate      int
	dryRun    bool
	noWait    bool
	limit     int64
}

func (f *replayFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.target, "target", string(sluicev1.ReplayTargetRetryTopic), "where copies go: RetryTopic (the first retry topic) or Source")
	fs.BoolVar(&f.reprocess, "reprocess", false, "write the records to the pipeline's sink from a Job of the worker image instead of copying them (mode Reprocess; AtLeastOnce pipelines)")
	fs.IntVar(&f.rate, "rate", 0, "records per second at most (0: no cap)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "count what matches and copy nothing")
	fs.BoolVar(&f.noWait, "no-wait", false, "create the StreamReplay and return")
	fs.Int64Var(&f.limit, "limit", 0, "select at most this many records (0: no limit)")
}

func (f *replayFlags) apply(sr *sluicev1.StreamReplay) error {
	switch sluicev1.ReplayTarget(f.target) {
	case sluicev1.ReplayTargetRetryTopic, sluicev1.ReplayTargetSource:
		sr.Spec.Target = sluicev1.ReplayTarget(f.target)
	default:
		return fmt.Errorf("%w: --target %q: want RetryTopic or Source", ErrUsage, f.target)
	}
	if f.rate < 0 || f.limit < 0 {
		return fmt.Errorf("%w: --rate and --limit can't be negative", ErrUsage)
	}
	if f.rate > 0 {
		r := int32(f.rate)
		sr.Spec.RateLimit = &r
	}
	if f.limit > 0 {
		l := f.limit
		sr.Spec.Select.Limit = &l
	}
	sr.Spec.DryRun = f.dryRun
	if f.reprocess {
		sr.Spec.Mode = sluicev1.ReplayModeReprocess
	}
	return nil
}

// redrive creates a StreamReplay of the pipeline's dead letters.
func (a *App) redrive(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	var rf replayFlags
	rf.bind(fs)
	var classes multiFlag
	fs.Var(&classes, "class", "only this error class (poison or transient); may be repeated")
	contains := fs.String("message-contains", "", "only dead letters whose error message contains this")
	since := fs.Duration("since", 0, "only dead letters written in this last while (e.g. 1h)")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	sr := a.newReplay(name, "redrive", sluicev1.ReplayFromDeadLetters)
	for _, c := range classes {
		if c != "poison" && c != "transient" {
			return fmt.Errorf("%w: --class %q: want poison or transient", ErrUsage, c)
		}
		sr.Spec.Select.ErrorClasses = append(sr.Spec.Select.ErrorClasses, sluicev1.ReplayErrorClass(c))
	}
	sr.Spec.Select.MessageContains = *contains
	if *since > 0 {
		t := metav1.NewTime(a.Now().Add(-*since))
		sr.Spec.Select.Since = &t
	}
	if err := rf.apply(sr); err != nil {
		return err
	}
	return a.createAndFollow(ctx, sr, rf.noWait)
}

// replay creates a StreamReplay of a time window of the source topic.
func (a *App) replay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var rf replayFlags
	rf.bind(fs)
	from := fs.String("from-time", "", "first record time, RFC 3339 (required)")
	to := fs.String("to-time", "", "end of the window (excluded), RFC 3339; default: now")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *from == "" {
		return fmt.Errorf("%w: replay needs --from-time", ErrUsage)
	}
	sr := a.newReplay(name, "replay", sluicev1.ReplayFromSource)
	since, err := time.Parse(time.RFC3339, *from)
	if err != nil {
		return fmt.Errorf("%w: --from-time: %w", ErrUsage, err)
	}
	st := metav1.NewTime(since)
	sr.Spec.Select.Since = &st
	if *to != "" {
		until, err := time.Parse(time.RFC3339, *to)
		if err != nil {
			return fmt.Errorf("%w: --to-time: %w", ErrUsage, err)
		}
		ut := metav1.NewTime(until)
		sr.Spec.Select.Until = &ut
	}
	if err := rf.apply(sr); err != nil {
		return err
	}
	return a.createAndFollow(ctx, sr, rf.noWait)
}

func (a *App) newReplay(pipeline, verb string, from sluicev1.ReplayFrom) *sluicev1.StreamReplay {
	return &sluicev1.StreamReplay{
		// Generated names: two commands in the same second don't collide.
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, GenerateName: fmt.Sprintf("%s-%s-%s-", pipeline, verb, a.Now().UTC().Format("20060102-150405"))},
		Spec:       sluicev1.StreamReplaySpec{Pipeline: pipeline, From: from, Mode: sluicev1.ReplayModeRedrive},
	}
}

// createAndFollow creates sr (the API server checks it: an error names the
// field) and, unless noWait, prints its progress until it is Complete or
// Failed; Failed is an error.
func (a *App) createAndFollow(ctx context.Context, sr *sluicev1.StreamReplay, noWait bool) error {
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.Pipeline}, &sluicev1.StreamPipeline{}); err != nil {
		return fmt.Errorf("StreamPipeline %s/%s: %w", sr.Namespace, sr.Spec.Pipeline, err)
	}
	if err := a.Client.Create(ctx, sr); err != nil {
		return fmt.Errorf("create StreamReplay %s…: %w", sr.GenerateName, err)
	}
	a.printf("streamreplay.streaming.sluice.dev/%s created\n", sr.Name)
	if noWait {
		return nil
	}
	key := types.NamespacedName{Namespace: sr.Namespace, Name: sr.Name}
	last := ""
	for {
		got := &sluicev1.StreamReplay{}
		if err := a.Client.Get(ctx, key, got); err != nil {
			return err
		}
		if line := progressLine(got); line != last {
			a.printf("%s\n", line)
			last = line
		}
		switch got.Status.Phase {
		case sluicev1.ReplayPhaseComplete:
			return nil
		case sluicev1.ReplayPhaseFailed:
			return fmt.Errorf("StreamReplay %s failed: %s", sr.Name, got.Status.Message)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following StreamReplay %s (it goes on; kubectl get sr %s): %w", sr.Name, sr.Name, ctx.Err())
		case <-time.After(a.Poll):
		}
	}
}

// progressLine shows a replay's progress: a bar when the number of selected
// records is known (dry runs and limits), else the count and the snapshot's
// size, which bounds it.
func progressLine(sr *sluicev1.StreamReplay) string {
	st := sr.Status
	phase := string(st.Phase)
	if phase == "" {
		phase = "Pending"
	}
	var read int64
	for _, p := range st.Snapshot {
		read += p.End - p.Start
	}
	switch {
	case st.Phase == sluicev1.ReplayPhaseComplete && sr.Spec.DryRun, sr.Spec.Mode == sluicev1.ReplayModeRewind:
		return fmt.Sprintf("%s: %s", phase, st.Message)
	case st.Phase == sluicev1.ReplayPhaseFailed || st.Phase == sluicev1.ReplayPhasePending:
		return fmt.Sprintf("%s: %s", phase, st.Message)
	case st.Matched != nil && *st.Matched > 0:
		done := st.Done + st.Parked
		const width = 30
		n := int(done * width / *st.Matched)
		return fmt.Sprintf("%-8s [%s%s] %d/%d copied, %d parked", phase, strings.Repeat("#", n), strings.Repeat(".", width-n), st.Done, *st.Matched, st.Parked)
	}
	return fmt.Sprintf("%-8s %d copied, %d parked (of at most %d records in the snapshot)", phase, st.Done, st.Parked, read)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
