# Sourced (not run) by the project's scripts: puts the Node.js runtime the project needs (Node 24
# LTS) first on PATH. scripts/setup.sh installs that runtime into the cache directory when the
# machine's own `node` is missing or older than 24; when it did not have to, this file changes
# nothing. Interactive shells may source it too:  . scripts/env.sh
#
# Exports MESHAUTH_NODE_VERSION (the pinned release), MESHAUTH_NODE_DIR (where setup puts it) and,
# when that copy is used, PATH. setup.sh also points npm_config_nodedir at that copy's headers
# while it runs npm ci (the environment variable overrides any nodedir= in an .npmrc).
MESHAUTH_NODE_VERSION=24.19.0
MESHAUTH_NODE_DIR="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}/node-v$MESHAUTH_NODE_VERSION"
export MESHAUTH_NODE_VERSION MESHAUTH_NODE_DIR
if [ -x "$MESHAUTH_NODE_DIR/bin/node" ]; then
  case ":$PATH:" in
    *":$MESHAUTH_NODE_DIR/bin:"*) ;;
    *) PATH="$MESHAUTH_NODE_DIR/bin:$PATH" ;;
  esac
  export PATH
fi
