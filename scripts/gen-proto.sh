#!/usr/bin/env bash
# Generates, from the API's .proto files, the two things checked in beside them:
#   proto/api.binpb     a FileDescriptorSet compiled by protoc (with imports and comments); gRPC
#                       server reflection serves it as protoc-based clients (grpcurl) expect it
#   src/api/generated/  TypeScript types of the messages (proto-loader-gen-types), with the same
#                       loader options as src/api/proto.ts
#
#   bash scripts/gen-proto.sh           regenerate both
#   bash scripts/gen-proto.sh --check   fail when the checked-in files differ from what the .proto
#                                       files give (run by scripts/test.sh)
#
# Needs protoc (Debian: protobuf-compiler; scripts/setup.sh installs it) and the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

API_PROTOS=(meshauth/v1/audit.proto meshauth/v1/witness.proto grpc/health/v1/health.proto)
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "gen-proto: unknown argument '$1' (expected --check or nothing)" >&2; exit 2 ;;
esac

command -v protoc >/dev/null || { echo "gen-proto: protoc is not installed (apt-get install protobuf-compiler)" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
protoc -I proto --include_imports --include_source_info --descriptor_set_out="$out/api.binpb" "${API_PROTOS[@]}"
# Keep in step with LOADER_OPTIONS in src/api/proto.ts.
npx --no-install proto-loader-gen-types --longs=Number --enums=String --defaults --oneofs \
  --includeComments --grpcLib=@grpc/grpc-js --importFileExtension=.js \
  -I proto -O "$out/generated" "${API_PROTOS[@]}" >/dev/null

if [ "$check" -eq 1 ]; then
  status=0
  cmp -s "$out/api.binpb" proto/api.binpb || { echo "gen-proto: proto/api.binpb is out of date" >&2; status=1; }
  diff -r "$out/generated" src/api/generated >&2 || { echo "gen-proto: src/api/generated is out of date" >&2; status=1; }
  [ "$status" -eq 0 ] || echo "gen-proto: run 'bash scripts/gen-proto.sh' and commit the result" >&2
  exit "$status"
fi
cp "$out/api.binpb" proto/api.binpb
rm -rf src/api/generated
cp -r "$out/generated" src/api/generated
echo "gen-proto: wrote proto/api.binpb and src/api/generated/"
