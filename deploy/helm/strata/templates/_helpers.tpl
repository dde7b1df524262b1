{{/* Chart name, overridable. */}}
{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: "strata" for a release named strata, else "<release>-strata". */}}
{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "strata.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* deploy/rbac/*.yaml name their objects "strata-…"; in the chart they are "<fullname>-…". */}}
{{- define "strata.rename" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- printf "%s%s" (include "strata.fullname" $root) (trimPrefix "strata" $name) -}}
{{- end -}}

{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "strata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strata
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "strata.selectorLabels" (list . "operator") */}}
{{- define "strata.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "strata.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "strata.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The project namespace prefix, one value for the API and the operator
(api.namespacePrefix was the API's alone: refused, naming its successor). */}}
{{- define "strata.namespacePrefix" -}}
{{- if hasKey .Values.api "namespacePrefix" -}}
{{- fail "api.namespacePrefix is now namespacePrefix (top level): the API and the operator take the same value" -}}
{{- end -}}
{{- .Values.namespacePrefix -}}
{{- end -}}
