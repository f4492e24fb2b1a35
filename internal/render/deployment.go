package render

import (
	"maps"
	"path"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// DeploymentParams are the inputs of the worker workload (a Deployment, or a
// StatefulSet for static members) that don't come from the spec.
type DeploymentParams struct {
	// Image is the worker image when the pipeline doesn't set one.
	Image string
	// ConfigHash is the hash of the rendered worker configuration.
	ConfigHash string
	// Replicas is the replica count the operator decided on.
	Replicas int32
}

const (
	volumeConfig = "config"
	volumeTmp    = "tmp"
)

// DefaultResources are the worker's resources when the template sets none: the
// worker is I/O bound and small; the memory limit leaves room for one poll batch
// of large records.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// workerPodTemplate is the worker pod of either workload kind. revisionLabel
// is the label its controller puts on the pods of one template revision: the
// topology spread counts only the pods of the current revision, so that a
// rollout's new pods spread too.
func workerPodTemplate(sp *sluicev1.StreamPipeline, p DeploymentParams, revisionLabel string) corev1.PodTemplateSpec {
	t := sp.Spec.Template
	if t == nil {
		t = &sluicev1.PodTemplateOverrides{}
	}
	image := p.Image
	if sp.Spec.Image != "" {
		image = sp.Spec.Image
	}

	podLabels := make(map[string]string, len(t.Labels)+5)
	for k, v := range t.Labels {
		podLabels[k] = string(v)
	}
	maps.Copy(podLabels, Labels(sp)) // ours win: the selector must keep matching

	podAnnotations := maps.Clone(t.Annotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	podAnnotations[sluicev1.AnnotationConfigHash] = p.ConfigHash
	podAnnotations["prometheus.io/scrape"] = "true"
	podAnnotations["prometheus.io/port"] = strconv.Itoa(HealthPort)
	podAnnotations["prometheus.io/path"] = "/metrics"

	resources := DefaultResources()
	if t.Resources != nil {
		resources = *t.Resources.DeepCopy()
	}

	container := corev1.Container{
		Name:            ContainerName,
		Image:           image,
		ImagePullPolicy: t.ImagePullPolicy,
		Command:         []string{WorkerBinary},
		Args:            []string{"--config=" + path.Join(ConfigDir, workerconfig.FileName)},
		Env:             workerEnv(t.Env),
		Ports: []corev1.ContainerPort{{
			Name: HealthPortName, ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources: resources,
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/healthz"),
			PeriodSeconds:    10,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/readyz"),
			PeriodSeconds:    5,
			TimeoutSeconds:   2,
			FailureThreshold: 2,
		},
		VolumeMounts:             volumeMounts(sp),
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	pod := corev1.PodSpec{
		ServiceAccountName:            WorkerName(sp),
		AutomountServiceAccountToken:  ptr.To(false), // the worker never talks to the Kubernetes API
		TerminationGracePeriodSeconds: ptr.To(TerminationGracePeriodSeconds(sp)),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(WorkerUID),
			RunAsGroup:     ptr.To(WorkerUID),
			FSGroup:        ptr.To(WorkerUID),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers:        []corev1.Container{container},
		Volumes:           volumes(sp),
		NodeSelector:      maps.Clone(t.NodeSelector),
		Tolerations:       t.Tolerations,
		Affinity:          t.Affinity,
		PriorityClassName: t.PriorityClassName,
		ImagePullSecrets:  t.ImagePullSecrets,
	}
	if t.Affinity == nil {
		// Spread the workers over nodes so that losing one node doesn't stop the
		// whole consumer group; soft, so a one-node cluster still schedules them.
		pod.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       corev1.LabelHostname,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: SelectorLabels(sp)},
			MatchLabelKeys:    []string{revisionLabel},
		}}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
		Spec:       pod,
	}
}

// Deployment renders the worker Deployment (spec.consumer.membership Dynamic).
func Deployment(sp *sluicev1.StreamPipeline, p DeploymentParams) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(sp, WorkerName(sp)),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(p.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(sp)},
			// Surge instead of taking members away: a rollout never shrinks the group
			// below its size, and cooperative rebalancing moves partitions gradually.
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromString("25%")),
				},
			},
			RevisionHistoryLimit: ptr.To[int32](3),
			Template:             workerPodTemplate(sp, p, appsv1.DefaultDeploymentUniqueLabelKey),
		},
	}
}

func httpGet(p string) corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p, Port: intstr.FromString(HealthPortName)}}
}

func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// workerEnv gives the worker its identity (for the Kafka client ID, logs and
// traces) and its memory limit, and appends the team's variables.
func workerEnv(extra []sluicev1.EnvVar) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: workerconfig.PodNameEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: workerconfig.PodNamespaceEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: workerconfig.MemoryLimitEnv, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: ContainerName, Resource: "limits.memory",
		}}},
	}
	for _, e := range extra {
		if e.Name == workerconfig.PodNameEnv || e.Name == workerconfig.PodNamespaceEnv || e.Name == workerconfig.MemoryLimitEnv {
			continue
		}
		env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value, ValueFrom: e.ValueFrom.DeepCopy()})
	}
	return env
}

func volumes(sp *sluicev1.StreamPipeline) []corev1.Volume {
	vols := []corev1.Volume{
		{Name: volumeConfig, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(sp)},
			DefaultMode:          ptr.To[int32](0o444),
		}}},
		// The root filesystem is read-only; the worker gets a small scratch dir.
		{Name: volumeTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: ptr.To(resource.MustParse("64Mi")),
		}}},
	}
	for _, m := range SecretMounts(sp) {
		items := make([]corev1.KeyToPath, 0, len(m.Keys))
		for _, k := range m.Keys {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
		vols = append(vols, corev1.Volume{Name: m.Volume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  m.SecretName,
			Items:       items,
			DefaultMode: ptr.To[int32](0o440),
		}}})
	}
	return vols
}

func volumeMounts(sp *sluicev1.StreamPipeline) []corev1.VolumeMount {
	mounts := []corev1.VolumeMount{
		{Name: volumeConfig, MountPath: ConfigDir, ReadOnly: true},
		{Name: volumeTmp, MountPath: "/tmp"},
	}
	for _, m := range SecretMounts(sp) {
		mounts = append(mounts, corev1.VolumeMount{Name: m.Volume, MountPath: path.Join(SecretsDir, m.Volume), ReadOnly: true})
	}
	return mounts
}
