import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { DaemonConfig } from '../config/index.js';
import { MeshauthError } from '../errors.js';
import {
  DevCa,
  DevCaSource,
  FilesSource,
  createSpireDelegatedSource,
  createWorkloadApiSource,
  type IdentitySource,
} from '../identity/index.js';
import type { Inventory } from '../inventory/index.js';

export class IdentitySourceError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_IDENTITY_SOURCE', message, options);
  }
}

/** The identity source the configuration asks for. */
export async function createIdentitySource(
  config: DaemonConfig,
  inventory: Inventory,
  logger: Logger,
): Promise<IdentitySource> {
  const log = logger.child({ component: 'identity' });
  const id = config.identity;
  switch (id.source) {
    case 'dev-ca': {
      const dc = id.devCa;
      let ca: DevCa;
      if (!existsSync(dc.caCert) && !existsSync(dc.caKey)) {
        // Created on first use; other nodes need the same CA (copy the directory or point caCert/caKey at it).
        ({ ca } = await DevCa.init({ dir: dirname(dc.caCert), trustDomain: dc.trustDomain }));
        log.warn(
          { event: 'dev_ca_created', ca_cert: dc.caCert },
          'created a new development CA (not for production)',
        );
      } else {
        ca = await DevCa.load({ caCert: dc.caCert, caKey: dc.caKey });
      }
      if (ca.trustDomain !== dc.trustDomain) {
        throw new IdentitySourceError(
          `identity: development CA ${dc.caCert} is for trust domain "${ca.trustDomain}", config says "${dc.trustDomain}"`,
        );
      }
      log.warn(
        { event: 'dev_ca_in_use', trust_domain: ca.trustDomain },
        'identities come from the embedded development CA (not for production)',
      );
      return new DevCaSource(ca, { svidTtlMs: dc.svidTtlMs, logger: log });
    }
    case 'files': {
      if (!id.files)
        throw new IdentitySourceError('identity: source "files" needs identity.files (bundle and svids)');
      return new FilesSource({ bundle: id.files.bundle, svids: id.files.svids, logger: log });
    }
    case 'spire-delegated':
      // One subscription per workload of this node, by the selectors the inventory lists for it.
      return createSpireDelegatedSource({
        adminSocket: id.spire.adminSocket,
        maxMessageBytes: id.spire.maxMessageBytes,
        logger: log,
        workloads: (spiffeId) =>
          inventory.workloadsWithSpiffeId(spiffeId).find((w) => w.node === config.node)?.selectors,
      });
    case 'workload-api':
      return createWorkloadApiSource({ address: id.workloadApi.address || undefined, logger: log });
  }
}
