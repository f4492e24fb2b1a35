package replay

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// FailedAgain counts the records in the dead-letter topic dlq, written at or
// after since, that a replay named by ("<namespace>/<name>", its
// sluice-redriven-by header) sent back: its copies that failed again, through
// all their retries. The worker keeps the header on the record into the DLQ.
func FailedAgain(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, dlq string, since time.Time, by string) (int64, error) {
	parts, err := Snapshot(ctx, adm, []string{dlq}, nil, since)
	if err != nil {
		return 0, err
	}
	var n int64
	err = Scan(ctx, conn, parts, func(r *kgo.Record) bool {
		if !r.Timestamp.Before(since) && redrivenBy(r) == by {
			n++
		}
		return true
	})
	return n, err
}

func redrivenBy(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == failure.HeaderRedrivenBy {
			return string(h.Value)
		}
	}
	return ""
}
