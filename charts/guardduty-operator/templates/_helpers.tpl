{{/* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "guardduty-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 63 characters: fullnameOverride, else the
release name, followed by the chart's name unless the release name holds it. */}}
{{- define "guardduty-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The metrics Service: a DNS label (63 characters at most), also the job label
Prometheus gives the scraped series. */}}
{{- define "guardduty-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "guardduty-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* The Lease the replicas elect a leader with: one per release, so two releases
over disjoint namespaces each have their own leader. */}}
{{- define "guardduty-operator.leaseName" -}}
{{- printf "%s-leader" (include "guardduty-operator.fullname" .) -}}
{{- end -}}

{{- define "guardduty-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "guardduty-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "guardduty-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardduty-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardduty-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "guardduty-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces whose policies the controller honours, one per line:
policyNamespaces, or the release namespace when it is empty. "*" alone means
every namespace. */}}
{{- define "guardduty-operator.policyNamespaces" -}}
{{- $namespaces := .Values.policyNamespaces | default (list .Release.Namespace) -}}
{{- if and (has "*" $namespaces) (gt (len $namespaces) 1) -}}
{{- fail "policyNamespaces: \"*\" (every namespace) must be the only entry" -}}
{{- end -}}
{{- join "\n" (uniq $namespaces) -}}
{{- end -}}

{{/* True (non-empty) when the controller honours policies in every namespace. */}}
{{- define "guardduty-operator.allNamespaces" -}}
{{- if has "*" (.Values.policyNamespaces | default list) -}}true{{- end -}}
{{- end -}}

{{/* Both monitoring.coreos.com kinds need the Prometheus Operator's API. */}}
{{- define "guardduty-operator.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* The PromQL selector of this release's series (see prometheusRule.selector). */}}
{{- define "guardduty-operator.metricSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "namespace=%q, job=%q" .Release.Namespace (include "guardduty-operator.metricsServiceName" .)) -}}
{{- end -}}

{{/* A map as YAML, without its null entries: `key: null` in values unsets a key,
whether or not the chart's defaults have it (securityContext.runAsUser: null). */}}
{{- define "guardduty-operator.withoutNulls" -}}
{{- $out := dict -}}
{{- range $key, $value := . -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}
