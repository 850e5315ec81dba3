{{/* Name of the chart, for labels. */}}
{{- define "meshauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "meshauth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "meshauth.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "meshauth.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: meshauthd
{{- end -}}

{{- define "meshauth.labels" -}}
{{ include "meshauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "meshauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meshauth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "meshauth.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the development CA, or "" when each node makes its own. */}}
{{- define "meshauth.devCaSecret" -}}
{{- if .Values.identity.devCa.existingSecret -}}
{{- .Values.identity.devCa.existingSecret -}}
{{- else if .Values.identity.devCa.caCert -}}
{{- printf "%s-dev-ca" (include "meshauth.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the container. */}}
{{- define "meshauth.cgroupMount" -}}/host/sys/fs/cgroup{{- end -}}
{{- define "meshauth.cgroupPath" -}}
{{- $sub := trimAll "/" .Values.datapath.cgroup.subPath -}}
{{- if $sub -}}
{{- printf "%s/%s" (include "meshauth.cgroupMount" .) $sub -}}
{{- else -}}
{{- include "meshauth.cgroupMount" . -}}
{{- end -}}
{{- end -}}

{{/*
The daemon's configuration file (meshauthd --config), as YAML. The node name and, unless given,
the WireGuard address come from the pod's environment (downward API).
*/}}
{{- define "meshauth.config" -}}
{{- $v := .Values -}}
{{- $attach := list -}}
{{- if eq $v.datapath.attach "cgroup" -}}
{{- $attach = append $attach (dict "type" "cgroup" "path" (include "meshauth.cgroupPath" .) "hook" "egress") -}}
{{- $attach = append $attach (dict "type" "cgroup" "path" (include "meshauth.cgroupPath" .) "hook" "ingress") -}}
{{- else -}}
{{- $attach = append $attach (dict "type" "tc" "interface" $v.datapath.tc.interface "hook" "egress") -}}
{{- $attach = append $attach (dict "type" "tc" "interface" $v.datapath.tc.interface "hook" "ingress") -}}
{{- end -}}
{{- if $v.datapath.sockops -}}
{{- $attach = append $attach (dict "type" "sockops" "path" (include "meshauth.cgroupPath" .)) -}}
{{- end -}}
{{- $identity := dict "source" $v.identity.source -}}
{{- if eq $v.identity.source "spire-delegated" -}}
{{- $_ := set $identity "spire" (dict "adminSocket" (printf "/run/spire/admin/%s" $v.identity.spire.adminSocketName)) -}}
{{- else if eq $v.identity.source "workload-api" -}}
{{- $_ := set $identity "workloadApi" (dict "address" (printf "unix:///run/spire/agent-sockets/%s" $v.identity.workloadApi.socketName)) -}}
{{- else if eq $v.identity.source "dev-ca" -}}
{{- $devCa := dict "trustDomain" $v.trustDomain "svidTtl" $v.identity.devCa.svidTtl -}}
{{- if include "meshauth.devCaSecret" . -}}
{{- $_ := set $devCa "caCert" "/etc/meshauth/dev-ca/ca.crt" -}}
{{- $_ := set $devCa "caKey" "/etc/meshauth/dev-ca/ca.key" -}}
{{- end -}}
{{- $_ := set $identity "devCa" $devCa -}}
{{- end -}}
{{- $metricsListen := "" -}}
{{- if $v.metrics.enabled -}}
{{- $metricsListen = printf "0.0.0.0:%d" (int $v.metrics.port) -}}
{{- end -}}
{{- $config := dict
  "stateDir" "/var/lib/meshauth"
  "bpf" (dict "pinDir" "/sys/fs/bpf/meshauth")
  "datapath" (dict "attach" $attach "signalThrottle" $v.datapath.signalThrottle "synRto" $v.datapath.synRto "strictWireguard" $v.strict)
  "handshake" (dict "listen" "0.0.0.0" "port" (int $v.handshake.port) "timeout" $v.handshake.timeout "maxEntryTtl" $v.handshake.maxEntryTtl)
  "auth" (dict "reauthAt" $v.auth.reauthAt "preauthenticate" $v.auth.preauthenticate)
  "identity" $identity
  "inventory" (dict "source" $v.inventory.source)
  "policy" (dict "source" $v.policy.source)
  "kubernetes" (dict "trustDomain" $v.trustDomain "spiffeIdTemplate" $v.kubernetes.spiffeIdTemplate "nodeAddressType" $v.kubernetes.nodeAddressType "publishWireguardKey" $v.kubernetes.publishWireguardKey "reportPolicyStatus" $v.kubernetes.reportPolicyStatus)
  "audit" (dict "maxAge" $v.audit.maxAge "maxEvents" (int64 $v.audit.maxEvents))
  "api" (dict "socket" "/run/meshauth/api.sock")
  "metrics" (dict "listen" $metricsListen)
  "wireguard" (dict "enabled" $v.wireguard.enabled "interface" $v.wireguard.interface "listenPort" (int $v.wireguard.listenPort))
  "log" (dict "level" $v.log.level)
-}}
{{- toYaml (mustMergeOverwrite $config (deepCopy $v.extraConfig)) -}}
{{- end -}}

{{/* Labels of the relay's objects. */}}
{{- define "meshauth.relayLabels" -}}
app.kubernetes.io/name: {{ include "meshauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: relay
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
