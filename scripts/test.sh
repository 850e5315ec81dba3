#!/usr/bin/env bash
# The whole test suite: set-up, SPIRE and Kubernetes builds (cached), lint, type check, unit,
# integration and e2e tests against the real kernel and API server, then a short smoke run of every
# benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=env.sh
. scripts/env.sh
bash scripts/build-spire.sh
# grpcurl drives the API through server reflection in test/integration/api/grpcurl.test.ts.
export MESHAUTH_GRPCURL="${MESHAUTH_GRPCURL:-$(bash scripts/build-grpcurl.sh)}"
export MESHAUTH_SPIRE_BIN="${MESHAUTH_SPIRE_BIN:-$(bash scripts/build-spire.sh --print-bin-dir)}"
# kube-apiserver, etcd, kubectl and helm for the Kubernetes tests (after SPIRE: one Go build at a time).
bash scripts/build-kubernetes.sh
export MESHAUTH_KUBE_BIN="${MESHAUTH_KUBE_BIN:-$(bash scripts/build-kubernetes.sh --print-bin-dir)}"
# spire-controller-manager and its CRDs for the SPIRE-on-Kubernetes e2e test (one Go build at a time).
bash scripts/build-spire-controller-manager.sh >/dev/null
export MESHAUTH_SPIRE_CM_DIR="${MESHAUTH_SPIRE_CM_DIR:-$(bash scripts/build-spire-controller-manager.sh --print-dir)}"
# The OpenTelemetry Collector receives the audit trail's OTLP export in test/integration/audit.
bash scripts/build-otelcol.sh >/dev/null
export MESHAUTH_OTELCOL="${MESHAUTH_OTELCOL:-$(bash scripts/build-otelcol.sh --print-bin)}"
# The reference CNI plugins the e2e pods are made with (wireguard-go was built by setup.sh).
bash scripts/build-go-tools.sh cni >/dev/null
export MESHAUTH_CNI_BIN="${MESHAUTH_CNI_BIN:-$(bash scripts/build-go-tools.sh --print-dir cni)}"

echo "[test] generated files, lint and type check"
bash scripts/gen-proto.sh --check
npx tsc -p tsconfig.json --noEmit
npx eslint .
npx prettier --check . >/dev/null || { npx prettier --check .; exit 1; }
npx madge --circular --extensions ts src >/dev/null

echo "[test] vitest: unit, integration, e2e"
results=$(mktemp)
set +e
npx vitest run --reporter=default --reporter=json --outputFile="$results"
status=$?
set -e
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$results" || true
rm -f "$results"
[ "$status" -eq 0 ] || exit "$status"

echo "[test] benchmark smoke run"
MESHAUTH_BENCH_SMOKE=1 node dist/bench/main.js

# The container image (mmdebstrap + umoci, several minutes): opt-in.
if [ "${MESHAUTH_IMAGE_SMOKE:-0}" = 1 ]; then
  echo "[test] container image build and smoke test"
  bash scripts/build-image.sh --smoke
fi
