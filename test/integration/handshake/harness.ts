import type { Svid, TrustBundles } from '../../../src/spiffe/index.js';
import {
  HandshakeClient,
  HandshakeServer,
  type HandshakeClientOptions,
  type HandshakeFailureEvent,
  type HandshakeIdentity,
  type HandshakeServerOptions,
  type ServerAuthResult,
} from '../../../src/auth/handshake/index.js';

/** An identity source over fixed SVIDs; `svidFor` may be rewired to make a side lie. */
export class StaticIdentity implements HandshakeIdentity {
  readonly svids = new Map<string, Svid>();
  constructor(public trust: TrustBundles) {}
  add(svid: Svid, as: string = svid.spiffeId): this {
    this.svids.set(as, svid);
    return this;
  }
  svid(spiffeId: string): Svid | undefined {
    return this.svids.get(spiffeId);
  }
  bundles(): TrustBundles {
    return this.trust;
  }
}

export const NODE_A = 'node-a';
export const NODE_B = 'node-b';

export interface ServerFixture {
  server: HandshakeServer;
  port: number;
  authenticated: ServerAuthResult[];
  failures: HandshakeFailureEvent[];
  /** Resolves with the next failure reported (or the first one already reported). */
  nextFailure(): Promise<HandshakeFailureEvent>;
}

/** A server for node-b on 127.0.0.1:0 whose inventory places 127.0.0.1 on node-a. */
export async function startServer(
  identity: HandshakeIdentity,
  localIds: string[],
  overrides: Partial<HandshakeServerOptions> = {},
): Promise<ServerFixture> {
  const authenticated: ServerAuthResult[] = [];
  const failures: HandshakeFailureEvent[] = [];
  let waiters: Array<(f: HandshakeFailureEvent) => void> = [];
  const server = new HandshakeServer({
    identity,
    nodeName: NODE_B,
    localIdentities: () => localIds,
    nodeForAddress: (a) => (a === '127.0.0.1' || a === '::ffff:127.0.0.1' ? NODE_A : undefined),
    isWorkloadOnNode: () => true,
    maxEntryTtlMs: 3_600_000,
    onAuthenticated: (r) => {
      authenticated.push(r);
    },
    ...overrides,
    onFailure: (f) => {
      failures.push(f);
      const w = waiters;
      waiters = [];
      for (const fn of w) fn(f);
      overrides.onFailure?.(f);
    },
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  let seen = 0;
  return {
    server,
    port,
    authenticated,
    failures,
    nextFailure: () =>
      new Promise((resolve) => {
        if (failures.length > seen) return resolve(failures[seen++]!);
        waiters.push((f) => {
          seen++;
          resolve(f);
        });
      }),
  };
}

export function makeClient(
  identity: HandshakeIdentity,
  overrides: Partial<HandshakeClientOptions> = {},
): HandshakeClient {
  return new HandshakeClient({
    identity,
    nodeName: NODE_A,
    maxEntryTtlMs: 3_600_000,
    timeoutMs: 5000,
    ...overrides,
  });
}

/** Wait until cond() holds (polling), or fail after timeoutMs. */
export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
