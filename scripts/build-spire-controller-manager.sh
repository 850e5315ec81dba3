#!/usr/bin/env bash
# Builds spire-controller-manager (the controller that turns ClusterSPIFFEID, ClusterStaticEntry and
# ClusterFederatedTrustDomain objects into SPIRE registration entries) at the pinned release from
# the Go module proxy, through the wrapper module spire/controller-manager-build, into a cache
# directory, once. Next to the binary it keeps the release's CustomResourceDefinitions, taken from
# the same module version, so that tests install exactly the CRDs the binary was built with.
#
#   bash scripts/build-spire-controller-manager.sh              build if missing, print the cache dir
#   bash scripts/build-spire-controller-manager.sh --print-dir  print the cache directory only
#   bash scripts/build-spire-controller-manager.sh --force      rebuild even if the cache is valid
#
# The cache directory holds bin/spire-controller-manager and crds/*.yaml.
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.26; only the Go module
# proxy has to be reachable. Cold cost on 2 cores: about 75 s, 45 MB binary.
#
# Why a wrapper module: the proxy serves v0.6.2 to v0.6.4 but refuses the module's version list,
# so `go install ...@v0.6.4` fails on its deprecation look-up; a module that requires the release
# (`go get -tool`) and is built with -mod=readonly resolves nothing at build time.
set -euo pipefail

SCM_VERSION=0.6.4
SCM_MODULE=github.com/spiffe/spire-controller-manager
CRDS=(clusterspiffeids clusterstaticentries clusterfederatedtrustdomains)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module_dir="$repo_root/spire/controller-manager-build"
cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"
cache_dir="$cache_root/spire-controller-manager-v$SCM_VERSION"
ldflags='-s -w'

log() { printf '\033[1m[build-spire-controller-manager]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-spire-controller-manager: %s\n' "$*" >&2; exit 1; }

force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --print-dir) printf '%s\n' "$cache_dir"; exit 0 ;;
    --force) force=1 ;;
    -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (expected --print-dir, --force or nothing)" ;;
  esac
  shift
done

inputs_hash() {
  (
    cd "$module_dir"
    sha256sum go.mod go.sum
    echo "$ldflags ${CRDS[*]}"
  ) | sha256sum | cut -d' ' -f1
}

cache_valid() {
  local c
  [ -x "$cache_dir/bin/spire-controller-manager" ] || return 1
  for c in "${CRDS[@]}"; do [ -f "$cache_dir/crds/spire.spiffe.io_$c.yaml" ] || return 1; done
  [ -f "$cache_dir/.build-stamp" ] && [ "$(cat "$cache_dir/.build-stamp")" = "$(inputs_hash)" ]
}

[ -f "$module_dir/go.mod" ] && [ -f "$module_dir/go.sum" ] ||
  die "missing $module_dir/go.mod or go.sum (the pinned wrapper module is part of the repository)"
if [ "$force" -eq 0 ] && cache_valid; then
  log "v$SCM_VERSION already built in $cache_dir"
  printf '%s\n' "$cache_dir"
  exit 0
fi

[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "go is not installed (need go >= 1.26; apt-get install golang-go or a Go release)"

mkdir -p "$cache_dir"
# One build at a time per cache directory; another run may have built it meanwhile.
exec 9>"$cache_dir/.lock"
if ! flock -n 9; then
  log "another build holds $cache_dir/.lock; waiting for it"
  flock 9
fi
if [ "$force" -eq 0 ] && cache_valid; then
  log "built meanwhile by another run"
  printf '%s\n' "$cache_dir"
  exit 0
fi

tmp="$(mktemp -d "$cache_dir/tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/crds"
start=$(date +%s)
log "building $SCM_MODULE v$SCM_VERSION with $(go env GOVERSION)"
# -mod=readonly: the pinned go.sum must already list every module; nothing is resolved anew.
(cd "$module_dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -mod=readonly -trimpath \
  -ldflags "$ldflags" -o "$tmp/bin/spire-controller-manager" "$SCM_MODULE/cmd") ||
  die "go build failed (see the go output above)"
# The binary's build information names the module version it was built from.
got="$(go version -m "$tmp/bin/spire-controller-manager" | awk -v m="$SCM_MODULE" '$1 == "mod" && $2 == m { print $3 }')"
[ "$got" = "v$SCM_VERSION" ] || die "built binary reports $SCM_MODULE '$got', expected v$SCM_VERSION"

# The CRDs of the same release, from the module cache the build just used.
src="$(cd "$module_dir" && go list -mod=readonly -m -f '{{.Dir}}' "$SCM_MODULE")"
[ -n "$src" ] && [ -d "$src/config/crd/bases" ] || die "no CRDs in the module source of $SCM_MODULE ($src)"
for c in "${CRDS[@]}"; do
  install -m 0644 "$src/config/crd/bases/spire.spiffe.io_$c.yaml" "$tmp/crds/"
done

rm -rf "$cache_dir/bin" "$cache_dir/crds"
mv "$tmp/bin" "$cache_dir/bin"
mv "$tmp/crds" "$cache_dir/crds"
inputs_hash >"$cache_dir/.build-stamp"
log "built in $(($(date +%s) - start)) s ($(du -m "$cache_dir/bin/spire-controller-manager" | cut -f1) MB): $cache_dir"
printf '%s\n' "$cache_dir"
