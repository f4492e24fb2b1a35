package worker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaLogLevelFromEnvironment(t *testing.T) {
	for in, want := range map[string]kgo.LogLevel{
		"": kgo.LogLevelWarn, "debug": kgo.LogLevelDebug, "INFO": kgo.LogLevelInfo,
		"error": kgo.LogLevelError, "warn": kgo.LogLevelWarn, "loud": kgo.LogLevelWarn,
	} {
		if got := kgoLogLevel(in); got != want {
			t.Errorf("kgoLogLevel(%q) = %v, want %v", in, got, want)
		}
	}
}

// The consumer's fetch sizes are the config's, or the worker's defaults when a
// config (a hand-written one, one from an older operator) leaves them out.
func TestFetchSizesComeFromTheConfig(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		maxBytes, partitionBytes  int32
		wantMax, wantPartitionMax int32
	}{
		{"defaults", 0, 0, 1 << 20, 256 << 10},
		{"configured", 8 << 20, 2 << 20, 8 << 20, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig([]string{"127.0.0.1:1"})
			cfg.Consumer.FetchMaxBytes, cfg.Consumer.MaxPartitionFetchBytes = tc.maxBytes, tc.partitionBytes
			w, err := New(Options{Config: cfg, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			opts, err := w.clientOpts()
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.FetchMaxBytes); got != tc.wantMax {
				t.Errorf("FetchMaxBytes = %v, want %d", got, tc.wantMax)
			}
			if got := cl.OptValue(kgo.FetchMaxPartitionBytes); got != tc.wantPartitionMax {
				t.Errorf("FetchMaxPartitionBytes = %v, want %d", got, tc.wantPartitionMax)
			}
		})
	}
}
