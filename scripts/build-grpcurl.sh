#!/usr/bin/env bash
# Builds grpcurl (the pinned release) from the Go module proxy into a cache directory, once. The API
# integration test drives every method through gRPC server reflection with it, as a user would.
#
#   bash scripts/build-grpcurl.sh                 build if needed, then print the binary's path
#   bash scripts/build-grpcurl.sh --print-bin     print the binary's path only (no build)
#   bash scripts/build-grpcurl.sh --force         rebuild even if the cache is valid
#
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.24.
set -euo pipefail

GRPCURL_MODULE=github.com/fullstorydev/grpcurl
GRPCURL_VERSION=v1.9.4
cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"
bin_dir="$cache_root/grpcurl-$GRPCURL_VERSION/bin"
bin="$bin_dir/grpcurl"
stamp="$bin_dir/.build-stamp"
want_stamp="$GRPCURL_MODULE/cmd/grpcurl@$GRPCURL_VERSION"

log() { printf '\033[1m[build-grpcurl]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-grpcurl: %s\n' "$*" >&2; exit 1; }

force=0
case "${1:-}" in
  --print-bin) printf '%s\n' "$bin"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (expected --print-bin, --force or nothing)" ;;
esac

cache_valid() { [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; }

if [ "$force" -eq 0 ] && cache_valid; then
  printf '%s\n' "$bin"
  exit 0
fi

[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "go is not installed (apt-get install golang-go or a Go release)"

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if [ "$force" -eq 0 ] && cache_valid; then
    printf '%s\n' "$bin"
    exit 0
  fi
fi

tmp_bin="$(mktemp -d "$bin_dir/tmp.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
log "building grpcurl $GRPCURL_VERSION with $(go env GOVERSION)"
# go install pkg@version resolves the module's own go.mod/go.sum; the sums are checked as usual.
CGO_ENABLED=0 GOBIN="$tmp_bin" go install -trimpath -ldflags "-s -w" "$want_stamp" ||
  die "go install $want_stamp failed (see the go output above)"
[ -x "$tmp_bin/grpcurl" ] || die "go install did not produce grpcurl"
mv -f "$tmp_bin/grpcurl" "$bin"
printf '%s\n' "$want_stamp" >"$stamp"
log "built: $bin"
printf '%s\n' "$bin"
