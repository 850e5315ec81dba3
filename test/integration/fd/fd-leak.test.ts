/**
 * File-descriptor leak check: each handle type is opened and closed several times and the process
 * must hold exactly the descriptors it held before (/proc/self/fd), as cilium/ebpf traces its fds.
 * Handles: the BPF object with its maps (Datapath), the ring-buffer reader, the SQLite audit store
 * and its writer thread, the TLS handshake server with a client handshake through it, and the
 * WireGuard tunnel on wireguard-go (its UAPI socket probes, the `ip`/`wg` child processes and
 * their pipes, the key files) through set-up, a peer published, the peer's key changed, the node's
 * own key changed (a new key file each round), status, and teardown.
 */
import { readdirSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore, AuditWriter } from '../../../src/audit/index.js';
import { Datapath } from '../../../src/datapath/index.js';
import { Inventory, type InventoryData } from '../../../src/inventory/index.js';
import {
  createExec,
  generatePrivateKey,
  privateKeyPath,
  publicKeyFromPrivate,
  startWireguard,
} from '../../../src/wireguard/index.js';
import { isPrivileged } from '../../helpers/netns.js';
import { twoNodeLab } from '../wireguard/two-nodes.js';
import { OBJECT_PATH, randomPinDir } from '../datapath/helpers.js';
import { makeClient, NODE_B, startServer, StaticIdentity } from '../handshake/harness.js';
import { newPki } from '../handshake/pki.js';

const ROUNDS = 5;
const fds = (): number => readdirSync('/proc/self/fd').length;

/** Runs `cycle` once to warm up (lazy libraries, thread pools), then ROUNDS times counting fds. */
async function expectNoLeak(cycle: () => Promise<void> | void): Promise<void> {
  await cycle();
  const before = fds();
  for (let i = 0; i < ROUNDS; i++) await cycle();
  // Closed sockets and threads release their descriptors asynchronously: settle on the count.
  await expect.poll(fds, { timeout: 5000 }).toBe(before);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-fd-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('file descriptors of every handle type are released on close', () => {
  it.skipIf(!isPrivileged())('BPF object and maps (Datapath.open / close)', async () => {
    const pinDir = randomPinDir();
    try {
      await expectNoLeak(() => {
        const dp = Datapath.open({ objectPath: OBJECT_PATH, pinDir });
        dp.counters();
        dp.close();
      });
    } finally {
      Datapath.removePins(pinDir);
      rmSync(pinDir, { recursive: true, force: true });
    }
  });

  it.skipIf(!isPrivileged())('ring-buffer reader (signal source run / close)', async () => {
    const pinDir = randomPinDir();
    const dp = Datapath.open({ objectPath: OBJECT_PATH, pinDir });
    try {
      await expectNoLeak(async () => {
        const src = dp.signals();
        const running = src.run(() => {});
        await new Promise((r) => setTimeout(r, 20));
        src.close();
        await running;
      });
    } finally {
      dp.close();
      Datapath.removePins(pinDir);
      rmSync(pinDir, { recursive: true, force: true });
    }
  });

  it('SQLite audit store and its writer thread', async () => {
    let n = 0;
    await expectNoLeak(async () => {
      const store = AuditStore.open({ path: join(dir, `audit-${n++}.db`) });
      const writer = new AuditWriter(store, { thread: true });
      writer.record({ type: 'reauth' });
      await writer.drain();
      await writer.close();
      store.close();
    });
  });

  it('TLS handshake server, with a handshake through it', async () => {
    const pki = await newPki('demo.local');
    const web = await pki.issue('spiffe://demo.local/ns/demo/sa/web', { ttlMs: 3_600_000 });
    const db = await pki.issue('spiffe://demo.local/ns/demo/sa/db', { ttlMs: 3_600_000 });
    await expectNoLeak(async () => {
      const s = await startServer(new StaticIdentity(pki.bundles).add(db), [db.spiffeId]);
      const client = makeClient(new StaticIdentity(pki.bundles).add(web));
      await client.authenticate({
        peerNode: NODE_B,
        peerAddress: '127.0.0.1',
        peerPort: s.port,
        localId: web.spiffeId,
        remoteId: db.spiffeId,
      });
      await s.server.close();
    });
  });

  it.skipIf(!isPrivileged())(
    'WireGuard tunnel on wireguard-go: start, peer key published and changed, own key changed, teardown',
    async () => {
      const { lab, a, b } = twoNodeLab('wgfd');
      const data = (own: string, peer: string): InventoryData => ({
        nodes: [
          {
            name: a.name,
            address: a.underlayIp,
            podCIDRs: [a.podCidr],
            wireguardPublicKey: own,
            handshakePort: undefined,
          },
          {
            name: b.name,
            address: b.underlayIp,
            podCIDRs: [b.podCidr],
            wireguardPublicKey: peer,
            handshakePort: undefined,
          },
        ],
        workloads: [],
      });
      const keyFile = privateKeyPath(a.stateDir);
      mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
      try {
        await expectNoLeak(async () => {
          // The node's own key changes every round: a new key file before each start.
          const own = generatePrivateKey();
          writeFileSync(keyFile, `${own}\n`, { mode: 0o600 });
          const inventory = new Inventory(
            data(publicKeyFromPrivate(own), publicKeyFromPrivate(generatePrivateKey())),
          );
          const t = await startWireguard({
            config: {
              wireguard: {
                enabled: true,
                interface: a.wgIf,
                listenPort: 51820,
                address: '10.99.0.1/32',
                privateKeyFile: keyFile,
                userspaceBinary: 'wireguard-go',
              },
            },
            inventory,
            nodeName: a.name,
            stateDir: a.stateDir,
            netns: a.ns,
            exec: createExec({ netns: a.ns }),
            resyncIntervalMs: 0,
            mode: 'userspace',
          });
          expect(t.publicKey).toBe(publicKeyFromPrivate(own));
          expect((await t.status()).peers).toHaveLength(1);
          // The peer's key changes: the old peer goes, the new one comes.
          const peerKey = publicKeyFromPrivate(generatePrivateKey());
          inventory.replace(data(t.publicKey, peerKey));
          await t.reconcile();
          expect((await t.status()).peers.map((p) => p.publicKey)).toEqual([peerKey]);
          await t.close({ teardown: true });
          await t.close({ teardown: true });
        });
      } finally {
        await lab.cleanup();
      }
    },
    120_000,
  );
});
