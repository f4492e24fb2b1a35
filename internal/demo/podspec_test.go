package demo

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// objects is an objectSource over fixed objects.
type objects struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func (o objects) ConfigMap(name string) (*corev1.ConfigMap, error) {
	if cm, ok := o.configMaps[name]; ok {
		return cm, nil
	}
	return nil, fmt.Errorf("ConfigMap %s not found", name)
}

func (o objects) Secret(name string) (*corev1.Secret, error) {
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("Secret %s not found", name)
}

// renderedPod is what the operator renders for a pipeline with SASL and the
// postgres sink: a config volume, two Secret volumes, Downward API env.
func renderedPod(t *testing.T) (corev1.PodSpec, objects) {
	t.Helper()
	sp := &sluicev1.StreamPipeline{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "demo", UID: "uid-1"},
		Spec: sluicev1.StreamPipelineSpec{
			Kafka: sluicev1.KafkaSpec{
				BootstrapServers: []string{"127.0.0.1:9092"},
				SASL:             &sluicev1.KafkaSASLSpec{Mechanism: "SCRAM-SHA-512", SecretRef: sluicev1.SecretRef{Name: "kafka-user"}},
			},
			Source: sluicev1.SourceSpec{Topic: "orders"},
			Sink: sluicev1.SinkSpec{Postgres: &sluicev1.PostgresSink{
				DSNSecretRef: sluicev1.SecretKeyRef{Name: "pg", Key: "dsn"}, Table: "orders",
			}},
			Template: &sluicev1.PodTemplateOverrides{Env: []sluicev1.EnvVar{
				{Name: "TEAM", Value: "shop"},
				{Name: "TIER", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "tier"}}},
			}},
		},
	}
	cm, hash, err := render.ConfigMap(sp)
	if err != nil {
		t.Fatal(err)
	}
	d := render.Deployment(sp, render.DeploymentParams{Image: "sluice:demo", ConfigHash: hash, Replicas: 1})
	objs := objects{
		configMaps: map[string]*corev1.ConfigMap{cm.Name: cm, "settings": {Data: map[string]string{"tier": "gold"}}},
		secrets: map[string]*corev1.Secret{
			"kafka-user": {Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}},
			"pg":         {Data: map[string][]byte{"dsn": []byte("postgres://x")}},
		},
	}
	return d.Spec.Template.Spec, objs
}

func TestMaterializeGivesTheProcessWhatThePodWouldGet(t *testing.T) {
	spec, objs := renderedPod(t)
	podDir := "/state/pods/demo/orders-worker-abc"
	id := podIdentity{Name: "orders-worker-abc", Namespace: "demo", NodeMemory: 1 << 30}
	nextPort := int32(40000)
	l, err := materialize(spec, id, objs, imageFS{render.WorkerBinary: "/state/bin/worker"}, podDir, func() (int32, error) {
		nextPort++
		return nextPort, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	cfgFile := filepath.Join(podDir, "volumes/config", workerconfig.FileName)
	if want := []string{"/state/bin/worker", "--config=" + cfgFile}; !slices.Equal(l.Argv, want) {
		t.Errorf("argv = %v, want %v", l.Argv, want)
	}
	files := map[string]podFile{}
	for _, f := range l.Files {
		files[f.Path] = f
	}
	for path, want := range map[string]string{
		filepath.Join(podDir, "volumes/kafka-sasl/username"): "u",
		filepath.Join(podDir, "volumes/kafka-sasl/password"): "p",
		filepath.Join(podDir, "volumes/postgres-dsn/dsn"):    "postgres://x",
	} {
		if f, ok := files[path]; !ok || string(f.Data) != want || f.Mode != 0o440 {
			t.Errorf("secret file %s = %+v, want %q with mode 0440", path, f, want)
		}
	}
	if !slices.Contains(l.Dirs, filepath.Join(podDir, "volumes/tmp")) {
		t.Errorf("dirs %v lack the /tmp emptyDir", l.Dirs)
	}

	// The config the process reads points at the host copies and its own port.
	cfg, err := workerconfig.Parse(files[cfgFile].Data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.SASL.UsernameFile != filepath.Join(podDir, "volumes/kafka-sasl/username") ||
		cfg.Kafka.SASL.PasswordFile != filepath.Join(podDir, "volumes/kafka-sasl/password") ||
		cfg.Sink.Postgres.DSNFile != filepath.Join(podDir, "volumes/postgres-dsn/dsn") {
		t.Errorf("paths in the rewritten config: sasl %+v, dsn %s", cfg.Kafka.SASL, cfg.Sink.Postgres.DSNFile)
	}
	if cfg.Server.Port != 40001 || l.Ports[render.HealthPort] != 40001 {
		t.Errorf("server.port = %d, ports %v: want the process's own port 40001", cfg.Server.Port, l.Ports)
	}
	if cfg.Source.Topic != "orders" || cfg.Pipeline.Name != "orders" {
		t.Errorf("the rest of the config changed: %+v", cfg)
	}

	env := strings.Join(l.Env, " ")
	for _, want := range []string{
		"POD_NAME=orders-worker-abc", "POD_NAMESPACE=demo",
		workerconfig.MemoryLimitEnv + "=268435456", // limits.memory 256Mi
		"TEAM=shop", "TIER=gold", "TMPDIR=" + filepath.Join(podDir, "volumes/tmp"),
	} {
		if !slices.Contains(l.Env, want) {
			t.Errorf("env lacks %s: %s", want, env)
		}
	}
	if l.Grace.Seconds() != float64(*spec.TerminationGracePeriodSeconds) || l.Readiness == nil {
		t.Errorf("grace %v, readiness %v", l.Grace, l.Readiness)
	}
}

func TestMaterializeRefusesWhatItCannotRun(t *testing.T) {
	cases := []struct {
		name string
		edit func(*corev1.PodSpec, *objects)
		want string
	}{
		{"a missing Secret", func(_ *corev1.PodSpec, o *objects) { delete(o.secrets, "pg") }, "Secret pg not found"},
		{"a binary the image lacks", func(s *corev1.PodSpec, _ *objects) { s.Containers[0].Command = []string{"/bin/sh"} }, "not in the worker image"},
		{"a hostPath volume", func(s *corev1.PodSpec, _ *objects) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, "configMap, secret and emptyDir volumes only"},
		{"a second container", func(s *corev1.PodSpec, _ *objects) { s.Containers = append(s.Containers, s.Containers[0]) }, "one container"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, objs := renderedPod(t)
			tc.edit(&spec, &objs)
			_, err := materialize(spec, podIdentity{}, objs, imageFS{render.WorkerBinary: "/w"}, "/p", func() (int32, error) { return 1, nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHostPathUsesTheLongestMount(t *testing.T) {
	mounts := []mount{{"/etc/sluice/config", "/p/config"}, {"/etc/sluice/secrets/kafka-ca", "/p/ca"}, {"/tmp", "/p/tmp"}}
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"/etc/sluice/config/worker.yaml", "/p/config/worker.yaml", true},
		{"/etc/sluice/secrets/kafka-ca/ca.crt", "/p/ca/ca.crt", true},
		{"/tmp", "/p/tmp", true},
		{"/tmpfoo", "", false},
		{"/etc/sluice/secrets/other/x", "", false},
	}
	for _, tc := range cases {
		got, ok := hostPath(tc.in, mounts)
		if got != tc.want || ok != tc.ok {
			t.Errorf("hostPath(%s) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if got := mapArg("--config=/etc/sluice/config/w.yaml", mounts); got != "--config=/p/config/w.yaml" {
		t.Errorf("mapArg = %s", got)
	}
	if got := mapArg("--level=info", mounts); got != "--level=info" {
		t.Errorf("mapArg changed an argument without a path: %s", got)
	}
}

func TestResourceValueRoundsUpByTheDivisor(t *testing.T) {
	c := corev1.Container{Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceCPU: resource.MustParse("1500m")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}}
	cases := []struct {
		res, divisor, want string
	}{
		{"limits.memory", "", "268435456"},
		{"limits.memory", "1Mi", "256"},
		{"requests.memory", "1Gi", "1"},
		{"limits.cpu", "", "2"},
		{"limits.cpu", "1m", "1500"},
	}
	for _, tc := range cases {
		sel := corev1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			sel.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := resourceValue(sel, c, podIdentity{})
		if err != nil || got != tc.want {
			t.Errorf("%s / %q = %s (%v), want %s", tc.res, tc.divisor, got, err, tc.want)
		}
	}
	if got, _ := resourceValue(corev1.ResourceFieldSelector{Resource: "limits.memory"}, corev1.Container{}, podIdentity{NodeMemory: 42}); got != "42" {
		t.Errorf("no limit: %s, want the node's memory 42", got)
	}
}
