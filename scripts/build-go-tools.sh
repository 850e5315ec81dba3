#!/usr/bin/env bash
# Builds the small Go tools meshauth runs beside it, each at a pinned release from the Go module
# proxy, into a cache directory, once:
#
#   wireguard-go  golang.zx2c4.com/wireguard (user-space WireGuard where the kernel module is
#                 missing; Debian bookworm's package is the 2022 release, far slower)
#   cni           the reference CNI plugins bridge, ptp, host-local and loopback
#                 (github.com/containernetworking/plugins), used by the e2e tests to create pod
#                 namespaces through the CNI protocol as a container runtime does
#
#   bash scripts/build-go-tools.sh [wireguard-go] [cni]   build what is missing (default: all),
#                                                         print each binary directory
#   bash scripts/build-go-tools.sh --print-dir <tool>     print the binary directory only
#   bash scripts/build-go-tools.sh --force <tool>...      rebuild even if cached
#
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.24; only the Go
# module proxy has to be reachable. The builds are CGO-free, stripped and reproducible.
set -euo pipefail

# wireguard-go release 0.0.20250522. Its tags lack the "v" Go wants, so the module proxy knows the
# release only by the pseudo-version of its commit (version.go there says 0.0.20250522).
WIREGUARD_GO_RELEASE=0.0.20250522
WIREGUARD_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446
CNI_PLUGINS_VERSION=v1.10.0

cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"

log() { printf '\033[1m[build-go-tools]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-go-tools: %s\n' "$*" >&2; exit 1; }

dir_of() {
  case "$1" in
    wireguard-go) printf '%s\n' "$cache_root/wireguard-go-$WIREGUARD_GO_RELEASE/bin" ;;
    cni) printf '%s\n' "$cache_root/cni-plugins-$CNI_PLUGINS_VERSION/bin" ;;
    *) die "unknown tool '$1' (expected wireguard-go or cni)" ;;
  esac
}

# "<package>@<version> <binary name>" per line.
packages_of() {
  case "$1" in
    wireguard-go) echo "golang.zx2c4.com/wireguard@$WIREGUARD_GO_VERSION wireguard" ;;
    cni)
      for p in main/bridge main/ptp main/loopback ipam/host-local; do
        echo "github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION ${p##*/}"
      done
      ;;
  esac
}

force=0
tools=()
while [ $# -gt 0 ]; do
  case "$1" in
    --print-dir)
      [ $# -ge 2 ] || die "--print-dir needs a tool name"
      dir_of "$2"
      exit 0
      ;;
    --force) force=1 ;;
    -h | --help)
      sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    wireguard-go | cni) tools+=("$1") ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift
done
[ "${#tools[@]}" -gt 0 ] || tools=(wireguard-go cni)

[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "go is not installed (apt-get install golang-go or a Go release)"

build() {
  local tool="$1" bin_dir stamp want tmp_bin start pkg name
  bin_dir="$(dir_of "$tool")"
  stamp="$bin_dir/.build-stamp"
  want="$(packages_of "$tool" | sha256sum | cut -d' ' -f1)"
  if [ "$force" -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    printf '%s\n' "$bin_dir"
    return
  fi
  mkdir -p "$(dirname "$bin_dir")"
  exec 9>"$(dirname "$bin_dir")/.lock"
  flock 9
  if [ "$force" -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    printf '%s\n' "$bin_dir"
    return
  fi
  tmp_bin="$(mktemp -d "$(dirname "$bin_dir")/bin.tmp.XXXXXX")"
  chmod 755 "$tmp_bin"
  start=$(date +%s)
  log "building $tool with $(go env GOVERSION)"
  while read -r pkg name; do
    # go install pkg@version ignores any go.mod around it: the module's own go.sum pins the
    # dependencies, and the checksum database verifies the module itself.
    if ! GOBIN="$tmp_bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
      go install -trimpath -ldflags '-s -w' "$pkg"; then
      rm -rf "$tmp_bin"
      die "go install $pkg failed (see the go output above)"
    fi
    [ -x "$tmp_bin/$name" ] || { rm -rf "$tmp_bin"; die "go install $pkg did not produce $name"; }
  done < <(packages_of "$tool")
  echo "$want" >"$tmp_bin/.build-stamp"
  rm -rf "$bin_dir"
  mv "$tmp_bin" "$bin_dir"
  exec 9>&-
  log "built $tool in $(($(date +%s) - start)) s: $bin_dir"
  printf '%s\n' "$bin_dir"
}

for t in "${tools[@]}"; do build "$t"; done
