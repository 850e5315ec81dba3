#!/usr/bin/env bash
# Builds a minimal OpenTelemetry Collector (core modules from the Go module proxy: the OTLP receiver
# and the debug exporter) into a cache directory, once. The audit OTLP export integration test
# ships audit events to it over OTLP/HTTP as to any collector.
#
#   bash scripts/build-otelcol.sh               build if needed, then print the binary's path
#   bash scripts/build-otelcol.sh --print-bin   print the binary's path only (no build)
#
# Environment: MESHAUTH_CACHE_DIR (default ~/.cache/meshauth). Needs go >= 1.24.
set -euo pipefail

OTELCOL_VERSION=v0.165.0
# The stable (1.x) module released with that collector version.
FILEPROVIDER_VERSION=v1.71.0
cache_root="${MESHAUTH_CACHE_DIR:-${HOME:-/root}/.cache/meshauth}"
bin_dir="$cache_root/otelcol-$OTELCOL_VERSION/bin"
bin="$bin_dir/otelcol-meshauth"
stamp="$bin_dir/.build-stamp"
want_stamp="otelcol $OTELCOL_VERSION fileprovider $FILEPROVIDER_VERSION otlpreceiver debugexporter file-scheme telemetry"

log() { printf '\033[1m[build-otelcol]\033[0m %s\n' "$*" >&2; }
die() { printf 'build-otelcol: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --print-bin) printf '%s\n' "$bin"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (expected --print-bin or nothing)" ;;
esac

cache_valid() { [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; }
if cache_valid; then printf '%s\n' "$bin"; exit 0; fi

[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null 2>&1 && PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "go is not installed (apt-get install golang-go or a Go release)"

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.lock"
command -v flock >/dev/null 2>&1 && flock 9
if cache_valid; then printf '%s\n' "$bin"; exit 0; fi

src="$(mktemp -d "$bin_dir/src.XXXXXX")"
trap 'rm -rf "$src"' EXIT
cat >"$src/main.go" <<'GO'
// A collector with the components the audit export test needs: OTLP in, debug (log) out.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func factories() (otelcol.Factories, error) {
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory()); err != nil {
		return f, err
	}
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol-meshauth", Description: "OTLP receiver for meshauth tests", Version: "test"},
		Factories: factories,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()},
				DefaultScheme:     "file",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
log "building the collector ($OTELCOL_VERSION) with $(go env GOVERSION); this takes a few minutes"
(
  cd "$src"
  go mod init meshauth.test/otelcol >/dev/null 2>&1
  go get "go.opentelemetry.io/collector/otelcol@$OTELCOL_VERSION" \
    "go.opentelemetry.io/collector/receiver/otlpreceiver@$OTELCOL_VERSION" \
    "go.opentelemetry.io/collector/exporter/debugexporter@$OTELCOL_VERSION" \
    "go.opentelemetry.io/collector/confmap/provider/fileprovider@$FILEPROVIDER_VERSION" >&2
  go mod tidy >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$src/otelcol-meshauth" .
) || die "building the collector failed (see the go output above)"
mv -f "$src/otelcol-meshauth" "$bin"
printf '%s\n' "$want_stamp" >"$stamp"
log "built: $bin"
printf '%s\n' "$bin"
