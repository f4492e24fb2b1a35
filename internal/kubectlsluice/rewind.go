package kubectlsluice

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// rewind creates a StreamReplay of mode Rewind: the pipeline's group goes
// back to a time, or to offsets of some partitions, and the pipeline reads on
// from there.
func (a *App) rewind(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rewind", flag.ContinueOnError)
	to := fs.String("to-time", "", "go back to the first record at or after this time, RFC 3339")
	ago := fs.Duration("ago", 0, "go back this long from now (e.g. 2h), instead of --to-time")
	var offsets multiFlag
	fs.Var(&offsets, "offset", "PARTITION=OFFSET: go back to this offset of this partition; may be repeated (with a time: those partitions only)")
	dryRun := fs.Bool("dry-run", false, "say what would move and how many records would be read again; change nothing")
	noWait := fs.Bool("no-wait", false, "create the StreamReplay and return")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	sr := a.newReplay(name, "rewind", sluicev1.ReplayFromSource)
	sr.Spec.Mode, sr.Spec.DryRun = sluicev1.ReplayModeRewind, *dryRun
	switch {
	case *to != "" && *ago != 0:
		return fmt.Errorf("%w: rewind takes --to-time or --ago, not both", ErrUsage)
	case *to != "":
		t, err := time.Parse(time.RFC3339, *to)
		if err != nil {
			return fmt.Errorf("%w: --to-time: %w", ErrUsage, err)
		}
		mt := metav1.NewTime(t)
		sr.Spec.Select.Since = &mt
	case *ago > 0:
		mt := metav1.NewTime(a.Now().Add(-*ago))
		sr.Spec.Select.Since = &mt
	}
	for _, o := range offsets {
		p, off, err := partitionOffset(o)
		if err != nil {
			return err
		}
		sr.Spec.Select.Partitions = append(sr.Spec.Select.Partitions,
			sluicev1.ReplayPartitionRange{Partition: p, OffsetRange: sluicev1.OffsetRange{From: &off}})
	}
	if sr.Spec.Select.Since == nil && len(offsets) == 0 {
		return fmt.Errorf("%w: rewind needs --to-time, --ago or --offset", ErrUsage)
	}
	return a.createAndFollow(ctx, sr, *noWait)
}

// partitionOffset parses "PARTITION=OFFSET".
func partitionOffset(s string) (int32, int64, error) {
	ps, os, ok := strings.Cut(s, "=")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(os, 10, 64)
	if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
		return 0, 0, fmt.Errorf("%w: --offset %q: want PARTITION=OFFSET, e.g. 3=1200", ErrUsage, s)
	}
	return int32(p), o, nil
}
