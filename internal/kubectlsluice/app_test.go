package kubectlsluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/controllers"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/worker/failure"
)

// The plugin runs against a real API server (envtest) with the StreamReplay
// controller, and a kfake cluster per test.
var k8s client.Client

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: manager:", err)
		return 1
	}
	if err := (&controllers.StreamReplayReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setup:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	k8s = env.Client
	return m.Run()
}

// fixture is a namespace with a pipeline "orders" on its own kfake, whose
// DLQ holds n dead letters over 3 partitions (every third a poison pill).
type fixture struct {
	ns  string
	sp  *sluicev1.StreamPipeline
	adm *kadm.Client
	cl  *kgo.Client
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	ctx := context.Background()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "plugin-"}}
	if err := k8s.Create(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	sp := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: nsObj.Name, Name: "orders"},
		Spec: sluicev1.StreamPipelineSpec{Kafka: sluicev1.KafkaSpec{BootstrapServers: fake.ListenAddrs()},
			Source: sluicev1.SourceSpec{Topic: "orders"}, Sink: sluicev1.SinkSpec{Log: &sluicev1.LogSink{}}}}
	if err := k8s.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	f := &fixture{ns: nsObj.Name, sp: sp, adm: kadm.NewClient(cl), cl: cl}
	topics := append(sp.RetryTopics(), sp.DeadLetterTopic())
	if _, err := f.adm.CreateTopics(ctx, 3, 1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	var rs []*kgo.Record
	for i := range n {
		class := "transient"
		if i%3 == 0 {
			class = "poison"
		}
		rs = append(rs, &kgo.Record{Topic: sp.DeadLetterTopic(), Partition: int32(i % 3), Key: []byte("k" + strconv.Itoa(i)),
			Timestamp: time.Now().Add(-time.Hour), Headers: []kgo.RecordHeader{
				{Key: failure.HeaderOriginalTopic, Value: []byte("orders")},
				{Key: failure.HeaderOriginalPartition, Value: []byte(strconv.Itoa(i % 3))},
				{Key: failure.HeaderOriginalOffset, Value: []byte(strconv.Itoa(100 + i))},
				{Key: failure.HeaderErrorClass, Value: []byte(class)},
				{Key: failure.HeaderErrorMessage, Value: []byte("amount of record " + strconv.Itoa(i) + " is not a number")},
				{Key: failure.HeaderAttempt, Value: []byte("1")},
			}})
	}
	if len(rs) > 0 {
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &App{Client: k8s, Namespace: f.ns, Out: &out, Poll: 100 * time.Millisecond,
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := app.Run(ctx, args)
	return out.String(), err
}

func TestDLQShowsDeadLettersWithTheirFailureHeaders(t *testing.T) {
	f := newFixture(t, 30)
	out, err := f.run(t, "dlq", "orders", "--class", "poison", "--limit", "4")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "orders.dlq/"); n != 4 {
		t.Fatalf("%d dead letters shown, want 4 (--limit):\n%s", n, out)
	}
	if strings.Contains(out, "transient") {
		t.Fatalf("--class poison shows a transient one:\n%s", out)
	}
	for _, want := range []string{"poison  attempt 1  age 60m  from orders/0@100", `key: "k0"`, "error: amount of record 0 is not a number"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	empty := newFixture(t, 0)
	if out, err := empty.run(t, "dlq", "orders"); err != nil || !strings.Contains(out, "no dead letters in "+empty.sp.DeadLetterTopic()) {
		t.Fatalf("empty DLQ: %q, %v", out, err)
	}
}

func TestRedriveCreatesAReplayAndFollowsItUntilComplete(t *testing.T) {
	f := newFixture(t, 90)
	out, err := f.run(t, "redrive", "orders", "--class", "poison", "--message-contains", "amount", "--rate", "1000")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "created") || !strings.Contains(out, "30 copied, 0 parked") {
		t.Fatalf("output:\n%s", out)
	}
	list := &sluicev1.StreamReplayList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(f.ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("replays: %v %v", list.Items, err)
	}
	sr := list.Items[0]
	if sr.Spec.From != sluicev1.ReplayFromDeadLetters || sr.Spec.Select.ErrorClasses[0] != "poison" || sr.Spec.Select.MessageContains != "amount" || *sr.Spec.RateLimit != 1000 {
		t.Fatalf("replay spec %+v", sr.Spec)
	}
	ends, err := f.adm.ListEndOffsets(context.Background(), f.sp.RetryTopics()[0])
	if err != nil {
		t.Fatal(err)
	}
	var copied int64
	ends.Each(func(o kadm.ListedOffset) { copied += o.Offset })
	if copied < 30 { // 30 copies plus the transaction markers
		t.Fatalf("retry topic holds %d offsets, want the 30 copies", copied)
	}

	out, err = f.run(t, "redrive", "orders", "--dry-run", "--no-wait")
	if err != nil || !strings.Contains(out, "created") || strings.Contains(out, "Complete") {
		t.Fatalf("--no-wait: %q %v", out, err)
	}

	out, err = f.run(t, "redrive", "orders", "--class", "poison", "--reprocess", "--no-wait")
	if err != nil || !strings.Contains(out, "created") {
		t.Fatalf("--reprocess: %q %v", out, err)
	}
	if err := k8s.List(context.Background(), list, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	modes := map[sluicev1.ReplayMode]int{}
	for _, sr := range list.Items {
		modes[sr.Spec.Mode]++
	}
	if modes[sluicev1.ReplayModeReprocess] != 1 {
		t.Fatalf("modes of the replays %v, want one Reprocess", modes)
	}
}

func TestReplayDryRunCountsTheWindow(t *testing.T) {
	f := newFixture(t, 0)
	now := time.Now().Truncate(time.Millisecond)
	var rs []*kgo.Record
	for i := range 20 {
		rs = append(rs, &kgo.Record{Topic: "orders", Partition: int32(i % 3), Timestamp: now.Add(time.Duration(i-20) * time.Minute)})
	}
	if err := f.cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, err := f.run(t, "replay", "orders", "--from-time", now.Add(-10*time.Minute).Format(time.RFC3339), "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "dry run: 10 records of [orders] match") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestStatusShowsConditionsLagDeadLettersAndEvents(t *testing.T) {
	f := newFixture(t, 12)
	ctx := context.Background()
	var rs []*kgo.Record
	for i := range 30 {
		rs = append(rs, &kgo.Record{Topic: "orders", Partition: int32(i % 3)})
	}
	if err := f.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	offsets.AddOffset("orders", 0, 4, -1)
	if err := f.adm.CommitAllOffsets(ctx, f.sp.ConsumerGroup(), offsets); err != nil {
		t.Fatal(err)
	}
	f.sp.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Succeeded", Message: "2 workers run the current spec", LastTransitionTime: metav1.Now()}}
	f.sp.Status.Replicas, f.sp.Status.ReadyReplicas, f.sp.Status.DesiredReplicas = 2, 2, 2
	if err := k8s.Status().Update(ctx, f.sp); err != nil {
		t.Fatal(err)
	}
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, GenerateName: "orders-"}, EventTime: metav1.NowMicro(),
		ReportingController: "sluice-operator", ReportingInstance: "test", Action: "Reconcile", Type: corev1.EventTypeNormal, Reason: "Scaled",
		Note: "scaled from 1 to 2", Regarding: corev1.ObjectReference{Kind: "StreamPipeline", Namespace: f.ns, Name: "orders", APIVersion: sluicev1.GroupVersion.String()}}
	if err := k8s.Create(ctx, ev); err != nil {
		t.Fatal(err)
	}
	out, err := f.run(t, "status", "orders")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, row := range [][]string{
		{"Ready", "True", "Succeeded", "2", "workers", "run", "the", "current", "spec"},
		{"Replicas:", "2", "ready", "of", "2", "(desired", "2)"},
		{"0", "4", "10", "6"},  // committed 4 of 10
		{"1", "-", "10", "10"}, // nothing committed
		{"total", "26"},
		{"Dead", "letters", "in", f.sp.DeadLetterTopic() + ":", "12", "(kubectl", "sluice", "dlq", "orders)"},
		{"0s", "Normal", "Scaled", "scaled", "from", "1", "to", "2"},
	} {
		if !hasRow(out, row) {
			t.Errorf("output lacks a row %q:\n%s", row, out)
		}
	}
}

// hasRow reports whether a line of out has exactly these fields.
func hasRow(out string, fields []string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestRewindMovesTheGroupBackAndSaysWhatItDid(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var rs []*kgo.Record
	for i := range 30 {
		rs = append(rs, &kgo.Record{Topic: "orders", Partition: int32(i % 3), Timestamp: now.Add(time.Duration(i-30) * time.Minute)})
	}
	if err := f.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := f.adm.ListEndOffsets(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.adm.CommitAllOffsets(ctx, f.sp.ConsumerGroup(), ends.Offsets()); err != nil {
		t.Fatal(err)
	}
	// Records 21..29 (minutes -9..-1) are younger than 9m30s: 3 per partition.
	out, err := f.run(t, "rewind", "orders", "--ago", "9m30s", "--dry-run")
	if err != nil || !strings.Contains(out, "would move 3 partitions back (0: 10 → 7, 1: 10 → 7, 2: 10 → 7) and read 9 records again") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = f.run(t, "rewind", "orders", "--offset", "1=2")
	if err != nil || !strings.Contains(out, "Complete: rewound group "+f.sp.ConsumerGroup()+" on orders: 1 partitions back (1: 10 → 2)") {
		t.Fatalf("rewind: %v\n%s", err, out)
	}
	committed, err := f.adm.FetchOffsets(ctx, f.sp.ConsumerGroup())
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := committed.Lookup("orders", 1); o.At != 2 {
		t.Fatalf("partition 1 committed at %d, want 2", o.At)
	}
	if o, _ := committed.Lookup("orders", 0); o.At != 10 {
		t.Fatalf("partition 0 committed at %d, want 10 (not listed)", o.At)
	}
}

func TestBadCommandLinesSayWhy(t *testing.T) {
	f := newFixture(t, 0)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reprocess", "orders"}, `unknown command "reprocess"`},
		{[]string{"rewind", "orders"}, "rewind needs --to-time, --ago or --offset"},
		{[]string{"rewind", "orders", "--offset", "3"}, `--offset "3": want PARTITION=OFFSET`},
		{[]string{"rewind", "orders", "--ago", "1h", "--to-time", "2026-11-24T00:00:00Z"}, "not both"},
		{[]string{"dlq"}, "dlq needs a pipeline name"},
		{[]string{"dlq", "orders", "extra"}, "dlq takes one pipeline, got also extra"},
		{[]string{"dlq", "orders", "--class", "fatal"}, `--class "fatal": want poison or transient`},
		{[]string{"redrive", "orders", "--target", "Elsewhere"}, `--target "Elsewhere"`},
		{[]string{"replay", "orders"}, "replay needs --from-time"},
		{[]string{"replay", "orders", "--from-time", "yesterday"}, "--from-time"},
		{[]string{"redrive", "orders", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		_, err := f.run(t, tc.args...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	if _, err := f.run(t, "status", "absent"); err == nil || !strings.Contains(err.Error(), "StreamPipeline "+f.ns+"/absent") {
		t.Errorf("status of a missing pipeline: %v", err)
	}
	if _, err := f.run(t, "redrive", "absent"); err == nil || !strings.Contains(err.Error(), "StreamPipeline "+f.ns+"/absent") {
		t.Errorf("redrive of a missing pipeline: %v", err)
	}
}
