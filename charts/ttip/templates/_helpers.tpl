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

{{/* One ServiceAccount per component (ctx: root, name). */}}
{{- define "ttip.serviceAccountName" -}}
{{- if .root.Values.serviceAccount.create -}}
{{- include "ttip.componentName" . -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/* registry/repository@digest, or :tag (the chart's appVersion by default). */}}
{{- define "ttip.image" -}}
{{- $repo := .Values.image.repository -}}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The web app's settings: `defaults` overlaid with its own block (less enabled and image). */}}
{{- define "ttip.webValues" -}}
{{- $own := omit .Values.web "enabled" "image" -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.defaults) (deepCopy $own)) -}}
{{- end -}}

{{/* The web app's image: its own repository, the platform image's registry, tag and pull settings by default. */}}
{{- define "ttip.webImage" -}}
{{- $w := .Values.web.image -}}
{{- $repo := $w.repository -}}
{{- with (default .Values.image.registry $w.registry) }}{{ $repo = printf "%s/%s" . $repo }}{{ end -}}
{{- if $w.digest -}}
{{- printf "%s@%s" $repo $w.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $w.tag) -}}
{{- end -}}
{{- end -}}

{{/* In-cluster address of a component's gRPC port: its Service's port (the gateway's is gateway.service.port). */}}
{{- define "ttip.componentUrl" -}}
{{- $port := ternary .root.Values.gateway.service.port 8080 (eq .name "gateway") -}}
{{- printf "http://%s:%d" (include "ttip.componentName" .) (int $port) -}}
{{- end -}}

{{/* The Secret keys a component reads: its own, for the providers enabled. */}}
{{- define "ttip.secretKeys" -}}
{{- $v := .root.Values -}}
{{- /* Every component signs or verifies the caller's identity on the internal hop with the same key. */ -}}
{{- $keys := list "INTERNAL_SIGNING_KEY" -}}
{{- if eq .name "auth" }}{{ $keys = append $keys "AUTH_KEY_ENCRYPTION_SECRET" }}{{ end -}}
{{- if and (eq .name "auth") (eq $v.auth.otpSender "sms") (not $v.simulators.enabled) }}{{ $keys = append $keys "AUTH_SMS_API_KEY" }}{{ end -}}
{{- if eq .name "qr" }}{{ $keys = append $keys "QR_SIGNING_KEY" }}{{ end -}}
{{- if and (eq .name "payment") (or $v.mpesa.enabled $v.simulators.enabled) -}}
{{- $keys = concat $keys (list "DARAJA_CONSUMER_KEY" "DARAJA_CONSUMER_SECRET" "DARAJA_PASSKEY") -}}
{{- if $v.mpesa.b2cShortcode }}{{ $keys = append $keys "DARAJA_INITIATOR_PASSWORD" }}{{ end -}}
{{- if $v.mpesa.c2b.enabled }}{{ $keys = append $keys "C2B_URL_TOKEN" }}{{ end -}}
{{- if $v.mpesa.ussd.enabled }}{{ $keys = append $keys "USSD_CALLBACK_TOKEN" }}{{ end -}}
{{- end -}}
{{- if and (eq .name "payment") $v.cards.stripe.enabled -}}
{{- $keys = concat $keys (list "STRIPE_SECRET_KEY" "STRIPE_WEBHOOK_SECRET") -}}
{{- end -}}
{{- if and (eq .name "notification") (eq $v.notification.providers "real") -}}
{{- if $v.notification.africastalking.enabled }}{{ $keys = concat $keys (list "NOTIFICATION_AT_API_KEY" "NOTIFICATION_AT_CALLBACK_TOKEN") }}{{ end -}}
{{- if $v.notification.twilio.enabled }}{{ $keys = append $keys "NOTIFICATION_TWILIO_AUTH_TOKEN" }}{{ end -}}
{{- if $v.notification.sendgrid.enabled }}{{ $keys = append $keys "NOTIFICATION_SENDGRID_API_KEY" }}{{ end -}}
{{- if $v.notification.fcm.enabled }}{{ $keys = append $keys "NOTIFICATION_FCM_PRIVATE_KEY" }}{{ end -}}
{{- end -}}
{{- toYaml $keys -}}
{{- end -}}

{{/* PostgreSQL connections the pools may open at the HPA's maximum. */}}
{{- define "ttip.databaseConnections" -}}
{{- $root := . -}}
{{- $total := 0 -}}
{{- range $name := include "ttip.services" $root | fromYamlArray -}}
{{- $c := include "ttip.componentValues" (dict "root" $root "name" $name) | fromYaml -}}
{{- $pods := ternary $c.autoscaling.maxReplicas $c.replicaCount $c.autoscaling.enabled -}}
{{- $total = add $total (mul $pods $c.databasePoolMax) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The services (everything but the gateway), in a stable order. */}}
{{- define "ttip.services" -}}
{{- $names := list -}}
{{- range $name, $_ := .Values.components -}}
{{- if ne $name "gateway" -}}{{- $names = append $names $name -}}{{- end -}}
{{- end -}}
{{- toYaml (sortAlpha $names) -}}
{{- end -}}

{{- /*
A run of digits as written (an M-Pesa shortcode): a string kept as it is, a number (--set, values.yaml) written
whole. Not through int64 alone, which reads a leading 0 as octal: "0123456" became "42798", another paybill.
*/}}
{{- define "ttip.digits" -}}
{{- ternary (toString .) (int64 . | toString) (kindIs "string" .) -}}
{{- end }}
