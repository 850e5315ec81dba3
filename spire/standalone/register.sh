#!/usr/bin/env bash
# Registration for the standalone two-node demo (node-a, node-b). Run on the SPIRE server host.
#
#   bash register.sh tokens     print one join token per node (start each agent with its token)
#   bash register.sh entries    create meshauthd's delegate entry and the demo workloads' entries
#
# SPIRE_SERVER (default spire-server) and SERVER_SOCKET (default /run/spire/server/api.sock)
# select the server. Entries are created once; "already exists" is not an error.
set -euo pipefail

td=demo.local
server=${SPIRE_SERVER:-spire-server}
sock=${SERVER_SOCKET:-/run/spire/server/api.sock}
# uid meshauthd runs as on the nodes (root by default).
meshauthd_uid=${MESHAUTHD_UID:-0}

entry() {
  local out
  if ! out=$("$server" entry create -socketPath "$sock" "$@" 2>&1); then
    case "$out" in
      *AlreadyExists* | *"similar entry already exists"*) echo "exists: $*" ;;
      *) echo "$out" >&2; return 1 ;;
    esac
  else
    echo "$out"
  fi
}

case "${1:-}" in
  tokens)
    for node in node-a node-b; do
      # -spiffeID makes spiffe://demo.local/node/<node> an alias of the agent that uses the token,
      # so the entries below can name a stable parent.
      printf '%s ' "$node"
      "$server" token generate -socketPath "$sock" -ttl 3600 -spiffeID "spiffe://$td/node/$node" | awk '{print $2}'
    done
    ;;
  entries)
    for node in node-a node-b; do
      # meshauthd: listed in every agent's authorized_delegates. Attested by the unix attestor.
      entry -parentID "spiffe://$td/node/$node" -spiffeID "spiffe://$td/meshauthd" \
        -selector "unix:uid:$meshauthd_uid"
    done
    # Demo workloads. meshauthd asks the agent for them by these selectors (they come from
    # meshauth's inventory), so the selectors need no attestor on the node.
    entry -parentID "spiffe://$td/node/node-a" -spiffeID "spiffe://$td/ns/demo/sa/web" \
      -selector k8s:ns:demo -selector k8s:sa:web -x509SVIDTTL 3600
    entry -parentID "spiffe://$td/node/node-a" -spiffeID "spiffe://$td/ns/demo/sa/client" \
      -selector k8s:ns:demo -selector k8s:sa:client -x509SVIDTTL 3600
    entry -parentID "spiffe://$td/node/node-b" -spiffeID "spiffe://$td/ns/demo/sa/api" \
      -selector k8s:ns:demo -selector k8s:sa:api -x509SVIDTTL 3600
    entry -parentID "spiffe://$td/node/node-b" -spiffeID "spiffe://$td/ns/monitoring/sa/prometheus" \
      -selector k8s:ns:monitoring -selector k8s:sa:prometheus -x509SVIDTTL 3600
    ;;
  *)
    echo "usage: $0 tokens|entries" >&2
    exit 2
    ;;
esac
