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
