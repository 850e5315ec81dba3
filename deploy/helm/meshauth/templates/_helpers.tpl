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
{{/*
A duration value in milliseconds, as meshauthd's config loader reads it (src/config/duration.ts:
the number times its unit, rounded to a whole millisecond). The schema has already checked the
shape ("250ms", "5s", "1m", "1h", "1d"); JSON Schema cannot compare a number with a unit, so the
bounds the daemon enforces are checked here (meshauth.checkDuration), at template time, instead of
by every pod crash-looping on its config.
*/}}
{{- define "meshauth.durationMs" -}}
{{- $unit := regexFind "(ms|s|m|h|d)$" . -}}
{{- $n := float64 (trimSuffix $unit .) -}}
{{- $ms := mulf $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit) -}}
{{- printf "%.0f" (round $ms 0) -}}
{{- end -}}

{{/* list NAME VALUE MIN-MS [MAX-MS]: fails naming the value when it is out of the daemon's range. */}}
{{- define "meshauth.checkDuration" -}}
{{- $name := index . 0 -}}
{{- $value := index . 1 -}}
{{- $ms := include "meshauth.durationMs" $value | int64 -}}
{{- $min := index . 2 | int64 -}}
{{- if lt $ms $min -}}
{{- fail (printf "%s: must be at least %dms (got %q)" $name $min $value) -}}
{{- end -}}
{{- if gt (len .) 3 -}}
{{- $max := index . 3 | int64 -}}
{{- if gt $ms $max -}}
{{- fail (printf "%s: must be at most %dms (got %q)" $name $max $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
list PORTS: PORTS is a list of (list NAME PORT) of the daemon's TCP listeners, all on the host
network's every address; fails naming the first two that share a port (meshauthd refuses them too,
src/config/schema.ts, but only once each pod starts).
*/}}
{{- define "meshauth.checkPorts" -}}
{{- $seen := dict -}}
{{- range . -}}
{{- $name := index . 0 -}}
{{- $port := index . 1 | int | toString -}}
{{- if hasKey $seen $port -}}
{{- fail (printf "%s and %s are both %s: each listener of meshauthd (on the host network) needs a port of its own" (get $seen $port) $name $port) -}}
{{- end -}}
{{- $_ := set $seen $port $name -}}
{{- end -}}
{{- end -}}

{{/*
wireguard.address: this node's tunnel address, "<IPv4>/32" or "<IPv6>/128" (as meshauthd requires,
src/config/schema.ts: peers are routed by their pod CIDRs, the interface carries one address).
*/}}
{{- define "meshauth.checkWireguardAddress" -}}
{{- $a := . -}}
{{- $bad := printf "wireguard.address: must be this node's tunnel address as /32 (IPv4) or /128 (IPv6), like 10.99.0.1/32 or fd00:99::1/128 (got %q" $a -}}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,3}$" $a -}}
{{- $parts := splitList "/" $a -}}
{{- range splitList "." (index $parts 0) -}}
{{- if gt (int .) 255 -}}
{{- fail (printf "%s: each part of an IPv4 address is 0 to 255)" $bad) -}}
{{- end -}}
{{- end -}}
{{- $len := index $parts 1 | int -}}
{{- if gt $len 32 -}}
{{- fail (printf "%s: the prefix length of an IPv4 address is 0 to 32)" $bad) -}}
{{- else if ne $len 32 -}}
{{- fail (printf "%s: a /%d is a subnet, not one address)" $bad $len) -}}
{{- end -}}
{{- else if regexMatch "^[0-9a-fA-F:]*:[0-9a-fA-F:]*/[0-9]{1,3}$" $a -}}
{{- $parts := splitList "/" $a -}}
{{- if or (gt (len (splitList "::" (index $parts 0))) 2) (gt (len (splitList ":" (index $parts 0))) 8) -}}
{{- fail (printf "%s: not an IPv6 address)" $bad) -}}
{{- end -}}
{{- $len := index $parts 1 | int -}}
{{- if gt $len 128 -}}
{{- fail (printf "%s: the prefix length of an IPv6 address is 0 to 128)" $bad) -}}
{{- else if ne $len 128 -}}
{{- fail (printf "%s: a /%d is a subnet, not one address)" $bad $len) -}}
{{- end -}}
{{- else -}}
{{- fail (printf "%s)" $bad) -}}
{{- end -}}
{{- end -}}

{{/*
list SET EXTRA PATH: fails when extraConfig (EXTRA) sets a key the chart already sets (SET), naming
its path. extraConfig only adds settings the chart does not render (identity.files, bpf.object,
...); a key the chart sets comes from the chart's own value, so that the two never disagree
silently. Mappings are compared key by key; anything else is one setting.
*/}}
{{- define "meshauth.checkExtraConfig" -}}
{{- $set := index . 0 -}}
{{- $extra := index . 1 -}}
{{- $prefix := index . 2 -}}
{{- range $k, $x := $extra -}}
{{- $path := ternary $k (printf "%s.%s" $prefix $k) (eq $prefix "") -}}
{{- if hasKey $set $k -}}
{{- $cur := index $set $k -}}
{{- if and (kindIs "map" $x) (kindIs "map" $cur) -}}
{{- include "meshauth.checkExtraConfig" (list $cur $x $path) -}}
{{- else -}}
{{- fail (printf "extraConfig.%s: the chart sets %s itself, from its values or the pod's layout: set the chart value it comes from instead (chart README, Values); extraConfig may only add settings the chart does not set" $path $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

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
{{- /* without a shared CA each node would make its own, and no node could authenticate another */ -}}
{{- if not (include "meshauth.devCaSecret" .) -}}
{{- fail "identity.devCa.existingSecret: identity.source dev-ca needs the development CA every node shares: a Secret with ca.crt and ca.key in identity.devCa.existingSecret, or its PEM in identity.devCa.caCert and identity.devCa.caKey (create one with: meshauth dev-ca init)" -}}
{{- end -}}
{{- include "meshauth.checkDuration" (list "identity.devCa.svidTtl" $v.identity.devCa.svidTtl 60000 604800000) -}}
{{- $devCa := dict "trustDomain" $v.trustDomain "svidTtl" $v.identity.devCa.svidTtl -}}
{{- if include "meshauth.devCaSecret" . -}}
{{- $_ := set $devCa "caCert" "/etc/meshauth/dev-ca/ca.crt" -}}
{{- $_ := set $devCa "caKey" "/etc/meshauth/dev-ca/ca.key" -}}
{{- end -}}
{{- $_ := set $identity "devCa" $devCa -}}
{{- end -}}
{{- if eq $v.identity.source "spire-delegated" -}}
{{- $_ := set $identity.spire "maxMessageBytes" (int64 $v.identity.spire.maxMessageBytes) -}}
{{- end -}}
{{- $metricsListen := "" -}}
{{- if $v.metrics.enabled -}}
{{- $metricsListen = printf "0.0.0.0:%d" (int $v.metrics.port) -}}
{{- end -}}
{{- /* checked here, not in the schema: helm's schema errors would not name strict */ -}}
{{- if and $v.strict (not $v.wireguard.enabled) -}}
{{- fail "strict: true needs wireguard.enabled: true (strict drops pod traffic between nodes that did not come through WireGuard)" -}}
{{- end -}}
{{- $m := $v.datapath.maps -}}
{{- $maps := dict "auth" (int64 $m.auth) "ipcache" (int64 $m.ipcache) "policy" (int64 $m.policy) "throttle" (int64 $m.throttle) "signalRingBytes" (int64 $m.signalRingBytes) -}}
{{- $a := $v.auth -}}
{{- $auth := dict "reauthAt" $a.reauthAt "preauthenticate" $a.preauthenticate "mode" $a.mode "channel" (dict "port" (int $a.channel.port) "nodeId" (replace "{trustDomain}" $v.trustDomain $a.channel.nodeId) "maxChannels" (int64 $a.channel.maxChannels)) "maxConcurrent" (int64 $a.maxConcurrent) "queueSize" (int64 $a.queueSize) "retryBase" $a.retryBase "retryMax" $a.retryMax "gcInterval" $a.gcInterval -}}
{{- $au := $v.audit -}}
{{- /* the bounds of src/config/schema.ts DURATION_LIMITS */ -}}
{{- include "meshauth.checkDuration" (list "datapath.signalThrottle" $v.datapath.signalThrottle 10 60000) -}}
{{- include "meshauth.checkDuration" (list "datapath.synRto" $v.datapath.synRto 1 1000) -}}
{{- include "meshauth.checkDuration" (list "handshake.timeout" $v.handshake.timeout 100 300000) -}}
{{- include "meshauth.checkDuration" (list "handshake.maxEntryTtl" $v.handshake.maxEntryTtl 1000 604800000) -}}
{{- include "meshauth.checkDuration" (list "auth.retryBase" $a.retryBase 10 60000) -}}
{{- include "meshauth.checkDuration" (list "auth.retryMax" $a.retryMax 10 3600000) -}}
{{- include "meshauth.checkDuration" (list "auth.gcInterval" $a.gcInterval 100 3600000) -}}
{{- if lt (include "meshauth.durationMs" $a.retryMax | int64) (include "meshauth.durationMs" $a.retryBase | int64) -}}
{{- fail (printf "auth.retryMax: must be at least auth.retryBase (%s, got %q)" $a.retryBase $a.retryMax) -}}
{{- end -}}
{{- include "meshauth.checkDuration" (list "audit.maxAge" $au.maxAge 60000 315360000000) -}}
{{- include "meshauth.checkDuration" (list "audit.headInterval" $au.headInterval 1000 86400000) -}}
{{- include "meshauth.checkDuration" (list "audit.witnessMaxSkew" $au.witnessMaxSkew 1000 86400000) -}}
{{- include "meshauth.checkDuration" (list "audit.otlpTimeout" $au.otlpTimeout 100 300000) -}}
{{- $audit := dict "maxAge" $au.maxAge "maxEvents" (int64 $au.maxEvents) "witnesses" $au.witnesses "headInterval" $au.headInterval "witnessMaxSkew" $au.witnessMaxSkew "otlpBatchSize" (int64 $au.otlpBatchSize) "otlpTimeout" $au.otlpTimeout -}}
{{- if $au.otlpEndpoint -}}
{{- $_ := set $audit "otlpEndpoint" $au.otlpEndpoint -}}
{{- end -}}
{{- if not (hasSuffix "0" $v.api.socketMode) -}}
{{- fail (printf "api.socketMode: must give other users no access (last digit 0, like \"0600\" or \"0660\"): any local user could then call the API (got %q)" $v.api.socketMode) -}}
{{- end -}}
{{- $api := dict "socket" "/run/meshauth/api.sock" "socketMode" $v.api.socketMode -}}
{{- $t := $v.api.tcp -}}
{{- if $t.enabled -}}
{{- if not $t.allowedIds -}}
{{- fail "api.tcp.allowedIds: list at least one client SPIFFE ID allowed to call the TCP API (the relay, other nodes, operators)" -}}
{{- end -}}
{{- $tcp := dict "listen" (printf "0.0.0.0:%d" (int $t.port)) "allowedIds" $t.allowedIds -}}
{{- if $t.identity -}}
{{- $_ := set $tcp "identity" (replace "{trustDomain}" $v.trustDomain $t.identity) -}}
{{- end -}}
{{- $_ := set $api "tcp" $tcp -}}
{{- end -}}
{{- $ports := list (list "handshake.port" $v.handshake.port) -}}
{{- if eq $a.mode "channel" -}}
{{- $ports = append $ports (list "auth.channel.port" $a.channel.port) -}}
{{- end -}}
{{- if $t.enabled -}}
{{- $ports = append $ports (list "api.tcp.port" $t.port) -}}
{{- end -}}
{{- if $v.metrics.enabled -}}
{{- $ports = append $ports (list "metrics.port" $v.metrics.port) -}}
{{- end -}}
{{- include "meshauth.checkPorts" $ports -}}
{{- if $v.wireguard.address -}}
{{- include "meshauth.checkWireguardAddress" $v.wireguard.address -}}
{{- end -}}
{{- if and $au.witnesses (not (and $t.enabled $t.identity)) -}}
{{- fail "audit.witnesses: needs api.tcp.enabled and api.tcp.identity (the SVID that signs the audit head)" -}}
{{- end -}}
{{- $config := dict
  "stateDir" "/var/lib/meshauth"
  "bpf" (dict "pinDir" "/sys/fs/bpf/meshauth")
  "datapath" (dict "attach" $attach "signalThrottle" $v.datapath.signalThrottle "synRto" $v.datapath.synRto "synReplay" $v.datapath.synReplay "strictWireguard" $v.strict "maps" $maps)
  "handshake" (dict "listen" "0.0.0.0" "port" (int $v.handshake.port) "timeout" $v.handshake.timeout "maxEntryTtl" $v.handshake.maxEntryTtl "maxConnections" (int64 $v.handshake.maxConnections) "perPeerRate" $v.handshake.perPeerRate "perPeerBurst" (int64 $v.handshake.perPeerBurst))
  "auth" $auth
  "identity" $identity
  "inventory" (dict "source" $v.inventory.source)
  "policy" (dict "source" $v.policy.source)
  "kubernetes" (dict "trustDomain" $v.trustDomain "spiffeIdTemplate" $v.kubernetes.spiffeIdTemplate "nodeAddressType" $v.kubernetes.nodeAddressType "publishWireguardKey" $v.kubernetes.publishWireguardKey "reportPolicyStatus" $v.kubernetes.reportPolicyStatus)
  "audit" $audit
  "api" $api
  "metrics" (dict "listen" $metricsListen)
  "wireguard" (dict "enabled" $v.wireguard.enabled "interface" $v.wireguard.interface "listenPort" (int $v.wireguard.listenPort))
  "log" (dict "level" $v.log.level)
-}}
{{- if not (kindIs "map" $v.extraConfig) -}}
{{- fail (printf "extraConfig: must be a mapping of daemon settings (keys of meshauthd --help, as YAML), got %s" (kindOf $v.extraConfig)) -}}
{{- end -}}
{{- include "meshauth.checkExtraConfig" (list $config $v.extraConfig "") -}}
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
