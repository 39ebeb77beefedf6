{{/* The chart name, or nameOverride. */}}
{{- define "kafka-healing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: fullnameOverride, or the release name (plus the chart name unless it contains it). */}}
{{- define "kafka-healing.fullname" -}}
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

{{/* Labels that select the pods; they never change across upgrades. */}}
{{- define "kafka-healing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-healing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kafka-healing.labels" -}}
{{ include "kafka-healing.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "kafka-healing.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kafka-healing.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kafka-healing.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "kafka-healing.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}

{{/* Refuses values that would deploy something unsafe or broken. */}}
{{- define "kafka-healing.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.coordination.enabled) }}
{{- fail (printf "replicas is %d but coordination.enabled is false: without etcd coordination every replica would remediate the same alert. Set coordination.enabled=true with coordination.endpoints, or replicas=1." (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.coordination.enabled (empty .Values.coordination.endpoints) }}
{{- fail "coordination.enabled is true but coordination.endpoints is empty: name at least one etcd client URL (http://etcd:2379)." }}
{{- end }}
{{- if not (has .Values.rbac.scope (list "namespace" "cluster")) }}
{{- fail (printf "rbac.scope is %q: use \"namespace\" or \"cluster\"." .Values.rbac.scope) }}
{{- end }}
{{- if and (not .Values.rules.existingConfigMap) (empty .Values.rules.files) (empty .Values.rules.extraPaths) }}
{{- fail "no rules: set rules.files, rules.existingConfigMap or rules.extraPaths." }}
{{- end }}
{{- range $name, $_ := .Values.rules.files }}
{{- if not (hasSuffix ".yaml" $name) }}
{{- fail (printf "rules.files: %q must end in .yaml (the config loads /etc/kafka-healing/rules/*.yaml)" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* config.yaml: the free-form `config` under the keys the chart manages. */}}
{{- define "kafka-healing.config" -}}
{{- $c := deepCopy (default (dict) .Values.config) }}
{{- $_ := set $c "cluster" (dict "name" .Values.cluster.name "kafka_brokers" .Values.brokers) }}
{{- $server := merge (dict "listen" (printf "0.0.0.0:%d" (int .Values.port))) (default (dict) (get $c "server")) }}
{{- if .Values.webhookAuth.existingSecret }}
{{- $_ := set $server "auth" (dict "bearer_token" "${KAFKA_HEALING_WEBHOOK_TOKEN}") }}
{{- end }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.port)) }}
{{- $_ := set $c "server" $server }}
{{- if .Values.smtp.enabled }}
{{- $s := .Values.smtp }}
{{- $smtp := dict "host" $s.host "port" (int $s.port) "tls" $s.tls "from_email" $s.fromEmail "to_emails" $s.toEmails }}
{{- if $s.auth.existingSecret }}
{{- $_ := set $smtp "username" "${SMTP_USERNAME}" }}
{{- $_ := set $smtp "password" "${SMTP_PASSWORD}" }}
{{- end }}
{{- $n := default (dict) (get $c "notifications") }}
{{- $_ := set $n "smtp" $smtp }}
{{- $_ := set $c "notifications" $n }}
{{- end }}
{{- $rules := list }}
{{- if or .Values.rules.existingConfigMap .Values.rules.files }}
{{- $rules = append $rules "../rules/*.yaml" }}
{{- end }}
{{- $_ := set $c "rules" (concat $rules .Values.rules.extraPaths) }}
{{- $_ := set $c "state" (dict "path" "/var/lib/kafka-healing/journal.db") }}
{{- $_ := set $c "kubernetes" (dict "in_cluster" true) }}
{{- if .Values.coordination.enabled }}
{{- $co := .Values.coordination }}
{{- $coord := dict "backend" "etcd" "endpoints" $co.endpoints "lease_ttl_seconds" (int $co.leaseTtlSeconds) "key_prefix" $co.keyPrefix }}
{{- if $co.auth.existingSecret }}
{{- $_ := set $coord "username" "${ETCD_USERNAME}" }}
{{- $_ := set $coord "password" "${ETCD_PASSWORD}" }}
{{- end }}
{{- $_ := set $c "coordination" $coord }}
{{- end }}
{{- toYaml $c }}
{{- end }}
