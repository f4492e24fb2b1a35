// Package demo runs Sluice end to end on one machine, with no cluster, no
// Kafka and no root: envtest's etcd and kube-apiserver, kfake in this process,
// the operator's real controllers in this process, a pod runner that runs the
// real cmd/worker processes the operator's Deployments ask for, a load
// generator, a receiver that fails now and then, a live view and a summary
// that accounts for every record. `make demo` runs it (cmd/sluice-demo).
package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// processStart is when the demo process started: the first delivery is
// measured from it.
var processStart = time.Now()

// stateMarker marks a folder as the demo's, so that it is only ever emptied
// when the demo made it.
const stateMarker = ".sluice-demo"

// Run runs the demo and returns its summary. Everything it starts is stopped
// before it returns, also when ctx is canceled (Ctrl-C, SIGTERM).
func Run(ctx context.Context, cfg Config, out *os.File) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	root, err := modroot.Find()
	if err != nil {
		return Summary{}, fmt.Errorf("run the demo from the Sluice repository (make demo): %w", err)
	}
	state := cfg.StateDir
	if state == "" {
		state = filepath.Join(root, "bin", "demo")
	}
	if state, err = prepareStateDir(state); err != nil {
		return Summary{}, err
	}
	d := &run{cfg: cfg, root: root, state: state, out: out}
	defer d.teardown()
	return d.run(ctx)
}

// run is one demo run: what it started, in order, and how to stop it.
type run struct {
	cfg   Config
	root  string
	state string
	out   *os.File

	mu       sync.Mutex
	quiet    bool // the live view owns the terminal: progress goes to the log only
	logFile  *os.File
	cleanups []func()

	sink     demoSink
	recv     *receiver
	runner   *podRunner
	sampler  *sampler
	chaos    *chaosMonkey
	infos    []pipelineInfo
	log      *eventLog
	runStart time.Time
}

// say prints a progress line (and logs it).
func (d *run) say(format string, args ...any) {
	line := fmt.Sprintf("[%5.1fs] %s", time.Since(processStart).Seconds(), fmt.Sprintf(format, args...))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.logFile != nil {
		_, _ = fmt.Fprintln(d.logFile, line)
	}
	if !d.quiet {
		_, _ = fmt.Fprintln(d.out, line)
	}
}

// onStop registers a cleanup; teardown runs them in reverse order.
func (d *run) onStop(f func()) { d.cleanups = append(d.cleanups, f) }

func (d *run) teardown() {
	if len(d.cleanups) == 0 {
		return
	}
	start := time.Now()
	d.say("stopping everything the demo started")
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.say("stopped in %s; logs and pod folders stay in %s", time.Since(start).Round(100*time.Millisecond), d.state)
	d.mu.Lock()
	if d.logFile != nil {
		_ = d.logFile.Close()
		d.logFile = nil
	}
	d.mu.Unlock()
}

func (d *run) run(ctx context.Context) (Summary, error) {
	cfg := d.cfg
	logs := filepath.Join(d.state, "logs")
	f, err := os.Create(filepath.Join(logs, "demo.log"))
	if err != nil {
		return Summary{}, err
	}
	d.logFile = f
	d.log = &eventLog{sink: func(line string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.logFile != nil {
			_, _ = fmt.Fprintln(d.logFile, line)
		}
	}}
	// etcd's data, the API server's certificates: inside the state dir.
	if err := os.Setenv("TMPDIR", filepath.Join(d.state, "tmp")); err != nil {
		return Summary{}, err
	}
	if err := d.routeLogs(filepath.Join(logs, "operator.log")); err != nil {
		return Summary{}, err
	}
	d.say("Sluice demo: everything runs on this machine; state in %s", d.state)

	// The worker binary builds while the control plane starts (the envtest
	// binaries are built first on a first run).
	workerBin := filepath.Join(d.state, "bin", "worker")
	workerBuilt := make(chan error)
	go func() {
		start := time.Now()
		err := goBuild(ctx, d.root, workerBin, "./cmd/worker")
		if err == nil {
			d.say("worker binary: go build ./cmd/worker → %s (%s)", workerBin, time.Since(start).Round(100*time.Millisecond))
		}
		workerBuilt <- err
	}()
	if _, err := ensureEnvtest(ctx, d.root, filepath.Join(logs, "envtest-build.log"), d.say); err != nil {
		return Summary{}, err
	}

	start := time.Now()
	cp, err := startControlPlane(filepath.Join(d.state, "kubeconfig"))
	if err != nil {
		return Summary{}, err
	}
	d.onStop(func() {
		if err := cp.Stop(); err != nil {
			d.say("stopping the control plane: %v", err)
		}
	})
	d.say("control plane: etcd + kube-apiserver %s (envtest) with the StreamPipeline CRD, up in %s", testenv.K8sVersion, time.Since(start).Round(100*time.Millisecond))

	b, err := startBroker()
	if err != nil {
		return Summary{}, err
	}
	d.onStop(b.Close)
	for i := range cfg.Pipelines {
		name := "orders"
		if cfg.Pipelines > 1 {
			name = fmt.Sprintf("orders-%d", i+1)
		}
		d.infos = append(d.infos, pipelineInfo{Name: name, Topic: name, Group: demoNamespace + "." + name})
		if err := b.createTopic(ctx, name, cfg.Partitions); err != nil {
			return Summary{}, err
		}
	}
	d.say("kafka: kfake with 3 brokers at %s; source topic(s) %s with %d partitions", strings.Join(b.addrs, ","), topicNames(d.infos), cfg.Partitions)

	if err := d.startSink(); err != nil {
		return Summary{}, err
	}

	metricsAddress := cfg.MetricsBindAddress
	if metricsAddress == "" {
		metricsAddress = "0" // controller-runtime would take "" for its default, :8080
	}
	opCtx, stopOperator := context.WithCancel(context.Background())
	opDone, err := startOperator(opCtx, cp.env.Config, cp.env.Scheme, metricsAddress)
	if err != nil {
		stopOperator()
		return Summary{}, err
	}
	d.onStop(func() {
		stopOperator()
		if err := <-opDone; err != nil {
			d.say("operator: %v", err)
		}
	})
	d.say("operator: the real StreamPipeline controller and lag observer, in this process, with cmd/manager's defaults (log: %s)", filepath.Join(logs, "operator.log"))
	if metricsAddress != "0" {
		d.say("operator: metrics at http://%s/metrics", metricsAddress)
	}

	if err := <-workerBuilt; err != nil {
		return Summary{}, err
	}
	runnerCtx, stopRunner := context.WithCancel(context.Background())
	d.runner = newPodRunner(cp.env.Client, workerBin, d.state, d.log.add)
	runnerDone := make(chan struct{})
	go func() { d.runner.run(runnerCtx); close(runnerDone) }()
	d.onStop(func() {
		stopRunner()
		<-runnerDone
		d.runner.stopAll(context.Background())
	})
	d.say("pod runner: stands in for a kubelet; runs each worker pod as a cmd/worker process (no containers, no images, no scheduling); pods in %s", filepath.Join(d.state, "pods"))
	if cfg.ScrapeTargets != "" {
		targetsCtx, stopTargets := context.WithCancel(context.Background())
		targetsDone := make(chan error, 1)
		go func() { targetsDone <- writeScrapeTargets(targetsCtx, cfg.ScrapeTargets, metricsAddress, d.runner) }()
		d.onStop(func() {
			stopTargets()
			if err := <-targetsDone; err != nil {
				d.say("scrape targets: %v", err)
			}
		})
		d.say("scrape targets: Prometheus file_sd files %s and %s in %s", OperatorTargetsFile, WorkerTargetsFile, cfg.ScrapeTargets)
	}

	if err := d.applyPipelines(ctx, cp.env.Client, b.addrs); err != nil {
		return Summary{}, err
	}
	if err := d.waitForDeployments(ctx, cp.env.Client); err != nil {
		return Summary{}, err
	}

	reader, err := newTopicReader(b.addrs, d.parkTopics(), d.deadLetterTopics())
	if err != nil {
		return Summary{}, err
	}
	readerCtx, stopReader := context.WithCancel(context.Background())
	go reader.run(readerCtx)
	d.onStop(func() { stopReader(); reader.Close() })

	ledger := &ledger{}
	profile := loadProfile{Rate: cfg.Rate, Spike: cfg.Spike, Duration: cfg.Duration}
	d.sampler = &sampler{c: cp.env.Client, admin: b.admin, runner: d.runner, recv: d.recv, reader: reader,
		ledger: ledger, log: d.log, profile: profile, infos: d.infos, stateDir: d.state,
		http: &http.Client{Timeout: time.Second}, history: map[string]*pipelineHistory{}}
	if cfg.Chaos {
		groups := map[string]string{}
		for _, in := range d.infos {
			groups[in.Name] = in.Group
		}
		sp := d.pipelineSpec(d.infos[0])
		settle := sp.Spec.Startup.MaxJitter.Duration + sp.Spec.Consumer.SessionTimeout.Duration
		d.chaos = &chaosMonkey{runner: d.runner, admin: b.admin, groups: groups, interval: cfg.ChaosInterval, settle: settle, events: d.log.add}
		d.sampler.chaos = d.chaos
	}
	samplerCtx, stopSampler := context.WithCancel(context.Background())
	samplerDone := make(chan struct{})
	go func() { d.sampler.run(samplerCtx); close(samplerDone) }()
	d.onStop(func() { stopSampler(); <-samplerDone })

	if cfg.Keep {
		d.printKubectl(cp.kubeconfig)
	}

	// The run: load, chaos, the view.
	d.runStart = time.Now()
	if d.recv != nil {
		d.recv.startRun(d.runStart)
	}
	d.sampler.startRun(d.runStart)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan struct{})
	targets := make([]loadTarget, 0, len(d.infos))
	for _, in := range d.infos {
		targets = append(targets, loadTarget{Pipeline: in.Name, Topic: in.Topic})
	}
	go func() { generate(loadCtx, b.client, targets, profile, cfg.Sink, d.runStart, ledger); close(loadDone) }()
	d.say("load: %.0f records/s per pipeline for %s, ×%.0f for %s in the middle; one record in %d a poison pill",
		cfg.Rate, cfg.Duration, cfg.Spike, spikeLength(profile), poisonEvery)

	chaosCtx, stopChaos := context.WithCancel(ctx)
	defer stopChaos()
	if d.chaos != nil {
		go d.chaos.run(chaosCtx)
	}
	viewCtx, stopView := context.WithCancel(context.Background())
	viewDone := d.startView(viewCtx)

	interrupted := false
	select {
	case <-loadDone:
	case <-ctx.Done():
		interrupted = true
	}
	stopChaos()
	drained := false
	if !interrupted {
		drained = d.drain(ctx, reader, b, ledger)
		interrupted = ctx.Err() != nil
	}
	stopView()
	<-viewDone
	d.mu.Lock()
	d.quiet = false
	d.mu.Unlock()

	sum, err := d.summarize(context.Background(), reader, b, ledger, profile)
	if err != nil {
		return Summary{}, err
	}
	sum.Interrupted = interrupted
	if !drained && !interrupted {
		d.say("not every record was delivered or dead-lettered within --drain-timeout %s; the consumer groups are in %s",
			cfg.DrainTimeout, filepath.Join(d.state, "logs", "demo.log"))
		groups := make([]string, 0, len(d.infos))
		for _, in := range d.infos {
			groups = append(groups, in.Group)
		}
		logGroups(context.Background(), b.admin, groups, d.runner.pods(), d.log.add)
	}
	sum.print(d.out)
	if cfg.SummaryJSON != "" {
		if err := sum.writeJSON(cfg.SummaryJSON); err != nil {
			return sum, err
		}
	}
	if cfg.Keep && !interrupted {
		d.keep(ctx, b, targets, ledger, cp.kubeconfig)
	}
	return sum, nil
}

// routeLogs sends the operator's (controller-runtime's and client-go's) logs to
// a file: the terminal belongs to the view.
func (d *run) routeLogs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	d.onStop(func() { _ = f.Close() })
	logger := zap.New(zap.WriteTo(f))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger.WithName("klog"))
	return nil
}

func (d *run) startSink() error {
	switch d.cfg.Sink {
	case sinkLog:
		d.sink = logSink{podsDir: filepath.Join(d.state, "pods")}
		d.say("sink: log (each worker's stdout, kept in its pod folder as stdout.log)")
	case sinkPostgres:
		d.sink = postgresSink{dsn: d.cfg.PGDSN}
		d.say("sink: postgres (a table sluice_demo_<pipeline> in --pg-dsn; the DSN reaches the workers as a Secret mounted as a file)")
	default:
		d.recv = newReceiver(failurePlan{Duration: d.cfg.Duration})
		if err := d.recv.listen(); err != nil {
			return err
		}
		d.onStop(func() { _ = d.recv.Close() })
		d.sink = httpSink{recv: d.recv}
		d.say("sink: HTTP receiver at %s (an idempotent service: one effect per Idempotency-Key; it fails now and then, see docs/demo.md)", d.recv.URL("<pipeline>"))
	}
	return nil
}

// applyPipelines creates the demo's namespace and StreamPipelines, as a user
// would with kubectl apply, and keeps the manifests in the state dir.
func (d *run) applyPipelines(ctx context.Context, c client.Client, brokers []string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, in := range d.infos {
		if err := d.sink.prepare(ctx, c, in.Name); err != nil {
			return err
		}
		yaml, sp, err := renderPipeline(demoPipelineParams(in.Name, d.cfg, brokers, d.sink.yaml(in.Name)))
		if err != nil {
			return err
		}
		path := filepath.Join(d.state, "manifests", in.Name+".yaml")
		if err := os.WriteFile(path, yaml, 0o644); err != nil {
			return err
		}
		if err := c.Create(ctx, sp); err != nil {
			return fmt.Errorf("apply %s: %w", path, err)
		}
		d.say("applied StreamPipeline %s/%s (%s)", demoNamespace, in.Name, path)
	}
	return nil
}

// waitForDeployments waits until the operator has provisioned each pipeline's
// topics and created its worker Deployment.
func (d *run) waitForDeployments(ctx context.Context, c client.Client) error {
	start := time.Now()
	for _, in := range d.infos {
		for {
			sp := &sluicev1.StreamPipeline{}
			dep := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: in.Name}, sp); err != nil {
				return err
			}
			err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: render.WorkerName(sp)}, dep)
			if err == nil {
				d.say("operator reconciled %s: topics %s and %s provisioned, Deployment %s created", in.Name,
					strings.Join(sp.RetryTopics(), ", "), sp.DeadLetterTopic(), dep.Name)
				break
			}
			if time.Since(start) > time.Minute {
				msg := ""
				if c := meta.FindStatusCondition(sp.Status.Conditions, sluicev1.ConditionReady); c != nil {
					msg = c.Reason + ": " + c.Message
				}
				return fmt.Errorf("the operator did not create %s's Deployment within a minute (Ready: %s); see %s", in.Name, msg,
					filepath.Join(d.state, "logs", "operator.log"))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// parkTopics lists each pipeline's retry and dead-letter topics.
func (d *run) parkTopics() map[string][]string {
	out := map[string][]string{}
	for _, in := range d.infos {
		sp := d.pipelineSpec(in)
		out[in.Name] = append(sp.RetryTopics(), sp.DeadLetterTopic())
	}
	return out
}

func (d *run) deadLetterTopics() map[string]string {
	out := map[string]string{}
	for _, in := range d.infos {
		out[in.Name] = d.pipelineSpec(in).DeadLetterTopic()
	}
	return out
}

// pipelineSpec is the demo's manifest of a pipeline, parsed.
func (d *run) pipelineSpec(in pipelineInfo) *sluicev1.StreamPipeline {
	_, sp, _ := renderPipeline(demoPipelineParams(in.Name, d.cfg, []string{"x"}, d.sink.yaml(in.Name)))
	return sp
}

// startView shows the live view on a terminal, status lines otherwise.
func (d *run) startView(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go d.logStatus(ctx)
	_, tty := terminalWidth(d.out)
	if tty && !d.cfg.Plain {
		d.mu.Lock()
		d.quiet = true
		d.mu.Unlock()
		go func() { showLive(ctx, d.out, d.out, d.sampler); close(done) }()
		return done
	}
	go func() { showPlain(ctx, d.out, d.sampler, 5*time.Second); close(done) }()
	return done
}

// logStatus writes the status line to the demo's log every 5 s.
func (d *run) logStatus(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.log.sink(statusLine(d.sampler.current()))
		}
	}
}

// drain waits, after the load stopped, until every record is delivered or
// dead-lettered and the pipelines are back at their minimum of one worker
// (the scale-down is part of the story); it returns whether the records
// settled before the drain timeout.
func (d *run) drain(ctx context.Context, reader *topicReader, b *broker, l *ledger) bool {
	deadline := time.Now().Add(d.cfg.DrainTimeout)
	d.log.add("load stopped: waiting for every record to be delivered or dead-lettered and for the scale-down (at most %s)", d.cfg.DrainTimeout)
	settled := false
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return settled
		case <-time.After(time.Second):
		}
		if !settled {
			accounts, err := d.account(ctx, reader, b, l, 2*time.Second)
			if err != nil {
				continue
			}
			settled = true
			for _, a := range accounts {
				if a.NotYetConsumed > 0 || a.StillInRetry > 0 {
					settled = false
				}
			}
			if settled {
				d.log.add("every record delivered or dead-lettered")
			}
		}
		atRest := true
		for _, p := range d.sampler.current().Pipelines {
			if p.Replicas > 1 {
				atRest = false
			}
		}
		if settled && atRest {
			return true
		}
	}
	return settled
}

// account gathers what each pipeline's records became.
func (d *run) account(ctx context.Context, reader *topicReader, b *broker, l *ledger, wait time.Duration) ([]PipelineSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := reader.caughtUp(ctx, b.admin); err != nil {
		return nil, err
	}
	produced := l.all()
	var out []PipelineSummary
	for _, in := range d.infos {
		keys, effects, redeliveries, err := d.sink.collect(ctx, in.Name)
		if err != nil {
			return nil, err
		}
		committed, err := b.admin.FetchOffsets(ctx, in.Group)
		if err != nil {
			return nil, err
		}
		offsets := map[string]map[int32]int64{}
		committed.Each(func(o kadm.OffsetResponse) {
			if offsets[o.Topic] == nil {
				offsets[o.Topic] = map[int32]int64{}
			}
			offsets[o.Topic][o.Partition] = o.At
		})
		dead, copies := reader.parked(in.Name)
		sp := d.pipelineSpec(in)
		var mine []producedRecord
		for _, r := range produced {
			if r.Pipeline == in.Name {
				mine = append(mine, r)
			}
		}
		out = append(out, account(pipelineOutcome{
			Name: in.Name, SourceTopic: in.Topic, Produced: mine, Keys: keys, Effects: effects,
			SinkCountsRedeliveries: redeliveries, Dead: dead, Copies: copies, Committed: offsets,
			RetryAttempts: len(sp.RetryTopics()),
		}))
	}
	return out, nil
}

func (d *run) summarize(ctx context.Context, reader *topicReader, b *broker, l *ledger, p loadProfile) (Summary, error) {
	accounts, err := d.account(ctx, reader, b, l, 30*time.Second)
	if err != nil {
		return Summary{}, fmt.Errorf("summary: %w", err)
	}
	sum := summarize(accounts, d.runner.scaleChanges(), d.runStart)
	samples := d.sampler.lagSamples()
	for _, s := range samples {
		sum.MaxLag = max(sum.MaxLag, s.Lag)
	}
	_, spikeEnd := p.spikeWindow()
	if dt, ok := drainTime(samples, d.runStart.Add(spikeEnd), int64(2*p.Rate)*int64(len(d.infos))); ok {
		v := round1(dt.Seconds())
		sum.DrainSeconds = &v
	}
	sum.WorkerRestarts = d.runner.restarts.Load()
	if d.chaos != nil {
		sum.ChaosKills = d.chaos.kills.Load()
	}
	if d.recv != nil {
		if t := d.recv.firstDelivery.Load(); t != nil {
			v := round1(t.Sub(processStart).Seconds())
			sum.FirstDeliverySeconds, sum.FirstDeliveryAt = &v, t
		}
	}
	sum.RunSeconds = round1(time.Since(d.runStart).Seconds())
	return sum, nil
}

// printKubectl says how to watch the demo with kubectl.
func (d *run) printKubectl(kubeconfig string) {
	name := d.infos[0].Name
	d.say("kubectl works against the demo's API server from another terminal:")
	d.say("  export KUBECONFIG=%s", kubeconfig)
	d.say("  kubectl get sp -n %s -w", demoNamespace)
	d.say("  kubectl describe sp -n %s %s", demoNamespace, name)
	d.say("  kubectl get deploy,events -n %s", demoNamespace)
}

// keep leaves everything running after the summary, with the steady load,
// until ctx ends (Ctrl-C).
func (d *run) keep(ctx context.Context, b *broker, targets []loadTarget, l *ledger, kubeconfig string) {
	d.printKubectl(kubeconfig)
	d.say("--keep: everything stays up with a steady load of %.0f records/s; Ctrl-C stops it all", d.cfg.Rate)
	steady := loadProfile{Rate: d.cfg.Rate, Spike: 1, Duration: 1000 * time.Hour}
	generate(ctx, b.client, targets, steady, d.cfg.Sink, time.Now(), l)
}

func spikeLength(p loadProfile) time.Duration {
	from, to := p.spikeWindow()
	return to - from
}

func topicNames(infos []pipelineInfo) string {
	names := make([]string, 0, len(infos))
	for _, in := range infos {
		names = append(names, in.Topic)
	}
	return strings.Join(names, ", ")
}

// goBuild builds a package of the module into out.
func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// prepareStateDir makes dir the demo's, empty: a folder the demo made before
// is emptied, a new one created, and any other folder with files in it is
// refused (the demo never deletes what it did not write).
func prepareStateDir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return "", err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, stateMarker)); err != nil {
			return "", fmt.Errorf("--state-dir %s has files the demo did not write; give an empty or new folder", dir)
		}
		for _, e := range entries {
			if e.Name() == "bin" {
				continue // the worker binary: go build relinks it only when it changed
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return "", err
			}
		}
	}
	for _, sub := range []string{"logs", "tmp", "bin", "pods", "manifests"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", err
		}
	}
	return dir, os.WriteFile(filepath.Join(dir, stateMarker), []byte("made by sluice-demo; emptied at its next start\n"), 0o644)
}
