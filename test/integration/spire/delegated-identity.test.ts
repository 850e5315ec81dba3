import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSpireDelegatedSource,
  createWorkloadApiSource,
  type IdentityEvent,
  type SpireDelegatedSource,
} from '../../../src/identity/index.js';
import { keyMatchesLeaf, verifyX509Svid } from '../../../src/spiffe/index.js';
import { DelegatedIdentityClient, WorkloadApiClient } from '../../../src/spiffe/workload/index.js';
import { SpireLab, spireBinDir } from '../../helpers/spire.js';

const bin = spireBinDir();
if (!bin) {
  console.warn(
    'SPIRE integration tests skipped: spire-server/spire-agent not built (run: bash scripts/build-spire.sh)',
  );
}

const TD = 'test.local';
const MESHAUTHD = `spiffe://${TD}/meshauthd`;
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;
const uid = process.getuid?.() ?? 0;

/** Selectors of the test's "inventory": workloads of this node. */
const inventory = new Map<string, string[]>([
  [id('web'), ['k8s:ns:demo', 'k8s:sa:web']],
  [id('client'), ['k8s:ns:demo', 'k8s:sa:client']],
  [id('rotor'), ['k8s:ns:demo', 'k8s:sa:rotor']],
  [id('ghost'), ['k8s:ns:demo', 'k8s:sa:ghost']],
  [id('api'), ['k8s:ns:demo', 'k8s:sa:api']],
  [id('db'), ['k8s:ns:demo', 'k8s:sa:db']],
]);

class Recorder {
  readonly events: IdentityEvent[] = [];
  private waiters: Array<{ pred: (e: IdentityEvent) => boolean; resolve: (e: IdentityEvent) => void }> = [];

  push = (e: IdentityEvent): void => {
    this.events.push(e);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(e)) return true;
      w.resolve(e);
      return false;
    });
  };

  /** Next event (from now on, or already recorded since `since`) matching pred. */
  wait(
    pred: (e: IdentityEvent) => boolean,
    timeoutMs: number,
    since = this.events.length,
  ): Promise<IdentityEvent> {
    const hit = this.events.slice(since).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no matching identity event within ${timeoutMs} ms; saw ${JSON.stringify(this.events.slice(since).map((e) => e.type + ('spiffeId' in e ? ` ${e.spiffeId}` : '') + ('state' in e ? ` ${e.state}` : '')))}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(t);
          resolve(e);
        },
      });
    });
  }
}

describe.skipIf(!bin)(
  'SPIRE Delegated Identity API and Workload API against real spire-server/agent v1.15.3',
  () => {
    let lab: SpireLab;
    let source: SpireDelegatedSource;
    const rec = new Recorder();
    const entries = new Map<string, string>();
    /** Streams of the main source that logged a lost stream (one line per failed (re)connect). */
    const streamRetries: string[] = [];

    beforeAll(async () => {
      lab = await SpireLab.start(bin!, {
        trustDomain: TD,
        authorizedDelegates: [MESHAUTHD],
        nodes: ['node-a', 'node-b'],
      });
      // meshauthd (this test process) is attested by uid through the unix workload attestor.
      entries.set(MESHAUTHD, await lab.createEntry({ spiffeId: MESHAUTHD, selectors: [`unix:uid:${uid}`] }));
      await lab.createEntry({
        spiffeId: MESHAUTHD,
        selectors: [`unix:uid:${uid}`],
        parentId: lab.agent('node-b').nodeId,
      });
      // A workload of the other node: node-a's agent never has its entry.
      await lab.createEntry({
        spiffeId: id('db'),
        selectors: ['k8s:ns:demo', 'k8s:sa:db'],
        parentId: lab.agent('node-b').nodeId,
      });
      entries.set(
        id('web'),
        await lab.createEntry({ spiffeId: id('web'), selectors: ['k8s:ns:demo', 'k8s:sa:web'] }),
      );
      entries.set(
        id('client'),
        await lab.createEntry({ spiffeId: id('client'), selectors: ['k8s:ns:demo', 'k8s:sa:client'] }),
      );
      entries.set(
        id('api'),
        await lab.createEntry({ spiffeId: id('api'), selectors: ['k8s:ns:demo', 'k8s:sa:api'] }),
      );
      entries.set(
        id('rotor'),
        await lab.createEntry({
          spiffeId: id('rotor'),
          selectors: ['k8s:ns:demo', 'k8s:sa:rotor'],
          x509SvidTtlS: 30,
        }),
      );
    }, 120_000);

    afterAll(async () => {
      await source?.close();
      await lab?.cleanup();
    });

    it('fetches the SVID of a workload on this node through the Delegated Identity API, verified against the bundle', async () => {
      source = createSpireDelegatedSource({
        adminSocket: lab.adminSocket,
        workloads: (spiffeId) => inventory.get(spiffeId),
        retry: { baseMs: 100, maxMs: 1_000 },
        readyTimeoutMs: 30_000,
        logger: pino(
          { level: 'warn' },
          {
            write: (line: string) => {
              const l = JSON.parse(line) as { event?: string; stream?: string };
              if (l.event === 'stream_retry') streamRetries.push(l.stream ?? '');
            },
          },
        ),
      });
      source.subscribe(rec.push);
      source.setWanted([id('web')]);
      await source.ready();

      const svid = source.svid(id('web'));
      expect(svid).toBeDefined();
      expect(svid!.spiffeId).toBe(id('web'));
      const verified = verifyX509Svid(svid!.chainDer, source.bundles());
      expect(verified.spiffeId.toString()).toBe(id('web'));
      expect(keyMatchesLeaf(svid!.key, svid!.leaf)).toBe(true);
      expect([...source.bundles().keys()]).toEqual([TD]);
      // Only the wanted workload is subscribed: api's entry exists but its key never reaches us.
      expect(source.subscriptions).toBe(1);
      expect(source.svid(id('api'))).toBeUndefined();
      expect(rec.events.some((e) => e.type === 'svid-updated' && e.spiffeId === id('web'))).toBe(true);
      expect(rec.events.some((e) => e.type === 'bundles-updated')).toBe(true);
    });

    it('reports a selector set without a registration entry as no-identity, without disturbing others', async () => {
      const since = rec.events.length;
      source.setWanted([id('web'), id('ghost')]);
      const e = await rec.wait(
        (x) => x.type === 'source-state' && x.state === 'no-identity' && x.detail.includes(id('ghost')),
        20_000,
        since,
      );
      expect(e.type).toBe('source-state');
      expect(source.state(id('ghost'))).toBe('no-identity');
      expect(source.svid(id('ghost'))).toBeUndefined();
      expect(source.svid(id('web'))).toBeDefined();
      await source.ready();
    });

    it('rotates a short-lived SVID: svid-updated events with new serials before expiry', async () => {
      const since = rec.events.length;
      source.setWanted([id('web'), id('ghost'), id('rotor')]);
      const first = await rec.wait(
        (x) => x.type === 'svid-updated' && x.spiffeId === id('rotor'),
        20_000,
        since,
      );
      const firstSvid = first.type === 'svid-updated' ? first.svid : undefined;
      expect(firstSvid).toBeDefined();
      // Short-lived: at most the entry's 30 s TTL left (SPIRE back-dates notBefore, not notAfter).
      expect(firstSvid!.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(31_000);
      const at = rec.events.length;
      const second = await rec.wait(
        (x) => x.type === 'svid-updated' && x.spiffeId === id('rotor'),
        35_000,
        at,
      );
      if (second.type !== 'svid-updated') throw new Error('unreachable');
      expect(second.svid.leaf.serialNumber).not.toBe(firstSvid!.leaf.serialNumber);
      expect(second.previousNotAfter?.getTime()).toBe(firstSvid!.notAfter.getTime());
      expect(second.svid.notAfter.getTime()).toBeGreaterThan(firstSvid!.notAfter.getTime());
      // Renewed before the previous one expired.
      expect(Date.now()).toBeLessThan(firstSvid!.notAfter.getTime());
      expect(source.svid(id('rotor'))?.leaf.serialNumber).toBe(second.svid.leaf.serialNumber);
    }, 60_000);

    it('drops an SVID when its registration entry is deleted', async () => {
      const since = rec.events.length;
      await lab.deleteEntry(entries.get(id('rotor'))!);
      const e = await rec.wait((x) => x.type === 'svid-removed' && x.spiffeId === id('rotor'), 20_000, since);
      expect(e.type === 'svid-removed' && e.reason).toBe('no-registration-entry');
      expect(source.svid(id('rotor'))).toBeUndefined();
      expect(source.state(id('rotor'))).toBe('no-identity');
    });

    it('closes the subscription and drops the key of a workload that leaves the node', async () => {
      let since = rec.events.length;
      source.setWanted([id('web'), id('api')]);
      await rec.wait((x) => x.type === 'svid-updated' && x.spiffeId === id('api'), 20_000, since);
      expect(source.svid(id('api'))).toBeDefined();
      expect(source.subscriptions).toBe(2);

      since = rec.events.length;
      source.setWanted([id('web')]);
      const e = await rec.wait((x) => x.type === 'svid-removed' && x.spiffeId === id('api'), 1_000, since);
      expect(e.type === 'svid-removed' && e.reason).toBe('workload no longer on this node');
      expect(source.subscriptions).toBe(1);
      expect(source.svid(id('api'))).toBeUndefined();
      expect(source.state(id('api'))).toBeUndefined();
      expect(source.state(id('ghost'))).toBeUndefined();
      expect(source.svid(id('web'))).toBeDefined();
    });

    it('survives a SPIRE agent restart: keeps serving held SVIDs, reconnects, serves new workloads', async () => {
      const held = source.svid(id('web'));
      expect(held).toBeDefined();
      const since = rec.events.length;
      const retriesBefore = streamRetries.length;
      await lab.stopAgent();
      expect(lab.agentRunning()).toBe(false);
      await rec.wait((x) => x.type === 'source-state' && x.state === 'disconnected', 15_000, since);
      // The agent stays down for a while: reconnect attempts fail (settle point: the bundle and
      // the SVID stream each lost and failed to reconnect several times), the held SVID keeps serving.
      await expect
        .poll(() => streamRetries.length - retriesBefore, { timeout: 15_000 })
        .toBeGreaterThanOrEqual(8);
      expect(source.svid(id('web'))?.leaf.serialNumber).toBe(held!.leaf.serialNumber);
      expect(rec.events.slice(since).some((e) => e.type === 'svid-removed')).toBe(false);

      const down = rec.events.length;
      await lab.startAgent();
      await rec.wait((x) => x.type === 'source-state' && x.state === 'connected', 30_000, down);
      // The existing subscription is live again: the restarted agent's fresh SVID for web arrives.
      const renewed = await rec.wait(
        (x) => x.type === 'svid-updated' && x.spiffeId === id('web'),
        30_000,
        down,
      );
      expect(renewed.type === 'svid-updated' && renewed.svid.leaf.serialNumber).not.toBe(
        held!.leaf.serialNumber,
      );
      // A workload that arrives after the restart gets its SVID.
      source.setWanted([id('web'), id('client')]);
      await rec.wait((x) => x.type === 'svid-updated' && x.spiffeId === id('client'), 30_000, down);
      expect(source.svid(id('client'))).toBeDefined();
      expect(source.svid(id('web'))).toBeDefined();
      await source.ready();
    }, 90_000);

    it("gets no identity for a workload registered on another node's agent; that node's agent serves it", async () => {
      const since = rec.events.length;
      source.setWanted([id('web'), id('client'), id('db')]);
      await rec.wait(
        (x) => x.type === 'source-state' && x.state === 'no-identity' && x.detail.includes(id('db')),
        20_000,
        since,
      );
      expect(source.svid(id('db'))).toBeUndefined();
      const onB = createSpireDelegatedSource({
        adminSocket: lab.agent('node-b').adminSocket,
        workloads: (spiffeId) => inventory.get(spiffeId),
        retry: { baseMs: 100, maxMs: 1_000 },
      });
      try {
        onB.setWanted([id('db'), id('web')]);
        await onB.ready();
        expect(onB.svid(id('db'))?.spiffeId).toBe(id('db'));
        expect(onB.svid(id('web'))).toBeUndefined();
        expect(onB.state(id('web'))).toBe('no-identity');
      } finally {
        await onB.close();
      }
      source.setWanted([id('web'), id('client')]);
    });

    it('Delegated Identity client: selector subscription returns only the matching entry; bundles stream', async () => {
      const client = new DelegatedIdentityClient({ adminSocket: `unix://${lab.adminSocket}` });
      try {
        const update = await new Promise<import('../../../src/spiffe/workload/index.js').DelegatedX509Update>(
          (resolve, reject) => {
            const w = client.subscribeX509Svids(['k8s:ns:demo', 'k8s:sa:api'], {
              onUpdate: (u) => {
                w.close();
                resolve(u);
              },
              onState: (s) => {
                if (s.state !== 'connected') reject(s.error);
              },
            });
          },
        );
        expect(update.svids.map((s) => s.spiffeId)).toEqual([id('api')]);
        expect(update.rejected).toEqual([]);
        const bundles = await new Promise<import('../../../src/spiffe/workload/index.js').X509BundlesUpdate>(
          (resolve) => {
            const w = client.subscribeX509Bundles({
              onUpdate: (u) => {
                w.close();
                resolve(u);
              },
            });
          },
        );
        verifyX509Svid(update.svids[0]!.svid.chainDer, bundles.bundles);
      } finally {
        client.close();
      }
    });

    it('Workload API: this process gets its own SVID (workload.spiffe.io header) and bundles', async () => {
      const client = new WorkloadApiClient({
        env: { SPIFFE_ENDPOINT_SOCKET: `unix://${lab.workloadSocket}` },
      });
      try {
        const ctx = await client.fetchX509Context();
        expect(ctx.svids.map((s) => s.spiffeId)).toEqual([MESHAUTHD]);
        verifyX509Svid(ctx.svids[0]!.svid.chainDer, ctx.bundles);
        const b = await client.fetchX509Bundles();
        expect([...b.bundles.keys()]).toEqual([TD]);
      } finally {
        client.close();
      }

      const wl = createWorkloadApiSource({
        address: lab.workloadSocket,
        retry: { baseMs: 100, maxMs: 1_000 },
      });
      const events: IdentityEvent[] = [];
      wl.subscribe((e) => events.push(e));
      try {
        wl.setWanted([MESHAUTHD, id('web')]);
        await wl.ready();
        expect(wl.svid(MESHAUTHD)).toBeDefined();
        expect(wl.svid(id('web'))).toBeUndefined();
        expect(
          events.some(
            (e) => e.type === 'source-state' && e.state === 'no-identity' && e.detail.includes(id('web')),
          ),
        ).toBe(true);
      } finally {
        await wl.close();
      }
    });
  },
);
