{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "bundlegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already contains it. */}}
{{- define "bundlegate.fullname" -}}
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

{{- define "bundlegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bundlegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bundlegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bundlegate.labels" -}}
helm.sh/chart: {{ include "bundlegate.chart" . }}
{{ include "bundlegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bundlegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bundlegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the keys file: an existing one, or the chart's. */}}
{{- define "bundlegate.keysSecretName" -}}
{{- default (printf "%s-keys" (include "bundlegate.fullname" .)) .Values.keys.existingSecret }}
{{- end }}

{{- define "bundlegate.bundlesClaimName" -}}
{{- default (printf "%s-bundles" (include "bundlegate.fullname" .)) .Values.bundles.persistentVolumeClaim.existingClaim }}
{{- end }}

{{/* repository[:tag][@digest] for an image block; tag defaults to the given fallback. */}}
{{- define "bundlegate.imageRef" -}}
{{- $image := index . 0 }}
{{- $fallbackTag := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $fallbackTag $image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The paths the gateway serves its probes on (DESIGN.md §3). */}}
{{- define "bundlegate.livenessPath" -}}/healthz{{- end }}
{{- define "bundlegate.readinessPath" -}}/readyz{{- end }}
{{- define "bundlegate.metricsPath" -}}/metrics{{- end }}

{{/* Fail the render when the shutdown sequence cannot finish inside the grace period. */}}
{{- define "bundlegate.checkGracePeriod" -}}
{{- $needed := add .Values.lifecycle.preStopSleepSeconds .Values.gateway.drainDelaySeconds .Values.gateway.drainTimeoutSeconds }}
{{- if ge (int $needed) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "lifecycle.preStopSleepSeconds (%v) + gateway.drainDelaySeconds (%v) + gateway.drainTimeoutSeconds (%v) must be less than terminationGracePeriodSeconds (%v), or the kubelet kills the gateway mid-drain" .Values.lifecycle.preStopSleepSeconds .Values.gateway.drainDelaySeconds .Values.gateway.drainTimeoutSeconds .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- end }}
