import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { packageRoot } from '../package-root.js';

/**
 * Options shared by server and client so both see the same shapes. The message types in
 * ./generated/ are generated with the same options (scripts/gen-proto.sh): keep them in step.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const AUDIT_SERVICE = 'meshauth.v1.Audit';
export const WITNESS_SERVICE = 'meshauth.v1.Witness';

/** Directory holding the .proto files (works from the source tree and from dist/). */
export function protoDir(): string {
  return join(packageRoot(), 'proto');
}

let cached: protoLoader.PackageDefinition | undefined;

/** The meshauth API and the gRPC health protocol, loaded at runtime. */
export function loadApiPackageDefinition(): protoLoader.PackageDefinition {
  if (!cached) {
    cached = protoLoader.loadSync(
      ['meshauth/v1/audit.proto', 'meshauth/v1/witness.proto', 'grpc/health/v1/health.proto'],
      {
        ...LOADER_OPTIONS,
        includeDirs: [protoDir()],
      },
    );
  }
  return cached;
}

export interface LoadedServices {
  audit: grpc.ServiceClientConstructor;
  witness: grpc.ServiceClientConstructor;
  health: grpc.ServiceClientConstructor;
}

export function loadServices(): LoadedServices {
  const obj = grpc.loadPackageDefinition(loadApiPackageDefinition()) as unknown as {
    meshauth: { v1: { Audit: grpc.ServiceClientConstructor; Witness: grpc.ServiceClientConstructor } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return {
    audit: obj.meshauth.v1.Audit,
    witness: obj.meshauth.v1.Witness,
    health: obj.grpc.health.v1.Health,
  };
}

/**
 * The API's files (meshauth/v1/audit.proto, meshauth/v1/witness.proto, grpc/health/v1/health.proto) as protoc compiled them
 * (proto/api.binpb, written by scripts/gen-proto.sh), one encoded FileDescriptorProto each.
 *
 * Server reflection serves these rather than the descriptors proto-loader derives through
 * protobufjs, which protoc-based clients refuse: protobufjs names a map's entry message after the
 * field ("Counters" instead of "CountersEntry"), merges files by package under invented names and
 * drops proto3 `optional`.
 */
export function apiFileDescriptorProtos(): Buffer[] {
  const set = descriptor.FileDescriptorSet.decode(readFileSync(join(protoDir(), 'api.binpb'))) as unknown as {
    file: object[];
  };
  return set.file.map((f) => Buffer.from(descriptor.FileDescriptorProto.encode(f).finish()));
}

/**
 * What @grpc/reflection reads from a package definition: the encoded file descriptors of each
 * entry. Here one entry carries the protoc-compiled files (see apiFileDescriptorProtos).
 */
export function reflectionPackageDefinition(withWitness = false): protoLoader.PackageDefinition {
  const files = apiFileDescriptorProtos();
  return {
    [AUDIT_SERVICE]: { format: 'protoc', type: {}, fileDescriptorProtos: files },
    ...(withWitness
      ? { [WITNESS_SERVICE]: { format: 'protoc', type: {}, fileDescriptorProtos: files } }
      : {}),
  } as unknown as protoLoader.PackageDefinition;
}
