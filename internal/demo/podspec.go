package demo

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// This file turns a pod template into what a local process needs: the files of
// its volumes, its command line and its environment. A kubelet would mount the
// volumes into a container at their mount paths; the pod runner has no
// containers, so each volume is a folder in the pod's state dir and every path
// the process is given (its arguments, the paths inside the worker config it
// is pointed at) is mapped from the mount path to that folder. The operator's
// rendering is left as it is: the runner rewrites only the copy it writes for
// the process.

// objectSource reads the objects a pod refers to (the API server, in the demo).
type objectSource interface {
	ConfigMap(name string) (*corev1.ConfigMap, error)
	Secret(name string) (*corev1.Secret, error)
}

// podIdentity is what the Downward API can tell a pod about itself.
type podIdentity struct {
	Name, Namespace, UID string
	Labels, Annotations  map[string]string
	ServiceAccount       string
	NodeName             string
	IP                   string
	// NodeMemory stands for the node's allocatable memory, which the Downward
	// API reports for a container without a memory limit.
	NodeMemory int64
}

// launch is everything needed to start one pod's container as a process.
type launch struct {
	// Files to write, by path relative to the pod dir.
	Files []podFile
	// Dirs to create (empty dirs), relative to the pod dir.
	Dirs []string
	// Argv is the command line, with the image's binary and every mounted path
	// mapped to the host.
	Argv []string
	// Env is the container's environment, resolved.
	Env []string
	// Ports maps each container port to the loopback port the process gets.
	Ports map[int32]int32
	// PortNames are the container's named ports (probes refer to them).
	PortNames []namedPort
	// Grace is the pod's termination grace period.
	Grace time.Duration
	// Readiness is the container's readiness probe (nil: ready once started).
	Readiness *corev1.Probe
	// Mounts lists "mountPath → host dir" for the record.
	Mounts []mount
}

type namedPort struct {
	Name string
	Port int32
}

type podFile struct {
	Path string
	Data []byte
	Mode uint32
}

type mount struct {
	MountPath string // in the container
	HostDir   string // on this machine
}

// imagePath is the PATH of the worker image (distroless).
const imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// imageFS maps paths of the image to files on this machine: the worker image
// holds one binary, /worker, which the demo builds from cmd/worker.
type imageFS map[string]string

// materialize prepares a pod of template spec (one container) whose folder is
// podDir: every path in the result is absolute, under podDir. hostPort gives a
// free loopback port for each container port. The worker config named by the
// --config argument is rewritten for the process.
func materialize(spec corev1.PodSpec, id podIdentity, objs objectSource, image imageFS, podDir string, hostPort func() (int32, error)) (*launch, error) {
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("the pod runner runs pods of one container; this one has %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	l := &launch{Ports: map[int32]int32{}, Readiness: c.ReadinessProbe, Grace: 30 * time.Second}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		l.Grace = time.Duration(*g) * time.Second
	}
	for _, p := range c.Ports {
		hp, err := hostPort()
		if err != nil {
			return nil, err
		}
		l.Ports[p.ContainerPort] = hp
		if p.Name != "" {
			l.PortNames = append(l.PortNames, namedPort{p.Name, p.ContainerPort})
		}
	}

	// Volumes become folders; mounts map container paths to them.
	volumeDirs := map[string]string{}
	for _, v := range spec.Volumes {
		dir := filepath.Join(podDir, "volumes", v.Name)
		volumeDirs[v.Name] = dir
		files, err := volumeFiles(v, objs)
		if err != nil {
			return nil, err
		}
		if files == nil {
			l.Dirs = append(l.Dirs, dir)
		}
		for _, f := range files {
			f.Path = filepath.Join(dir, filepath.FromSlash(f.Path))
			l.Files = append(l.Files, f)
		}
	}
	for _, m := range c.VolumeMounts {
		dir, ok := volumeDirs[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: no volume %q", m.MountPath, m.Name)
		}
		l.Mounts = append(l.Mounts, mount{MountPath: m.MountPath, HostDir: filepath.Join(dir, m.SubPath)})
	}

	if len(c.Command) == 0 {
		return nil, errors.New("the container has no command; the pod runner can't read an image's entrypoint")
	}
	bin, ok := image[c.Command[0]]
	if !ok {
		return nil, fmt.Errorf("command %s is not in the worker image (it holds %v)", c.Command[0], keys(image))
	}
	l.Argv = append([]string{bin}, c.Command[1:]...)
	for _, a := range c.Args {
		l.Argv = append(l.Argv, mapArg(a, l.Mounts))
	}

	// The worker config named by --config is rewritten in place: mounted paths
	// inside it are mapped, and its server port becomes the process's own.
	if cfgPath, ok := flagValue(c.Args, "--config"); ok {
		file, ok := hostPath(cfgPath, l.Mounts)
		if !ok {
			return nil, fmt.Errorf("--config=%s is not on a mounted volume", cfgPath)
		}
		i := slices.IndexFunc(l.Files, func(f podFile) bool { return f.Path == file })
		if i < 0 {
			return nil, fmt.Errorf("--config=%s: the volume has no such file", cfgPath)
		}
		data, err := rewriteWorkerConfig(l.Files[i].Data, func(p string) (string, bool) { return hostPath(p, l.Mounts) }, l.Ports)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
		l.Files[i].Data = data
	}

	env, err := resolveEnv(c, id, objs)
	if err != nil {
		return nil, err
	}
	// The image's own environment comes first, as a container runtime's would;
	// an emptyDir mounted at /tmp is the process's temp dir.
	l.Env = append([]string{"PATH=" + imagePath}, env...)
	if tmp, ok := hostPath("/tmp", l.Mounts); ok {
		l.Env = append(l.Env, "TMPDIR="+tmp)
	}
	return l, nil
}

// volumeFiles lists the files of a volume (nil for an empty dir).
func volumeFiles(v corev1.Volume, objs objectSource) ([]podFile, error) {
	switch {
	case v.ConfigMap != nil:
		cm, err := objs.ConfigMap(v.ConfigMap.Name)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		data := map[string][]byte{}
		for k, s := range cm.Data {
			data[k] = []byte(s)
		}
		for k, b := range cm.BinaryData {
			data[k] = b
		}
		return projected(v.Name, data, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		s, err := objs.Secret(v.Secret.SecretName)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		return projected(v.Name, s.Data, v.Secret.Items, v.Secret.DefaultMode)
	case v.EmptyDir != nil:
		return nil, nil
	}
	return nil, fmt.Errorf("volume %s: the pod runner supports configMap, secret and emptyDir volumes only", v.Name)
}

// projected lays out a ConfigMap's or Secret's keys as files: all keys, or
// only the listed items at their paths.
func projected(volume string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) ([]podFile, error) {
	mode := uint32(0o644)
	if defaultMode != nil {
		mode = uint32(*defaultMode)
	}
	var files []podFile
	if len(items) == 0 {
		for _, k := range keys(data) {
			files = append(files, podFile{Path: k, Data: data[k], Mode: mode})
		}
		return files, nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("volume %s: no key %q", volume, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = uint32(*it.Mode)
		}
		files = append(files, podFile{Path: it.Path, Data: b, Mode: m})
	}
	return files, nil
}

// hostPath maps an absolute container path to the host through the mount with
// the longest matching mount path.
func hostPath(p string, mounts []mount) (string, bool) {
	best := -1
	for i, m := range mounts {
		if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best < 0 || len(m.MountPath) > len(mounts[best].MountPath) {
				best = i
			}
		}
	}
	if best < 0 {
		return "", false
	}
	m := mounts[best]
	return filepath.Join(m.HostDir, filepath.FromSlash(strings.TrimPrefix(p, m.MountPath))), true
}

// mapArg maps a mounted path given as an argument ("/etc/x" or "--flag=/etc/x").
func mapArg(a string, mounts []mount) string {
	prefix, value := "", a
	if i := strings.Index(a, "=/"); i >= 0 && strings.HasPrefix(a, "-") {
		prefix, value = a[:i+1], a[i+1:]
	}
	if p, ok := hostPath(value, mounts); ok {
		return prefix + p
	}
	return a
}

// flagValue finds --name=value or "--name value" in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// rewriteWorkerConfig maps every absolute path inside a worker config that
// lies on a mounted volume, and gives server.port the host port of the
// container port it names. The result is checked the way the worker will
// read it.
func rewriteWorkerConfig(data []byte, mapPath func(string) (string, bool), ports map[int32]int32) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse worker config: %w", err)
	}
	walkStrings(doc, func(s string) string {
		if !strings.HasPrefix(s, "/") {
			return s
		}
		if p, ok := mapPath(s); ok {
			return p
		}
		return s
	})
	if server, ok := doc["server"].(map[string]any); ok {
		if p, ok := server["port"].(float64); ok {
			hp, ok := ports[int32(p)]
			if !ok {
				return nil, fmt.Errorf("server.port %v is not a container port of the pod", p)
			}
			server["port"] = hp
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if _, err := workerconfig.Parse(out); err != nil {
		return nil, fmt.Errorf("rewritten config: %w", err)
	}
	return out, nil
}

// walkStrings replaces every string in a decoded YAML tree with f(string).
func walkStrings(v any, f func(string) string) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok {
				t[k] = f(s)
			} else {
				walkStrings(e, f)
			}
		}
	case []any:
		for i, e := range t {
			if s, ok := e.(string); ok {
				t[i] = f(s)
			} else {
				walkStrings(e, f)
			}
		}
	}
}

// resolveEnv computes a container's environment as the kubelet would: plain
// values, the Downward API (fieldRef, resourceFieldRef) and keys of
// ConfigMaps and Secrets; envFrom first, env after (env wins). $(VAR)
// references are not expanded.
func resolveEnv(c corev1.Container, id podIdentity, objs objectSource) ([]string, error) {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, from := range c.EnvFrom {
		data := map[string]string{}
		switch {
		case from.ConfigMapRef != nil:
			cm, err := objs.ConfigMap(from.ConfigMapRef.Name)
			if err != nil {
				if optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := objs.Secret(from.SecretRef.Name)
			if err != nil {
				if optional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			for k, b := range s.Data {
				data[k] = string(b)
			}
		}
		for _, k := range keys(data) {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		v, skip, err := envValue(e, c, id, objs)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if !skip {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

func envValue(e corev1.EnvVar, c corev1.Container, id podIdentity, objs objectSource) (value string, skip bool, err error) {
	src := e.ValueFrom
	switch {
	case src == nil:
		return e.Value, false, nil
	case src.FieldRef != nil:
		v, err := fieldValue(src.FieldRef.FieldPath, id)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := resourceValue(*src.ResourceFieldRef, c, id)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := objs.ConfigMap(r.Name)
		if err == nil {
			if v, ok := cm.Data[r.Key]; ok {
				return v, false, nil
			}
			err = fmt.Errorf("ConfigMap %s has no key %q", r.Name, r.Key)
		}
		return "", optional(r.Optional), ifRequired(err, r.Optional)
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := objs.Secret(r.Name)
		if err == nil {
			if v, ok := s.Data[r.Key]; ok {
				return string(v), false, nil
			}
			err = fmt.Errorf("Secret %s has no key %q", r.Name, r.Key)
		}
		return "", optional(r.Optional), ifRequired(err, r.Optional)
	}
	return "", false, errors.New("unsupported valueFrom")
}

func optional(p *bool) bool { return p != nil && *p }

func ifRequired(err error, opt *bool) error {
	if optional(opt) {
		return nil
	}
	return err
}

// fieldValue answers a Downward API fieldRef.
func fieldValue(fieldPath string, id podIdentity) (string, error) {
	switch fieldPath {
	case "metadata.name":
		return id.Name, nil
	case "metadata.namespace":
		return id.Namespace, nil
	case "metadata.uid":
		return id.UID, nil
	case "spec.nodeName":
		return id.NodeName, nil
	case "spec.serviceAccountName":
		return id.ServiceAccount, nil
	case "status.podIP", "status.hostIP":
		return id.IP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": id.Labels, "metadata.annotations": id.Annotations} {
		if k, ok := strings.CutPrefix(fieldPath, prefix+"['"); ok {
			return m[strings.TrimSuffix(k, "']")], nil
		}
	}
	return "", fmt.Errorf("fieldRef %s is not supported by the pod runner", fieldPath)
}

// resourceValue answers a Downward API resourceFieldRef: the container's
// limit or request divided by the divisor, rounded up; a limit that is not
// set reads as the node's capacity.
func resourceValue(r corev1.ResourceFieldSelector, c corev1.Container, id podIdentity) (string, error) {
	kind, res, ok := strings.Cut(r.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported", r.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(res)]
	if !ok {
		switch {
		case kind == "requests":
			q = resource.MustParse("0")
		case res == "memory":
			q = *resource.NewQuantity(id.NodeMemory, resource.BinarySI)
		default:
			return "", fmt.Errorf("resourceFieldRef %s: no limit set and the pod runner knows only the node's memory", r.Resource)
		}
	}
	divisor := resource.MustParse("1")
	if !r.Divisor.IsZero() {
		divisor = r.Divisor
	}
	if res == "cpu" {
		return strconv.FormatInt((q.MilliValue()+divisor.MilliValue()-1)/divisor.MilliValue(), 10), nil
	}
	return strconv.FormatInt((q.Value()+divisor.Value()-1)/divisor.Value(), 10), nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
