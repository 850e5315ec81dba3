#!/usr/bin/env bash
# The two-node demo: set-up, then two meshauthd in network namespaces with real BPF and real
# handshakes, using the embedded dev CA. Everything it creates is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=env.sh
. scripts/env.sh
exec node dist/demo/main.js "$@"
