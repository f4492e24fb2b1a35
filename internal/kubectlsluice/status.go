package kubectlsluice

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// status prints a pipeline's conditions, its lag per partition (read from
// Kafka), its dead-letter depth and its recent events.
func (a *App) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	events := fs.Int("events", 10, "recent events to show")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	sp, opts, err := a.pipeline(ctx, name)
	if err != nil {
		return err
	}
	st := sp.Status
	a.printf("StreamPipeline %s/%s: %s → %s\n", sp.Namespace, sp.Name, sp.Spec.Source.Topic, sinkKind(sp))
	tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CONDITION\tSTATUS\tREASON\tMESSAGE")
	for _, c := range st.Conditions {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	_ = tw.Flush()
	a.printf("Replicas: %d ready of %d (desired %d)\n", st.ReadyReplicas, st.Replicas, st.DesiredReplicas)

	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	group := sp.ConsumerGroup()
	ends, err := adm.ListEndOffsets(kctx, sp.Spec.Source.Topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", sp.Spec.Source.Topic, err)
	}
	committed, err := adm.FetchOffsets(kctx, group)
	if err != nil {
		a.printf("Group %s: no committed offsets (%v)\n", group, err)
	}
	a.printf("Lag of group %s on %s:\n", group, sp.Spec.Source.Topic)
	tw = tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "PARTITION\tCOMMITTED\tEND\tLAG\t")
	var total int64
	for _, e := range sortedOffsets(ends) {
		at, lag := "-", e.Offset
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.At >= 0 {
			at, lag = fmt.Sprint(c.At), e.Offset-c.At
		}
		total += lag
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t\n", e.Partition, at, e.Offset, lag)
	}
	_, _ = fmt.Fprintf(tw, "total\t\t\t%d\t\n", total)
	_ = tw.Flush()

	dlq := sp.DeadLetterTopic()
	starts, err := adm.ListStartOffsets(kctx, dlq)
	if err == nil {
		var dEnds kadm.ListedOffsets
		if dEnds, err = adm.ListEndOffsets(kctx, dlq); err == nil {
			var depth int64
			for _, e := range sortedOffsets(dEnds) {
				if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
					depth += e.Offset - s.Offset
				}
			}
			a.printf("Dead letters in %s: %d (kubectl sluice dlq %s)\n", dlq, depth, sp.Name)
		}
	}
	if err != nil {
		a.printf("Dead letters in %s: unknown (%v)\n", dlq, err)
	}
	return a.recentEvents(ctx, sp, *events)
}

func (a *App) recentEvents(ctx context.Context, sp *sluicev1.StreamPipeline, n int) error {
	list := &eventsv1.EventList{}
	if err := a.Client.List(ctx, list, client.InNamespace(sp.Namespace)); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	var mine []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "StreamPipeline" && e.Regarding.Name == sp.Name {
			mine = append(mine, e)
		}
	}
	slices.SortFunc(mine, func(x, y eventsv1.Event) int { return eventTime(y).Compare(eventTime(x)) })
	a.printf("Recent events:\n")
	tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "AGE\tTYPE\tREASON\tNOTE")
	for _, e := range mine[:min(n, len(mine))] {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", age(a.Now().Sub(eventTime(e))), e.Type, e.Reason, e.Note)
	}
	return tw.Flush()
}

func eventTime(e eventsv1.Event) time.Time {
	if e.Series != nil {
		return e.Series.LastObservedTime.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.DeprecatedLastTimestamp.Time
}

func sortedOffsets(o kadm.ListedOffsets) []kadm.ListedOffset {
	var out []kadm.ListedOffset
	o.Each(func(l kadm.ListedOffset) { out = append(out, l) })
	slices.SortFunc(out, func(x, y kadm.ListedOffset) int {
		return strings.Compare(x.Topic, y.Topic)*1_000_000 + int(x.Partition-y.Partition)
	})
	return out
}

func sinkKind(sp *sluicev1.StreamPipeline) string {
	s := sp.Spec.Sink
	switch {
	case s.HTTP != nil:
		return "http " + s.HTTP.URL
	case s.Postgres != nil:
		return "postgres " + s.Postgres.Table
	case s.Kafka != nil:
		return "kafka " + s.Kafka.Topic
	}
	return "log"
}

// age prints a duration as kubectl does: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
