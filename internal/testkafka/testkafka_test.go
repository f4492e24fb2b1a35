package testkafka

import (
	"regexp"
	"slices"
	"testing"
)

func TestBootstrap(t *testing.T) {
	t.Setenv(EnvBrokers, " 127.0.0.1:19092, 127.0.0.1:19093,,")
	if got := Bootstrap(); !slices.Equal(got, []string{"127.0.0.1:19092", "127.0.0.1:19093"}) || !Real() {
		t.Errorf("Bootstrap() = %q, Real() = %v", got, Real())
	}
	t.Setenv(EnvBrokers, "")
	if got := Bootstrap(); got != nil || Real() {
		t.Errorf("unset: Bootstrap() = %q, Real() = %v; want kfake", got, Real())
	}
}

func TestUniqueTopicIsAValidDistinctTopicName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	seen := map[string]bool{}
	for range 100 {
		n := UniqueTopic(t, "orders")
		if !valid.MatchString(n) || seen[n] {
			t.Fatalf("%q: invalid or repeated", n)
		}
		seen[n] = true
	}
	t.Run("sub/test with spaces", func(t *testing.T) {
		if n := UniqueTopic(t, "orders") + ".retry.1"; !valid.MatchString(n) {
			t.Errorf("%q is not a valid topic name", n)
		}
	})
}

func TestNewUsesKfakeWhenUnset(t *testing.T) {
	t.Setenv(EnvBrokers, "")
	c := New(t)
	if c.Real() || len(c.Brokers) == 0 {
		t.Fatalf("cluster = %+v, want a kfake", c)
	}
	topic := UniqueTopic(t, "t")
	c.CreateTopics(t, 2, 0, map[string]string{"retention.ms": "60000"}, topic)
	if rf := c.ReplicationFactor(t); rf != 3 {
		t.Errorf("RF on kfake (3 brokers by default) = %d", rf)
	}
}
