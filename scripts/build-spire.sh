#!/usr/bin/env bash
# Builds spire-server and spire-agent (the pinned SPIRE release) from source with the Go toolchain
# into a cache directory, once. Later runs reuse the binaries while they are present and were built
# from the same pinned module files (spire/build/go.mod, go.sum and the EJBCA stand-in).
#
#   bash scripts/build-spire.sh                 build if needed, then print where the binaries are
#   bash scripts/build-spire.sh --print-bin-dir print the binary directory only (no build)
#   bash scripts/build-spire.sh --force         rebuild even if the cache is valid
#
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.26.6 and gcc (cgo).
# Only the Go module proxy has to be reachable; see spire/README.md for why a wrapper module is used.
set -euo pipefail

SPIRE_VERSION=1.15.3
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_mod="$repo_root/spire/build"
cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"
cache_dir="$cache_root/spire-v$SPIRE_VERSION"
bin_dir="$cache_dir/bin"
stamp="$bin_dir/.build-stamp"

log() { printf '\033[1m[build-spire]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-spire: %s\n' "$*" >&2; exit 1; }

force=0
case "${1:-}" in
  --print-bin-dir) printf '%s\n' "$bin_dir"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (expected --print-bin-dir, --force or nothing)" ;;
esac

# The stamp names the inputs of the build; a change to any of them rebuilds.
inputs_hash() {
  (
    cd "$build_mod"
    find go.mod go.sum tools.go ejbca-stub -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    printf 'spire %s\n' "$SPIRE_VERSION"
  ) | sha256sum | cut -d' ' -f1
}

cache_valid() {
  [ -x "$bin_dir/spire-server" ] && [ -x "$bin_dir/spire-agent" ] && [ -f "$stamp" ] &&
    [ "$(cat "$stamp")" = "$(inputs_hash)" ]
}

[ -f "$build_mod/go.mod" ] && [ -f "$build_mod/go.sum" ] ||
  die "missing $build_mod/go.mod or go.sum (the pinned wrapper module is part of the repository)"

if [ "$force" -eq 0 ] && cache_valid; then
  log "spire-server and spire-agent v$SPIRE_VERSION already built in $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

# Tools.
# A Go release unpacked in the usual place counts even when it is not on PATH.
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 ||
  die "go is not installed (need go >= 1.26.6; apt-get install golang-go or a Go release)"
command -v gcc >/dev/null 2>&1 || die "gcc is not installed (SPIRE needs cgo; apt-get install gcc)"
go_version="$(go env GOVERSION)"
ver="${go_version#go}"
IFS=. read -r g_major g_minor g_patch <<<"$ver"
g_patch="${g_patch%%[!0-9]*}"
if [ "${g_major:-0}" -lt 1 ] || { [ "${g_major}" -eq 1 ] && [ "${g_minor:-0}" -lt 26 ]; } ||
  { [ "${g_major}" -eq 1 ] && [ "${g_minor}" -eq 26 ] && [ "${g_patch:-0}" -lt 6 ]; }; then
  case "$(go env GOTOOLCHAIN)" in
    local*) die "$go_version is too old for SPIRE v$SPIRE_VERSION (needs go >= 1.26.6) and GOTOOLCHAIN=local" ;;
    *) log "$go_version is older than 1.26.6; the go command will fetch the toolchain SPIRE asks for" ;;
  esac
fi

mkdir -p "$cache_dir"
# One build at a time per cache directory.
exec 9>"$cache_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if [ "$force" -eq 0 ] && cache_valid; then
    log "built meanwhile by another run: $bin_dir"
    printf '%s\n' "$bin_dir"
    exit 0
  fi
fi

tmp_bin="$(mktemp -d "$cache_dir/bin.tmp.XXXXXX")"
chmod 755 "$tmp_bin"
trap 'rm -rf "$tmp_bin"' EXIT

log "building spire-server and spire-agent v$SPIRE_VERSION with $go_version (first time: several minutes)"
start=$(date +%s)
ldflags="-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=$SPIRE_VERSION"
if ! (
  cd "$build_mod"
  # -mod=readonly: the pinned go.sum must already list every module; nothing is resolved anew.
  CGO_ENABLED=1 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp_bin/" \
    github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
); then
  die "go build of SPIRE v$SPIRE_VERSION failed (see the go output above). If a module download
failed with 403/404, that module is not on the Go module proxy: see spire/README.md, 'Building SPIRE'."
fi

for b in spire-server spire-agent; do
  [ -x "$tmp_bin/$b" ] || die "go build did not produce $b"
done
got="$("$tmp_bin/spire-server" --version 2>&1 || true)"
case "$got" in
  *"$SPIRE_VERSION"*) ;;
  *) die "built spire-server reports version '$got', expected $SPIRE_VERSION" ;;
esac

inputs_hash >"$tmp_bin/.build-stamp"
rm -rf "$bin_dir"
mv "$tmp_bin" "$bin_dir"
trap - EXIT
log "built in $(($(date +%s) - start)) s: $bin_dir"
printf '%s\n' "$bin_dir"
