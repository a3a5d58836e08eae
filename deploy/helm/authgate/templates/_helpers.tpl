{{/* The chart's name, for labels. */}}
{{- define "authgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' base name: <release>-authgate, or <release> when it already says authgate. */}}
{{- define "authgate.fullname" -}}
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

{{- define "authgate.redisName" -}}
{{- printf "%s-redis" (include "authgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "authgate.secretName" -}}
{{- default (include "authgate.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "authgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "authgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: authgate
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The gateway pods' selector (distinct from Redis's by component). */}}
{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "authgate.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* The in-cluster URL of the forward-auth endpoint. */}}
{{- define "authgate.authURL" -}}
{{- $prefix := trimSuffix "/" (default "/oauth2" (get .Values.config "prefix")) -}}
{{- printf "http://%s.%s.svc.cluster.local:%d%s/auth" (include "authgate.fullname" .) .Release.Namespace (int .Values.service.port) $prefix }}
{{- end }}

{{/* Whether the upstream client authenticates with the client secret. */}}
{{- define "authgate.usesClientSecret" -}}
{{- $up := default (dict) (get .Values.config "upstream") -}}
{{- if not (has (default "" (get $up "client_auth")) (list "private_key_jwt" "tls_client_auth" "none")) }}true{{ end -}}
{{- end }}

{{/*
The config file: .Values.config with what the chart owns added (see
values.yaml), or rawConfig as it is.
*/}}
{{- define "authgate.config" -}}
{{- if .Values.rawConfig }}
{{- .Values.rawConfig }}
{{- else }}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf ":%d" (int .Values.containerPort)) }}
{{- $up := deepCopy (default (dict) (get $cfg "upstream")) }}
{{- if hasKey $up "client_secret" }}
{{- fail "config.upstream.client_secret: keep it out of the ConfigMap; set secret.clientSecret or existingSecret" }}
{{- end }}
{{- if include "authgate.usesClientSecret" . }}
{{- $_ := set $up "client_secret" "${AUTHGATE_CLIENT_SECRET}" }}
{{- if not (hasKey $up "client_auth") }}
{{- $_ := set $up "client_auth" "client_secret_basic" }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "upstream" $up }}
{{- $session := deepCopy (default (dict) (get $cfg "session")) }}
{{- $cookie := deepCopy (default (dict) (get $session "cookie")) }}
{{- if or (hasKey $cookie "secret") (hasKey $cookie "previous_secrets") }}
{{- fail "config.session.cookie.secret: keep it out of the ConfigMap; set secret.cookieSecret or existingSecret" }}
{{- end }}
{{- $_ := set $cookie "secret" "${AUTHGATE_COOKIE_SECRET}" }}
{{- $_ := set $session "cookie" $cookie }}
{{- $redis := deepCopy (default (dict) (get $session "redis")) }}
{{- if and .Values.redis.enabled (not (hasKey $redis "url")) }}
{{- $_ := set $session "store" "redis" }}
{{- $_ := set $redis "url" (printf "redis://:${REDIS_PASSWORD}@%s.%s.svc.cluster.local:6379/0" (include "authgate.redisName" .) .Release.Namespace) }}
{{- $_ := set $session "redis" $redis }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (ne (get $session "store") "redis") }}
{{- fail "replicaCount > 1 needs sessions shared by the replicas: set redis.enabled=true, or session.store: redis with session.redis.url in config" }}
{{- end }}
{{- $_ := set $cfg "session" $session }}
{{- toYaml $cfg }}
{{- end }}
{{- end }}
