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
# libfaketime steps the wall clock of one meshauthd (test/faults/clock-step.test.ts), not the machine's.
[ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need_pkgs+=(libfaketime)
# protoc compiles the API's descriptor set (scripts/gen-proto.sh --check runs in the test command).
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
command -v make >/dev/null || need_pkgs+=(make)
command -v gcc >/dev/null || need_pkgs+=(gcc)
# Native npm addons (better-sqlite3) compile from source with node-gyp: C++ and Python.
command -v g++ >/dev/null || need_pkgs+=(g++)
command -v python3 >/dev/null || need_pkgs+=(python3)
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

# 2. Node.js 24 LTS: the machine's own when it is new enough, else the pinned release in the cache.
bash scripts/install-node.sh
# shellcheck source=env.sh
. scripts/env.sh
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 24 ] || { echo "setup: node $(node --version) is older than 24" >&2; exit 1; }

# 3. bpffs (pinned maps live there).
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# 4. npm packages (native ones are built by their install scripts, allowed in package.json). The
# stamp also names the runtime's ABI: another Node.js major needs the native addons rebuilt.
stamp=node_modules/.meshauth-lock-hash
want="$(sha256sum package-lock.json | cut -d' ' -f1) node-abi-$(node -p process.versions.modules)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm ci"
  # A native addon that compiles from source must use the headers of the node that runs it.
  # Set for this one command only: exported, it makes every later npm/npx warn
  # 'Unknown env config "nodedir"'.
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  [ -f "$nodedir/include/node/node.h" ] || nodedir=""
  if [ -n "$nodedir" ]; then
    npm_config_nodedir="$nodedir" npm ci --no-audit --no-fund --loglevel=error
  else
    npm ci --no-audit --no-fund --loglevel=error
  fi
  echo "$want" >"$stamp"
fi
# Every native addon must load in the runtime the project runs on, not just have installed.
node -e "
  const db = require('better-sqlite3')(':memory:');
  db.prepare('select 1').get();
  db.close();
  const koffi = require('koffi');
  if (typeof koffi.load !== 'function') throw new Error('koffi has no load()');
" || {
  echo "setup: native npm packages (better-sqlite3, koffi) did not build for node $(node --version)" >&2
  echo "setup: remove node_modules and run setup again; node headers: ${nodedir:-unset}" >&2
  exit 1
}

# 5. Build: BPF object and TypeScript.
log "building BPF object and TypeScript"
make -s -C bpf
npx tsc -p tsconfig.build.json
# X.509 path validation runs in the OpenSSL node itself carries (src/spiffe/openssl.ts, via koffi).
node --input-type=module -e "const m = await import('./dist/src/spiffe/openssl.js'); m.opensslVersion();" ||
  { echo "setup: OpenSSL path validation through koffi is unavailable in this node" >&2; exit 1; }
log "ready"
