#!/usr/bin/env bash
# Registration entries for Kubernetes. Run where kubectl reaches the cluster:
#   bash register.sh
# Uses `kubectl exec` into the spire-server pod (namespace spire). Idempotent.
set -euo pipefail

td=demo.local
ns=${SPIRE_NAMESPACE:-spire}
pod=${SPIRE_SERVER_POD:-spire-server-0}
sock=/tmp/spire-server/private/api.sock
# Every agent of cluster "demo" gets this alias, so entries need not name individual agents.
nodes="spiffe://$td/k8s-nodes/demo"

entry() {
  local out
  if ! out=$(kubectl -n "$ns" exec "$pod" -c spire-server -- \
    /opt/spire/bin/spire-server entry create -socketPath "$sock" "$@" 2>&1); then
    case "$out" in
      *AlreadyExists* | *"similar entry already exists"*) echo "exists: $*" ;;
      *) echo "$out" >&2; return 1 ;;
    esac
  else
    echo "$out"
  fi
}

# Node alias: every agent attested through k8s_psat in cluster "demo".
entry -node -spiffeID "$nodes" -selector k8s_psat:cluster:demo

# meshauthd (DaemonSet in namespace meshauth, service account meshauthd): the authorized delegate.
entry -parentID "$nodes" -spiffeID "spiffe://$td/ns/meshauth/sa/meshauthd" \
  -selector k8s:ns:meshauth -selector k8s:sa:meshauthd

# Demo workloads, one SPIFFE ID per service account. meshauthd subscribes with the selectors of
# its inventory (k8s:ns:<ns>, k8s:sa:<sa>) for the pods on its own node only.
for w in demo/web demo/client demo/api monitoring/prometheus; do
  wns=${w%%/*}
  sa=${w##*/}
  entry -parentID "$nodes" -spiffeID "spiffe://$td/ns/$wns/sa/$sa" \
    -selector "k8s:ns:$wns" -selector "k8s:sa:$sa"
done
