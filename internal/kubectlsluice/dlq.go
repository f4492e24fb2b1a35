package kubectlsluice

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/worker/failure"
)

// dlq prints the first dead letters (oldest first, per partition) with their
// failure headers decoded.
func (a *App) dlq(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	limit := fs.Int("limit", 20, "dead letters to show")
	class := fs.String("class", "", "only this error class (poison or transient)")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *class != "" && *class != string(failure.ClassPoison) && *class != string(failure.ClassTransient) {
		return fmt.Errorf("%w: --class %q: want poison or transient", ErrUsage, *class)
	}
	if *limit < 1 {
		return fmt.Errorf("%w: --limit must be at least 1", ErrUsage)
	}
	sp, opts, err := a.pipeline(ctx, name)
	if err != nil {
		return err
	}
	topic := sp.DeadLetterTopic()
	kctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	parts, err := replay.Snapshot(kctx, kadm.NewClient(cl), []string{topic}, nil, time.Time{})
	cl.Close()
	if err != nil {
		return err
	}
	sel := replay.Selection{}
	if *class != "" {
		sel.Classes = []string{*class}
	}
	shown := 0
	err = replay.Scan(kctx, opts, parts, func(r *kgo.Record) bool {
		if shown >= *limit {
			return false
		}
		if sel.Decide(r) == replay.Skip {
			return true
		}
		shown++
		a.printDeadLetter(r)
		return true
	})
	if err != nil {
		return err
	}
	if shown == 0 {
		a.printf("no dead letters in %s%s\n", topic, map[bool]string{true: " of class " + *class}[*class != ""])
	}
	return nil
}

func (a *App) printDeadLetter(r *kgo.Record) {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	a.printf("%s/%d@%d  %s  attempt %s  age %s  from %s/%s@%s", r.Topic, r.Partition, r.Offset,
		orDash(h[failure.HeaderErrorClass]), orDash(h[failure.HeaderAttempt]), age(a.Now().Sub(r.Timestamp)),
		orDash(h[failure.HeaderOriginalTopic]), orDash(h[failure.HeaderOriginalPartition]), orDash(h[failure.HeaderOriginalOffset]))
	if n := h[failure.HeaderRedriveCount]; n != "" {
		a.printf("  redriven %s× (last by %s)", n, orDash(h[failure.HeaderRedrivenBy]))
	}
	a.printf("\n  key: %s\n  error: %s\n", strconv.Quote(string(r.Key)), orDash(h[failure.HeaderErrorMessage]))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
