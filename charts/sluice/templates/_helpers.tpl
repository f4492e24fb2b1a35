{{/* The chart's name, for app.kubernetes.io/name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name. A release named like the chart ("sluice")
gives "sluice", so the objects get kustomize's names (config/default's
namePrefix "sluice-").
*/}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object (config/default adds part-of too). */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{/*
The operator pods' labels, which the Deployment, the metrics Service and the
ServiceMonitor select: those of config/manager. They leave the release out, as
kustomize does; one operator per namespace is all there can be (one leader
election lease, one CRD).
*/}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "sluice.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to run as, when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "sluice.imageTag" .) }}
{{- end }}

{{/* The workers' default image: the operator's own unless workerImage is set. */}}
{{- define "sluice.workerImage" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.workerImage.repository) (default (include "sluice.imageTag" .) .Values.workerImage.tag) }}
{{- end }}

{{/* "true" when the manager elects a leader: asked for, or needed by more than one replica. */}}
{{- define "sluice.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
The manager's flags that named values set, flag → value; empty values are left
out, so the manager keeps its own default.
*/}}
{{- define "sluice.namedFlags" -}}
{{- $m := .Values.manager }}
{{- $flags := dict
  "zap-log-level" $m.logLevel
  "kafka-timeout" $m.kafkaTimeout
  "status-sync-period" $m.statusSyncPeriod
  "resync-interval" $m.resyncInterval
  "stalled-retry-interval" $m.stalledRetryInterval
  "topic-deletion-timeout" $m.topicDeletionTimeout
  "max-concurrent-reconciles" $m.maxConcurrentReconciles }}
{{- $set := dict }}
{{- range $flag, $v := $flags }}
{{- if not (kindIs "invalid" $v) }}{{- if ne (toString $v) "" }}
{{- $_ := set $set $flag (toString $v) }}
{{- end }}{{- end }}
{{- end }}
{{- toJson $set }}
{{- end }}

{{/*
Where metrics.certSecret is mounted (--metrics-cert-path); its tls.crt and
tls.key are the manager's default file names. Refused without metrics.secure,
which alone serves HTTPS.
*/}}
{{- define "sluice.metricsCertPath" -}}
{{- if not .Values.metrics.secure }}
{{- fail "metrics.certSecret: the certificate is for HTTPS, which metrics.secure=false turns off" }}
{{- end -}}
/tmp/k8s-metrics-server/metrics-certs
{{- end }}

{{/* The manager container's args, as a YAML list. */}}
{{- define "sluice.args" -}}
{{- $reserved := dict
  "leader-elect" "leaderElection.enabled"
  "watch-namespaces" "watchNamespaces"
  "metrics-bind-address" "metrics.port"
  "metrics-secure" "metrics.secure"
  "metrics-cert-path" "metrics.certSecret"
  "health-probe-bind-address" "healthProbe.port"
  "worker-image" "workerImage"
  "zap-log-level" "manager.logLevel"
  "kafka-timeout" "manager.kafkaTimeout"
  "status-sync-period" "manager.statusSyncPeriod"
  "resync-interval" "manager.resyncInterval"
  "stalled-retry-interval" "manager.stalledRetryInterval"
  "topic-deletion-timeout" "manager.topicDeletionTimeout"
  "max-concurrent-reconciles" "manager.maxConcurrentReconciles" }}
{{- range $flag, $_ := .Values.manager.extraArgs }}
{{- with get $reserved (trimPrefix "-" (trimPrefix "-" $flag)) }}
{{- fail (printf "manager.extraArgs.%s: set it with %s instead" $flag .) }}
{{- end }}
{{- end }}
{{- if include "sluice.leaderElect" . }}
- --leader-elect
{{- end }}
- --metrics-bind-address=:{{ .Values.metrics.port }}
{{- if not .Values.metrics.secure }}
- --metrics-secure=false
{{- end }}
{{- if .Values.metrics.certSecret }}
- --metrics-cert-path={{ include "sluice.metricsCertPath" . }}
{{- end }}
- --health-probe-bind-address=:{{ .Values.healthProbe.port }}
{{- with .Values.watchNamespaces }}
- --watch-namespaces={{ join "," . }}
{{- end }}
{{- range $flag, $v := include "sluice.namedFlags" . | fromJson }}
- --{{ $flag }}={{ $v }}
{{- end }}
{{- range $flag, $v := .Values.manager.extraArgs }}
- --{{ trimPrefix "-" (trimPrefix "-" $flag) }}={{ $v }}
{{- end }}
{{- end }}

{{/*
The rules of the role named .name (its name in config/rbac, before the prefix)
in the file .file of files/rbac, which hack/sync-chart.sh copies from
config/rbac (make manifests); as YAML. Call with
(dict "root" $ "file" "role.yaml" "name" "manager-role").
*/}}
{{- define "sluice.rulesOf" -}}
{{- $rules := list }}
{{- $found := false }}
{{- range regexSplit "(?m)^---\\s*$" (.root.Files.Get (printf "files/rbac/%s" .file)) -1 }}
{{- $doc := fromYaml . }}
{{- if and (has (toString $doc.kind) (list "Role" "ClusterRole")) (eq (toString (dig "metadata" "name" "" $doc)) $.name) }}
{{- $rules = $doc.rules }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "files/rbac/%s holds no role %s: run hack/sync-chart.sh (make manifests), or follow config/rbac in the chart's templates" .file .name) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
