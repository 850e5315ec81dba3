import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DaemonConfig } from '../../../src/config/types.js';
import { Datapath, ensurePinDir, type VerdictCounters } from '../../../src/datapath/index.js';
import { Inventory, type InventoryNode } from '../../../src/inventory/index.js';
import { privateKeyPath, startWireguard, type WireguardTunnel } from '../../../src/wireguard/index.js';
import { isPrivileged, type NetnsLab } from '../../helpers/netns.js';
import { captureUnderlay, echo, startEcho, twoNodeLab, type LabNode } from './two-nodes.js';

const OBJECT_PATH = fileURLToPath(new URL('../../../bpf/meshauth.bpf.o', import.meta.url));
const ECHO_PORT = 7778;
const REMOTE_POD_IDENTITY = 1001;
const REMOTE_NODE_ID = 1;

/**
 * Strict mode: on node B the datapath's ingress-semantics tc program sits on the pod-facing veth
 * (tc egress of pod0, where every packet for the pod passes whichever way it came). A packet whose
 * source is node A's pod CIDR but that entered node B through the underlay instead of the
 * WireGuard interface is dropped; the same pods talking through the tunnel pass. The tunnels are
 * started the way the daemon starts them (startWireguard from an inventory), and node B's
 * datapath follows its tunnel's ifindex when the interface has to be recreated.
 */
describe.skipIf(!isPrivileged() || !existsSync(OBJECT_PATH))(
  'strict mode: remote-pod traffic only through WireGuard',
  () => {
    let lab: NetnsLab;
    let a: LabNode;
    let b: LabNode;
    let ta: WireguardTunnel | undefined;
    let tb: WireguardTunnel | undefined;
    let dp: Datapath | undefined;
    const pinDir = `/sys/fs/bpf/meshauth-wgstrict-${randomBytes(4).toString('hex')}`;

    const delta = (before: VerdictCounters, after: VerdictCounters, name: keyof VerdictCounters): bigint =>
      after[name] - before[name];
    /** Route node A's traffic for B's pod over the underlay in clear: a spoofed remote-pod source on B's link. */
    const spoofRoute = (on: boolean): void => {
      lab.exec(a.ns, 'ip', [
        'route',
        on ? 'replace' : 'del',
        `${b.podIp}/32`,
        ...(on ? ['via', b.underlayIp] : []),
        'dev',
        'ul',
      ]);
    };
    /** The echo, for packets expected to be dropped: a short timeout. */
    const tryEcho = (payload: string): string | Error => {
      try {
        return echo(lab, a, b, ECHO_PORT, payload, 4, 3_000);
      } catch (err) {
        return err as Error;
      }
    };
    const invNode = (n: LabNode, key: string | undefined): InventoryNode => ({
      name: n.name,
      address: n.underlayIp,
      podCIDRs: [n.podCidr, n.podCidr6],
      wireguardPublicKey: key,
      handshakePort: undefined,
    });
    const config = (n: LabNode): Pick<DaemonConfig, 'wireguard'> => ({
      wireguard: {
        enabled: true,
        interface: n.wgIf,
        listenPort: 51820,
        address: undefined,
        privateKeyFile: privateKeyPath(n.stateDir),
        userspaceBinary: 'wireguard-go',
      },
    });

    beforeAll(async () => {
      ({ lab, a, b } = twoNodeLab('wgs'));
      await startEcho(lab, b, ECHO_PORT);
      // keys first (as an operator would, from public.key), then the inventory that publishes them
      const inventory = new Inventory({
        nodes: [invNode(a, undefined), invNode(b, undefined)],
        workloads: [],
      });
      const start = (n: LabNode, onIfindexChange?: (i: number) => void): Promise<WireguardTunnel> =>
        startWireguard({
          config: config(n),
          inventory,
          nodeName: n.name,
          stateDir: n.stateDir,
          netns: n.ns,
          resyncIntervalMs: 200,
          ...(onIfindexChange === undefined ? {} : { onIfindexChange }),
        });
      ta = await start(a);
      tb = await start(b, (ifindex) => {
        if (dp !== undefined) dp.setSettings({ ...dp.settings(), wireguardIfindex: ifindex });
      });
      inventory.replace({ nodes: [invNode(a, ta.publicKey), invNode(b, tb.publicKey)], workloads: [] });
      await vi.waitFor(
        async () => {
          expect((await ta?.status())?.peers).toHaveLength(1);
          expect((await tb?.status())?.peers).toHaveLength(1);
          // routes are set after the peers, in the same reconcile: wait for its end on both nodes
          expect(lab.exec(a.ns, 'ip', ['route', 'show', b.podCidr]).trim()).not.toBe('');
          expect(lab.exec(b.ns, 'ip', ['route', 'show', a.podCidr]).trim()).not.toBe('');
        },
        { timeout: 10_000, interval: 100 },
      );

      ensurePinDir(pinDir);
      dp = Datapath.open({
        objectPath: OBJECT_PATH,
        pinDir,
        settings: { signalThrottleMs: 250, wireguardIfindex: tb.ifindex, strictWireguard: true },
      });
      // node B's view: A's pod CIDR belongs to a remote node (B's own pod is left unknown: no policy applies)
      dp.upsertIpcache({ cidr: a.podCidr, identity: REMOTE_POD_IDENTITY, nodeId: REMOTE_NODE_ID });
      dp.upsertIpcache({ cidr: a.podCidr6, identity: REMOTE_POD_IDENTITY, nodeId: REMOTE_NODE_ID });
    });

    afterAll(async () => {
      try {
        dp?.detachTc('pod0', 'egress', { netns: b.ns });
      } catch {
        /* namespace already gone */
      }
      dp?.close();
      if (existsSync(pinDir)) Datapath.removePins(pinDir);
      for (const t of [ta, tb]) await t?.close({ teardown: true }).catch(() => undefined);
      await lab.cleanup();
    });

    it('control: without the datapath a spoofed remote-pod packet on the underlay reaches the pod', async () => {
      // The reply to the spoofed packet goes back through the tunnel: open the WireGuard session
      // first (with the long timeout: a lost first handshake is retried only after 5 s), so the
      // short timeout below measures the underlay path alone.
      expect(echo(lab, a, b, ECHO_PORT, 'warm-up', 4)).toBe('warm-up');
      spoofRoute(true);
      try {
        const payload = `SPOOF-CONTROL-${randomBytes(4).toString('hex')}`;
        const cap = await captureUnderlay(lab, a, () => {
          expect(tryEcho(payload)).toBe(payload);
        });
        // it really travelled in clear over the underlay, not through the tunnel
        expect(cap.pcap.includes(Buffer.from(payload))).toBe(true);
      } finally {
        spoofRoute(false);
      }
    });

    it('strict mode drops the spoofed packet and counts it, while tunnel traffic passes', async () => {
      if (dp === undefined || tb === undefined) throw new Error('not set up');
      dp.attachTc('pod0', 'egress', 'ingress', { netns: b.ns });
      expect(dp.settings()).toMatchObject({ strictWireguard: true, wireguardIfindex: tb.ifindex });

      const c0 = dp.counters();
      spoofRoute(true);
      let spoofed: string | Error;
      try {
        spoofed = tryEcho(`SPOOF-${randomBytes(4).toString('hex')}`);
      } finally {
        spoofRoute(false);
      }
      expect(spoofed).toBeInstanceOf(Error);
      const c1 = dp.counters();
      expect(delta(c0, c1, 'drop_not_via_wireguard')).toBeGreaterThan(0n);

      // same pods, same program, through the tunnel: passes, and nothing more is dropped
      const payload = `TUNNEL-${randomBytes(4).toString('hex')}`;
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
      const c2 = dp.counters();
      expect(delta(c1, c2, 'drop_not_via_wireguard')).toBe(0n);
      expect(delta(c1, c2, 'pass_unknown_identity')).toBeGreaterThan(0n);
      // IPv6 pod traffic through the tunnel passes too
      expect(echo(lab, a, b, ECHO_PORT, 'v6-through-tunnel', 6)).toBe('v6-through-tunnel');
      expect(delta(c2, dp.counters(), 'drop_not_via_wireguard')).toBe(0n);
    });

    it('with strict mode off the same program lets the spoofed packet through', () => {
      if (dp === undefined || tb === undefined) throw new Error('not set up');
      dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: tb.ifindex, strictWireguard: false });
      const c0 = dp.counters();
      spoofRoute(true);
      try {
        const payload = `SPOOF-LAX-${randomBytes(4).toString('hex')}`;
        expect(tryEcho(payload)).toBe(payload);
      } finally {
        spoofRoute(false);
      }
      expect(delta(c0, dp.counters(), 'drop_not_via_wireguard')).toBe(0n);
    });

    it('strict mode follows the tunnel: wireguard-go dies, the interface comes back with a new ifindex, traffic passes', async () => {
      if (dp === undefined || tb === undefined) throw new Error('not set up');
      dp.setSettings({ ...dp.settings(), strictWireguard: true });
      const oldIfindex = tb.ifindex;
      const pid = (await tb.status()).pid;
      expect(pid).toBeGreaterThan(0);
      process.kill(pid as number, 'SIGKILL');
      // the tunnel's resync recreates the interface and hands the new ifindex to the datapath
      await vi.waitFor(
        () => {
          expect(tb?.ifindex).not.toBe(oldIfindex);
          expect(dp?.settings().wireguardIfindex).toBe(tb?.ifindex);
        },
        { timeout: 15_000, interval: 100 },
      );
      const c0 = dp.counters();
      const payload = `TUNNEL-AGAIN-${randomBytes(4).toString('hex')}`;
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
      const c1 = dp.counters();
      expect(delta(c0, c1, 'drop_not_via_wireguard')).toBe(0n);
      // and the underlay is still refused
      spoofRoute(true);
      try {
        expect(tryEcho(`SPOOF-AGAIN-${randomBytes(4).toString('hex')}`)).toBeInstanceOf(Error);
      } finally {
        spoofRoute(false);
      }
      expect(delta(c1, dp.counters(), 'drop_not_via_wireguard')).toBeGreaterThan(0n);
    });
  },
);
