import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../package-root.js';

/** Options shared by server and client so both see the same shapes. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const AUDIT_SERVICE = 'meshauth.v1.Audit';

/** Directory holding the .proto files (works from the source tree and from dist/). */
export function protoDir(): string {
  return join(packageRoot(), 'proto');
}

let cached: protoLoader.PackageDefinition | undefined;

/** The meshauth API and the gRPC health protocol, loaded at runtime. */
export function loadApiPackageDefinition(): protoLoader.PackageDefinition {
  if (!cached) {
    cached = protoLoader.loadSync(['meshauth/v1/audit.proto', 'grpc/health/v1/health.proto'], {
      ...LOADER_OPTIONS,
      includeDirs: [protoDir()],
    });
  }
  return cached;
}

export interface LoadedServices {
  audit: grpc.ServiceClientConstructor;
  health: grpc.ServiceClientConstructor;
}

export function loadServices(): LoadedServices {
  const obj = grpc.loadPackageDefinition(loadApiPackageDefinition()) as unknown as {
    meshauth: { v1: { Audit: grpc.ServiceClientConstructor } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return { audit: obj.meshauth.v1.Audit, health: obj.grpc.health.v1.Health };
}
