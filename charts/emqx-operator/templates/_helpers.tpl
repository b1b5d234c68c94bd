{{/* Names. Every resource is named from the release so that two releases
in different namespaces never collide on cluster-scoped objects. */}}
{{- define "emqx-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "emqx-operator.fullname" -}}
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

{{- define "emqx-operator.webhook.name" -}}
{{- printf "%s-webhook" (include "emqx-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "emqx-operator.reconciler.name" -}}
{{- printf "%s-reconciler" (include "emqx-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "emqx-operator.webhook.secretName" -}}
{{- default (printf "%s-tls" (include "emqx-operator.webhook.name" .)) .Values.webhook.certificates.secretName }}
{{- end }}

{{- define "emqx-operator.validatingName" -}}
{{- printf "%s-validating" (include "emqx-operator.fullname" .) }}
{{- end }}

{{- define "emqx-operator.mutatingName" -}}
{{- printf "%s-mutating" (include "emqx-operator.fullname" .) }}
{{- end }}

{{- define "emqx-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "emqx-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component (webhook or reconciler). */}}
{{- define "emqx-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emqx-operator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* `<repository>@<digest>` when a digest is given (immutable: what was
reviewed is what runs, whatever the pull policy), else `<repository>:<tag>`. */}}
{{- define "emqx-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Annotations that get caBundle into webhook configurations and CRDs in
cert-manager mode (cert-manager's CA injector does it). */}}
{{- define "emqx-operator.caInjection" -}}
{{- if eq .Values.webhook.certificates.mode "cert-manager" }}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "emqx-operator.webhook.name" .) }}
{{- end }}
{{- end }}

{{/* The webhook Service reference, shared by the admission configurations
and the CRDs' conversion stanza. */}}
{{- define "emqx-operator.webhook.clientConfig" -}}
service:
  name: {{ include "emqx-operator.webhook.name" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- if and (eq .root.Values.webhook.certificates.mode "provided") .root.Values.webhook.certificates.caBundle }}
caBundle: {{ .root.Values.webhook.certificates.caBundle }}
{{- end }}
{{- end }}

{{- /* The namespaces the reconciler watches, as a JSON list (empty: all):
reconciler.watchNamespaces plus the single reconciler.watchNamespace. */}}
{{- define "emqx-operator.reconciler.watchNamespaces" -}}
{{- $list := list }}
{{- range .Values.reconciler.watchNamespaces }}{{ $list = append $list . }}{{ end }}
{{- with .Values.reconciler.watchNamespace }}{{ $list = append $list . }}{{ end }}
{{- $list | uniq | toJson }}
{{- end }}
