import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../../package-root.js';

/** Shapes as the loader presents them: camelCase fields, int64 as number, bytes as Buffer. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const WORKLOAD_API_SERVICE = 'SpiffeWorkloadAPI';
export const DELEGATED_IDENTITY_SERVICE = 'spire.api.agent.delegatedidentity.v1.DelegatedIdentity';
/** Metadata every Workload API call must carry. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

export const WORKLOAD_PROTO = 'spiffe/workload/workload.proto';
export const DELEGATED_IDENTITY_PROTO = 'spire/api/agent/delegatedidentity/v1/delegatedidentity.proto';

let loaded:
  | {
      workload: grpc.ServiceClientConstructor;
      delegated: grpc.ServiceClientConstructor;
      definition: protoLoader.PackageDefinition;
    }
  | undefined;

function load(): NonNullable<typeof loaded> {
  if (!loaded) {
    const definition = protoLoader.loadSync([WORKLOAD_PROTO, DELEGATED_IDENTITY_PROTO], {
      ...LOADER_OPTIONS,
      includeDirs: [join(packageRoot(), 'proto')],
    });
    const obj = grpc.loadPackageDefinition(definition) as unknown as {
      SpiffeWorkloadAPI: grpc.ServiceClientConstructor;
      spire: {
        api: { agent: { delegatedidentity: { v1: { DelegatedIdentity: grpc.ServiceClientConstructor } } } };
      };
    };
    loaded = {
      workload: obj.SpiffeWorkloadAPI,
      delegated: obj.spire.api.agent.delegatedidentity.v1.DelegatedIdentity,
      definition,
    };
  }
  return loaded;
}

/** Client constructor of the SPIFFE Workload API (service without a proto package). */
export function workloadApiService(): grpc.ServiceClientConstructor {
  return load().workload;
}

/** Client constructor of the SPIRE agent's Delegated Identity API. */
export function delegatedIdentityService(): grpc.ServiceClientConstructor {
  return load().delegated;
}

/** Service definitions (for test servers that speak the same protocol). */
export function serviceDefinitions(): {
  workload: grpc.ServiceDefinition;
  delegated: grpc.ServiceDefinition;
} {
  const l = load();
  return { workload: l.workload.service, delegated: l.delegated.service };
}

// Decoded message shapes (the subset meshauth reads).

export interface X509SvidMessage {
  spiffeId: string;
  x509Svid: Buffer;
  x509SvidKey: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federatedBundles: Record<string, Buffer>;
}

export interface X509BundlesResponseMessage {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

export interface SelectorMessage {
  type: string;
  value: string;
}

export interface SpireX509SvidWithKeyMessage {
  x509Svid: {
    certChain: Buffer[];
    id: { trustDomain: string; path: string } | null;
    expiresAt: number;
    hint: string;
  } | null;
  x509SvidKey: Buffer;
}

export interface SubscribeToX509SvidsResponseMessage {
  x509Svids: SpireX509SvidWithKeyMessage[];
  federatesWith: string[];
}

export interface SubscribeToX509BundlesResponseMessage {
  caCertificates: Record<string, Buffer>;
}
