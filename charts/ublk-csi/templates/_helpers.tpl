{{/* Names are truncated to 63 characters (DNS labels). */}}
{{- define "ublk-csi.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ublk-csi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ublk-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ublk-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ublk-csi
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "node") */}}
{{- define "ublk-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ublk-csi.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Driver name of node-local (file) volumes. */}}
{{- define "ublk-csi.localDriverName" -}}
{{- default (printf "local.%s" .Values.driverName) .Values.nodeLocal.driverName -}}
{{- end -}}

{{- define "ublk-csi.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.registry .name (default .ctx.Chart.AppVersion .ctx.Values.image.tag) -}}
{{- end -}}

{{/* Host directory of the node plugin's sockets. */}}
{{- define "ublk-csi.socketDir" -}}
{{- printf "%s/plugins/%s" .Values.kubeletDir .Values.driverName -}}
{{- end -}}

{{- define "ublk-csi.blockstoreName" -}}
{{- printf "%s-blockstore" (include "ublk-csi.fullname" .) -}}
{{- end -}}

{{- define "ublk-csi.blockstoreTokenSecret" -}}
{{- default (printf "%s-token" (include "ublk-csi.blockstoreName" .)) .Values.blockstoreServer.token.existingSecret -}}
{{- end -}}

{{/* Environment shared by the ublk-csi hosts. */}}
{{- define "ublk-csi.commonEnv" -}}
- name: LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
{{- end -}}

{{/* Sidecar args common to the controller-side sidecars: (dict "ctx" $ "sidecar" .Values.sidecars.x "address" "/csi/csi.sock") */}}
{{- define "ublk-csi.sidecarArgs" -}}
- --csi-address={{ .address }}
- --v={{ .ctx.Values.sidecars.verbosity }}
- --timeout={{ .ctx.Values.sidecars.timeout }}
{{- range .sidecar.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "ublk-csi.leaderElectionArgs" -}}
- --leader-election
- --leader-election-namespace={{ .Release.Namespace }}
- --leader-election-lease-duration={{ .Values.controller.leaderElection.leaseDuration }}
- --leader-election-renew-deadline={{ .Values.controller.leaderElection.renewDeadline }}
- --leader-election-retry-period={{ .Values.controller.leaderElection.retryPeriod }}
{{- end -}}

{{- define "ublk-csi.resources" -}}
{{- with . }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Secret of the rpc StorageClass: its own, or the chart's block-store server token. */}}
{{- define "ublk-csi.rpcSecret" -}}
{{- $s := .Values.storageClasses.rpc.secret.name -}}
{{- if and (not $s) .Values.blockstoreServer.enabled -}}
{{- $s = include "ublk-csi.blockstoreTokenSecret" . -}}
{{- end -}}
{{- $s -}}
{{- end -}}
