{{- define "ttip.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ttip.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects, e.g. ttip-wallet. */}}
{{- define "ttip.componentName" -}}
{{- printf "%s-%s" (include "ttip.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ttip.labels" -}}
app.kubernetes.io/name: {{ include "ttip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "ttip.versionLabels" . }}
{{- end -}}

{{/* Labels that may change between releases: never in a selector. */}}
{{- define "ttip.versionLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ttip
{{- end -}}

{{/* Selector labels of one component: stable across upgrades. */}}
{{- define "ttip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ttip.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* A component's settings: `defaults` overlaid with its own block. */}}
{{- define "ttip.componentValues" -}}
{{- $own := index .root.Values.components .name | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $own)) -}}
{{- end -}}

{{- define "ttip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ttip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ttip.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The services (everything but the gateway), in a stable order. */}}
{{- define "ttip.services" -}}
{{- $names := list -}}
{{- range $name, $_ := .Values.components -}}
{{- if ne $name "gateway" -}}{{- $names = append $names $name -}}{{- end -}}
{{- end -}}
{{- toYaml (sortAlpha $names) -}}
{{- end -}}
