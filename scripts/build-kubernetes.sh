#!/usr/bin/env bash
# Builds the Kubernetes tools the tests run against, from source with the Go toolchain, into a cache
# directory, once: kube-apiserver, etcd and kubectl at the pinned Kubernetes release (module
# kubernetes/build/apiserver) and helm at the pinned Helm release (module kubernetes/build/helm).
# Later runs reuse the binaries while they are present and were built from the same inputs (the
# wrapper modules, versions and flags; a stamp per group records them).
#
#   bash scripts/build-kubernetes.sh                 build what is missing, then print the bin dir
#   bash scripts/build-kubernetes.sh --print-bin-dir print the binary directory only (no build)
#   bash scripts/build-kubernetes.sh --force         rebuild even if the cache is valid
#   bash scripts/build-kubernetes.sh --only kubernetes|helm   one group only
#
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.26. Only the Go
# module proxy has to be reachable. Cold cost on 2 cores: about 5 minutes, 3-5 GB of Go build and
# module cache, about 290 MB of binaries.
set -euo pipefail

KUBERNETES_VERSION=1.37.2
# The release tag's date, so that `--version` output is the same on every machine.
KUBERNETES_BUILD_DATE=2026-10-27T12:01:04Z
ETCD_VERSION=3.7.0
HELM_VERSION=4.3.2

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"
cache_dir="$cache_root/kubernetes-v$KUBERNETES_VERSION"
bin_dir="$cache_dir/bin"

log() { printf '\033[1m[build-kubernetes]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-kubernetes: %s\n' "$*" >&2; exit 1; }

force=0
groups=(kubernetes helm)
while [ $# -gt 0 ]; do
  case "$1" in
    --print-bin-dir) printf '%s\n' "$bin_dir"; exit 0 ;;
    --force) force=1 ;;
    --only)
      [ $# -ge 2 ] || die "--only needs 'kubernetes' or 'helm'"
      case "$2" in kubernetes|helm) groups=("$2") ;; *) die "--only: unknown group '$2'" ;; esac
      shift ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (expected --print-bin-dir, --force, --only <group> or nothing)" ;;
  esac
  shift
done

# Per group: its wrapper module, the binaries and how to build each, how to check its version.
group_module() { printf '%s\n' "$repo_root/kubernetes/build/$([ "$1" = helm ] && echo helm || echo apiserver)"; }
group_bins() { if [ "$1" = helm ]; then echo helm; else echo etcd kubectl kube-apiserver; fi; }

k8s_ldflags() {
  local minor="${KUBERNETES_VERSION#*.}"
  minor="${minor%%.*}"
  local f="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$KUBERNETES_BUILD_DATE"
  done
  printf '%s\n' "$f"
}
helm_ldflags() { printf '%s\n' "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"; }

bin_package() {
  case "$1" in
    kube-apiserver) echo k8s.io/kubernetes/cmd/kube-apiserver ;;
    kubectl) echo k8s.io/kubernetes/cmd/kubectl ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    helm) echo helm.sh/helm/v4/cmd/helm ;;
  esac
}

# Prints the version line a built binary reports and the text it must contain.
check_version() {
  local b="$1" dir="$2" got want
  case "$b" in
    kube-apiserver) got=$("$dir/$b" --version 2>&1 || true); want="Kubernetes v$KUBERNETES_VERSION" ;;
    kubectl) got=$("$dir/$b" version --client 2>&1 || true); want="Client Version: v$KUBERNETES_VERSION" ;;
    etcd) got=$("$dir/$b" --version 2>&1 || true); want="etcd Version: $ETCD_VERSION" ;;
    helm) got=$("$dir/$b" version --template '{{.Version}}' 2>&1 || true); want="v$HELM_VERSION" ;;
  esac
  case "$got" in
    *"$want"*) return 0 ;;
    *) die "built $b reports '$(printf '%s' "$got" | head -1)', expected '$want'" ;;
  esac
}

# The stamp names the inputs of a group's build; a change to any of them rebuilds that group.
inputs_hash() {
  local g="$1"
  (
    cd "$(group_module "$g")"
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    if [ "$g" = helm ]; then helm_ldflags; else k8s_ldflags; echo "etcd $ETCD_VERSION"; fi
  ) | sha256sum | cut -d' ' -f1
}

cache_valid() {
  local g="$1" b
  for b in $(group_bins "$g"); do [ -x "$bin_dir/$b" ] || return 1; done
  [ -f "$bin_dir/.build-stamp-$g" ] && [ "$(cat "$bin_dir/.build-stamp-$g")" = "$(inputs_hash "$g")" ]
}

todo=()
for g in "${groups[@]}"; do
  [ -f "$(group_module "$g")/go.mod" ] && [ -f "$(group_module "$g")/go.sum" ] ||
    die "missing $(group_module "$g")/go.mod or go.sum (the pinned wrapper module is part of the repository)"
  if [ "$force" -eq 1 ] || ! cache_valid "$g"; then todo+=("$g"); fi
done
if [ "${#todo[@]}" -eq 0 ]; then
  log "${groups[*]} already built in $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "go is not installed (need go >= 1.26; apt-get install golang-go or a Go release)"
go_version="$(go env GOVERSION)"

mkdir -p "$bin_dir"
# One build at a time per cache directory; another run may have built it meanwhile.
exec 9>"$cache_dir/.lock"
if ! flock -n 9; then
  log "another build holds $cache_dir/.lock; waiting for it"
  flock 9
fi
remaining=()
for g in "${todo[@]}"; do
  if [ "$force" -eq 0 ] && cache_valid "$g"; then log "$g built meanwhile by another run"; else remaining+=("$g"); fi
done

tmp_bin="$(mktemp -d "$cache_dir/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
for g in ${remaining[@]+"${remaining[@]}"}; do
  mod="$(group_module "$g")"
  if [ "$g" = helm ]; then ldflags="$(helm_ldflags)"; else ldflags="$(k8s_ldflags)"; fi
  # One binary after another: each go build already uses every core.
  for b in $(group_bins "$g"); do
    log "building $b ($(bin_package "$b")) with $go_version"
    start=$(date +%s)
    # -mod=readonly: the pinned go.sum must already list every module; nothing is resolved anew.
    (cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" \
      -o "$tmp_bin/$b" "$(bin_package "$b")") ||
      die "go build of $b failed (see the go output above)"
    check_version "$b" "$tmp_bin"
    log "built $b in $(($(date +%s) - start)) s ($(du -m "$tmp_bin/$b" | cut -f1) MB)"
  done
  for b in $(group_bins "$g"); do mv -f "$tmp_bin/$b" "$bin_dir/$b"; done
  inputs_hash "$g" >"$bin_dir/.build-stamp-$g"
done
log "ready: $bin_dir"
printf '%s\n' "$bin_dir"
