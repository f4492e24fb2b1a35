package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// The worker's Kafka clients: the consumer's options (a consumer group's, shared
// with the share group member's) and the producer of parked copies and of the
// kafka sink, replaced when it wedges.

// clientOpts are the consumer's options for at-least-once delivery: the source
// and retry topics, rebalances blocked while a poll is handled, and finished
// work committed when partitions are revoked.
func (w *Worker) clientOpts() ([]kgo.Opt, error) {
	opts, err := w.groupOpts(append([]string{w.cfg.Source.Topic}, w.cfg.Delivery.RetryTopics...))
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onLost),
	)
	if w.offsetsInDB() {
		// Newly assigned partitions start where the database says, not where
		// Kafka's commit does. kgo calls this after fetching the commits and
		// before consuming the partitions, within the group session.
		opts = append(opts, kgo.AdjustFetchOffsetsFn(w.offsetsFromDB))
	}
	return opts, nil
}

// consumerOpts are what every consuming client has, a consumer group's or a
// share group's: the connection, the bounded fetches, metrics, logs, tracing
// and the pod's client ID.
func (w *Worker) consumerOpts() ([]kgo.Opt, error) {
	cfg := w.cfg
	conn, err := connFromConfig(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	kp := kprom.NewMetrics("sluice_worker_kafka", kprom.Registerer(w.reg), kprom.Gatherer(w.reg))
	opts = append(opts,
		kgo.FetchMaxWait(cfg.Consumer.FetchMaxWait.Duration),
		// Bound the read-ahead: kgo's 50 MiB default fetch of small records decodes
		// into hundreds of thousands of record objects (~280 MiB peak RSS on a 1M
		// backlog); the worker takes maxPollRecords at a time anyway.
		kgo.FetchMaxBytes(orDefault(cfg.Consumer.FetchMaxBytes, workerconfig.DefaultFetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(orDefault(cfg.Consumer.MaxPartitionFetchBytes, workerconfig.DefaultMaxPartitionFetchBytes)),
		kgo.WithHooks(kp),
		kgo.WithLogger(newKgoLogger(w.log)),
	)
	opts = append(opts, w.tracing.kafkaOpts()...)
	if id := clientID(); id != "" {
		opts = append(opts, kgo.ClientID(id))
	}
	return opts, nil
}

// groupOpts are the group consumer's options shared by both delivery modes.
func (w *Worker) groupOpts(topics []string) ([]kgo.Opt, error) {
	cfg := w.cfg
	opts, err := w.consumerOpts()
	if err != nil {
		return nil, err
	}
	start := kgo.NewOffset().AtStart()
	if cfg.Source.StartFrom == workerconfig.StartFromLatest {
		start = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Source.ConsumerGroup),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(cfg.Consumer.SessionTimeout.Duration),
		kgo.HeartbeatInterval(cfg.Consumer.HeartbeatInterval.Duration),
		kgo.RebalanceTimeout(cfg.Consumer.MaxPollInterval.Duration),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			w.joined.Store(true)
			w.metrics.rebalances.WithLabelValues("assigned").Inc()
		}),
	)
	if cfg.Consumer.GroupProtocol == workerconfig.GroupProtocolConsumer {
		// KIP-848: the broker assigns ("uniform", the server-side sticky
		// assignor, for the sticky balancer); the session timeout and
		// heartbeat interval are the group's configs. A broker without
		// KIP-848 gets the classic protocol with the (eager) sticky balancer.
		opts = append(opts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
	}
	if cfg.Consumer.StaticMembership {
		id, err := staticInstanceID()
		if err != nil {
			return nil, err
		}
		// kgo then skips LeaveGroup on close: the group keeps the member's
		// partitions for it until its session times out.
		opts = append(opts, kgo.InstanceID(id))
	}
	return opts, nil
}

// staticInstanceID is a static member's group.instance.id: its pod name,
// stable across restarts because the workers are a StatefulSet.
func staticInstanceID() (string, error) {
	id := os.Getenv(workerconfig.PodNameEnv)
	if id == "" {
		return "", errors.New("consumer.staticMembership needs POD_NAME (the StatefulSet pod's name) as the group.instance.id; it is empty")
	}
	return id, nil
}

// newProducer makes the client that writes parked copies (and the kafka sink's
// records): idempotent, acks=all, bounded delivery time.
func (w *Worker) newProducer() (*kgo.Client, error) {
	conn, err := connFromConfig(w.cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A retriable produce error (NOT_ENOUGH_REPLICAS, a leader move) is retried
		// after a metadata refresh; with kgo's 5s default min age, every retry
		// would outlive the delivery timeout and fail the record (and, for an
		// idempotent producer, bump its epoch and fail the next ones the same way).
		kgo.MetadataMinAge(producerMetadataMinAge),
		kgo.RecordDeliveryTimeout(deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration)),
		kgo.ProducerLinger(time.Millisecond),
		kgo.WithLogger(newKgoLogger(w.log.With("client", "producer"))),
	)
	opts = append(opts, w.tracing.kafkaOpts()...)
	if id := clientID(); id != "" {
		opts = append(opts, kgo.ClientID(id+"-producer"))
	}
	cl, err := kgo.NewClient(append(opts, w.opts.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return cl, nil
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// producerMetadataMinAge bounds how long a retriable produce error waits for
// fresh metadata; deliveryTimeout is always several times longer.
const producerMetadataMinAge = 500 * time.Millisecond

// replaceStreak is how many consecutive failed parks make the worker replace
// its producer.
const replaceStreak = 3

// replaceProducer swaps in a fresh producer and closes the old one, failing its
// buffered records (their source records are re-read). franz-go v1.22.3 can
// wedge an idempotent producer after an epoch bump under repeated
// NOT_ENOUGH_REPLICAS; a new client heals that without restarting the worker.
func (w *Worker) replaceProducer(why string) {
	fresh, err := w.newProducer()
	if err != nil {
		w.log.Error("could not replace the Kafka producer", "err", err)
		return
	}
	old := w.producer.Swap(fresh)
	w.parkFailStreak.Store(0)
	w.metrics.producerResets.Inc()
	w.log.Warn("replaced the Kafka producer", "why", why)
	go old.Close()
}

// deliveryTimeout bounds how long a produce (a parked copy, a kafka-sink
// record) may take: a third of maxPollInterval, between 2s and 30s. A park that
// can't finish in time fails, and its record is re-read after a pause, so the
// poll loop always gets back to the group well within the rebalance timeout.
func deliveryTimeout(maxPollInterval time.Duration) time.Duration {
	return min(max(maxPollInterval/3, 4*producerMetadataMinAge), 30*time.Second)
}
