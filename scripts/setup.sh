#!/usr/bin/env bash
# Installs everything meshauth needs on a fresh Debian/Ubuntu machine and builds it.
# Idempotent: each step is skipped when its result is already there. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (BPF, network namespaces and apt need it)" >&2
  exit 1
fi

# 1. System packages.
need_pkgs=()
command -v clang >/dev/null || need_pkgs+=(clang)
command -v llc >/dev/null || need_pkgs+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need_pkgs+=(libbpf-dev)
ldconfig -p | grep -q 'libbpf.so.1 ' || need_pkgs+=(libbpf1)
command -v bpftool >/dev/null || need_pkgs+=(bpftool)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v wg >/dev/null || need_pkgs+=(wireguard-tools)
command -v tcpdump >/dev/null || need_pkgs+=(tcpdump)
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v make >/dev/null || need_pkgs+=(make)
command -v gcc >/dev/null || need_pkgs+=(gcc)
# Go builds SPIRE (scripts/build-spire.sh); an older go fetches the toolchain SPIRE asks for.
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || need_pkgs+=(golang-go)
[ -f /usr/include/linux/bpf.h ] || need_pkgs+=(linux-libc-dev)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# wireguard-go, where the kernel has no WireGuard module: the current release built from the Go
# module proxy (Debian bookworm's package is the 2022 one, several times slower), installed as
# /usr/local/bin/wireguard-go, ahead of any packaged one on PATH. A copy, not a link: wireguard-go
# re-executes itself by its resolved path, and meshauth finds it in /proc by that name.
wg_go="$(bash scripts/build-go-tools.sh wireguard-go | tail -1)/wireguard"
if ! cmp -s "$wg_go" /usr/local/bin/wireguard-go; then
  log "installing wireguard-go $("$wg_go" --version | sed -n '1s/^wireguard-go //p') as /usr/local/bin/wireguard-go"
  install -m 0755 "$wg_go" /usr/local/bin/wireguard-go
fi

# 2. bpffs (pinned maps live there).
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# 3. npm packages (native ones are built by their install scripts, allowed in package.json).
stamp=node_modules/.meshauth-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi
node -e "require('better-sqlite3')(':memory:').close(); require('koffi')" ||
  { echo "setup: native npm packages (better-sqlite3, koffi) did not build" >&2; exit 1; }

# 4. Build: BPF object and TypeScript.
log "building BPF object and TypeScript"
make -s -C bpf
npx tsc -p tsconfig.build.json
log "ready"
