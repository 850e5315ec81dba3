import { chmodSync, readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivileged, type NetnsLab } from '../../helpers/netns.js';
import {
  WireguardDevice,
  WireguardError,
  WireguardManager,
  createExec,
  generatePrivateKey,
  privateKeyPath,
  publicKeyPath,
  publicKeyFromPrivate,
  type Exec,
  type WireguardPeer,
} from '../../../src/wireguard/index.js';
import {
  captureUnderlay,
  echo,
  peerOf,
  routeOverUnderlay,
  startEcho,
  twoNodeLab,
  type LabNode,
} from './two-nodes.js';

const ECHO_PORT = 7777;
const tunnelAddress = (node: LabNode): string => `10.99.0.${node.underlayIp.split('.')[3]}/32`;

describe.skipIf(!isPrivileged())('WireGuard tunnel between two node namespaces (wireguard-go)', () => {
  let lab: NetnsLab;
  let a: LabNode;
  let b: LabNode;
  let ma: WireguardManager | undefined;
  let mb: WireguardManager | undefined;

  // every command the managers run, through the real executor
  const commands: string[][] = [];
  const recording = (ns: string): Exec => {
    const real = createExec({ netns: ns });
    return (file, args) => {
      commands.push([file, ...args]);
      return real(file, args);
    };
  };
  const open = (node: LabNode): Promise<WireguardManager> =>
    WireguardManager.open({
      stateDir: node.stateDir,
      interfaceName: node.wgIf,
      netns: node.ns,
      exec: recording(node.ns),
      address: tunnelAddress(node),
      mtu: 1400,
    });
  /** Commands that change state (anything but show/dump/list). */
  const writes = (cmds: string[][]): string[][] =>
    cmds.filter((c) => !(c.includes('show') || (c[0] === 'ip' && c.includes('-j'))));

  beforeAll(async () => {
    ({ lab, a, b } = twoNodeLab());
    await startEcho(lab, b, ECHO_PORT);
  });

  afterAll(async () => {
    for (const m of [ma, mb]) await m?.destroy().catch(() => undefined);
    await lab.cleanup();
  });

  it('control: without the tunnel the pod-to-pod payload is readable on the underlay', async () => {
    routeOverUnderlay(lab, a, b);
    const payload = `CLEARTEXT-${Math.random().toString(36).slice(2)}`;
    const cap = await captureUnderlay(lab, a, () => {
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
    });
    expect(cap.pcap.includes(Buffer.from(payload))).toBe(true);
    expect(cap.text).toContain(`${a.podIp}.`);
  });

  it('creates the interface with wireguard-go, a 0600 key file, and the configured port', async () => {
    ma = await open(a);
    mb = await open(b);
    expect(ma.mode).toBe('userspace');
    expect(ma.created).toBe(true);
    expect(statSync(privateKeyPath(a.stateDir)).mode & 0o777).toBe(0o600);
    expect(statSync(privateKeyPath(a.stateDir).replace(/private\.key$/, '')).mode & 0o777).toBe(0o700);
    const st = await ma.status();
    expect(st.publicKey).toBe(ma.publicKey);
    expect(st.listenPort).toBe(51820);
    expect(st.up).toBe(true);
    expect(st.pid).toBeGreaterThan(0);
    expect(st.peers).toEqual([]);
    expect(ma.publicKey).not.toBe(mb.publicKey);
    const linkInfo = lab.exec(a.ns, 'ip', ['addr', 'show', 'dev', a.wgIf]);
    expect(linkInfo).toContain(`inet ${tunnelAddress(a)}`);
    expect(linkInfo).toContain('mtu 1400');
    expect(readFileSync(publicKeyPath(a.stateDir), 'utf8').trim()).toBe(ma.publicKey);
    // the private key went to wg as a file path, never as an argument
    const privateKey = readFileSync(privateKeyPath(a.stateDir), 'utf8').trim();
    expect(commands.some((c) => c.some((arg) => arg.includes(privateKey)))).toBe(false);
    expect(commands).toContainEqual(['wg', 'set', a.wgIf, 'private-key', privateKeyPath(a.stateDir)]);
  });

  it('reconcile adds peers and routes; pod-to-pod payload crosses the underlay only encrypted', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    const ra = await ma.reconcile([peerOf(b, mb.publicKey)]);
    const rb = await mb.reconcile([peerOf(a, ma.publicKey)]);
    expect(ra.changed).toBe(true);
    expect(ra.plan.peers.map((p) => p.kind)).toEqual(['add']);
    expect(ra.plan.routes).toEqual([
      { kind: 'add', cidr: b.podCidr },
      { kind: 'add', cidr: b.podCidr6 },
    ]);
    expect(rb.changed).toBe(true);
    expect(writes(commands)).toContainEqual(
      expect.arrayContaining(['wg', 'set', a.wgIf, 'peer', mb.publicKey]),
    );
    // the control route via the underlay was replaced by the tunnel route
    expect(lab.exec(a.ns, 'ip', ['route', 'show', b.podCidr])).toContain(`dev ${a.wgIf}`);
    expect(lab.exec(a.ns, 'ip', ['-6', 'route', 'show', b.podCidr6])).toContain(`dev ${a.wgIf}`);

    const payload = `SECRET-${Math.random().toString(36).slice(2)}`;
    const payload6 = `SECRET6-${Math.random().toString(36).slice(2)}`;
    const cap = await captureUnderlay(lab, a, () => {
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
      expect(echo(lab, a, b, ECHO_PORT, payload6, 6)).toBe(payload6);
    });
    expect(cap.pcap.includes(Buffer.from(payload))).toBe(false);
    expect(cap.pcap.includes(Buffer.from(payload6))).toBe(false);
    expect(cap.text).not.toContain('fd77:');
    // what crossed was WireGuard UDP between the node addresses, not the pods' TCP
    expect(cap.text).toMatch(
      new RegExp(
        `${a.underlayIp.replace(/\./g, '\\.')}\\.51820 > ${b.underlayIp.replace(/\./g, '\\.')}\\.51820: UDP`,
      ),
    );
    expect(cap.text).not.toContain(`${a.podIp}.`);

    const st = await ma.status();
    expect(st.peers).toHaveLength(1);
    const peer = st.peers[0];
    expect(peer?.name).toBe(b.name);
    expect(peer?.publicKey).toBe(mb.publicKey);
    expect(peer?.endpoint).toBe(`${b.underlayIp}:51820`);
    expect(peer?.allowedIPs).toEqual([b.podCidr, b.podCidr6]);
    expect(peer?.latestHandshakeMs).toBeGreaterThan(Date.now() - 60_000);
    expect(peer?.rxBytes).toBeGreaterThan(0);
    expect(peer?.txBytes).toBeGreaterThan(0);
  });

  it('reconcile is idempotent: a second run plans and changes nothing', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    commands.length = 0;
    const again = await ma.reconcile([peerOf(b, mb.publicKey)]);
    expect(again.changed).toBe(false);
    expect(again.plan).toEqual({ peers: [], routes: [] });
    expect(commands.length).toBeGreaterThan(0);
    expect(writes(commands)).toEqual([]);
  });

  it('reconcile removes a stale peer and its route', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    const stale: WireguardPeer = {
      name: 'node-gone',
      publicKey: publicKeyFromPrivate(generatePrivateKey()),
      endpoint: '192.168.77.9:51820',
      allowedIPs: ['10.77.9.0/24'],
      persistentKeepaliveSec: 25,
    };
    await ma.reconcile([peerOf(b, mb.publicKey), stale]);
    let st = await ma.status();
    expect(st.peers.map((p) => p.publicKey).sort()).toEqual([mb.publicKey, stale.publicKey].sort());
    expect(st.peers.find((p) => p.publicKey === stale.publicKey)?.persistentKeepaliveSec).toBe(25);
    expect(lab.exec(a.ns, 'ip', ['route', 'show', '10.77.9.0/24'])).toContain(`dev ${a.wgIf}`);

    const res = await ma.reconcile([peerOf(b, mb.publicKey)]);
    expect(res.plan.peers).toEqual([{ kind: 'remove', publicKey: stale.publicKey }]);
    expect(res.plan.routes).toEqual([{ kind: 'remove', cidr: '10.77.9.0/24' }]);
    st = await ma.status();
    expect(st.peers.map((p) => p.publicKey)).toEqual([mb.publicKey]);
    expect(lab.exec(a.ns, 'ip', ['route', 'show', '10.77.9.0/24']).trim()).toBe('');
    // the live peer still works
    expect(echo(lab, a, b, ECHO_PORT, 'still-there')).toBe('still-there');
  });

  it('restart: close() leaves the tunnel up; a new manager adopts it with the same key, no new interface', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    const before = await ma.status();
    await ma.close();
    await ma.close(); // idempotent
    await expect(ma.status()).rejects.toMatchObject({ code: 'MESHAUTH_ERR_CLOSED' });
    // traffic continues while nothing manages the interface
    expect(echo(lab, a, b, ECHO_PORT, 'while-closed')).toBe('while-closed');

    commands.length = 0;
    ma = await open(a);
    expect(ma.created).toBe(false);
    // adopted as is: no wireguard-go start, no key, port or link change
    expect(writes(commands)).toEqual([]);
    expect(ma.publicKey).toBe(before.publicKey);
    const after = await ma.status();
    expect(after.ifindex).toBe(before.ifindex);
    expect(after.pid).toBe(before.pid);
    expect(after.publicKey).toBe(before.publicKey);
    const res = await ma.reconcile([peerOf(b, mb.publicKey)]);
    expect(res.changed).toBe(false);
    const payload = `AFTER-RESTART-${Math.random().toString(36).slice(2)}`;
    const cap = await captureUnderlay(lab, a, () => {
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
    });
    expect(cap.pcap.includes(Buffer.from(payload))).toBe(false);
    expect(lab.exec(a.ns, 'ip', ['-o', 'link', 'show', 'type', 'tun']).trim().split('\n')).toHaveLength(1);
  });

  it('wireguard-go killed: the next open starts a new one with the same key and the tunnel comes back', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    const pid = ma.pid();
    expect(pid).toBeGreaterThan(0);
    await ma.close();
    process.kill(pid as number, 'SIGKILL');
    const { existsSync } = await import('node:fs');
    for (let i = 0; i < 50 && lab.exec(a.ns, 'ip', ['link', 'show']).includes(a.wgIf); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(lab.exec(a.ns, 'ip', ['link', 'show']).includes(a.wgIf)).toBe(false);
    // SIGKILL leaves the UAPI socket file behind
    expect(existsSync(`/var/run/wireguard/${a.wgIf}.sock`)).toBe(true);

    const oldKey = mb.publicKey;
    ma = await open(a);
    expect(ma.created).toBe(true);
    expect(ma.pid()).not.toBe(pid);
    const res = await ma.reconcile([peerOf(b, oldKey)]);
    expect(res.plan.peers.map((p) => p.kind)).toEqual(['add']);
    expect((await mb.status()).peers[0]?.publicKey).toBe(ma.publicKey); // B needed no change: same key
    expect(echo(lab, a, b, ECHO_PORT, 'back-again')).toBe('back-again');
  });

  it('reconcile brings back an interface that vanished while the manager was open', async () => {
    if (ma === undefined || mb === undefined) throw new Error('managers not open');
    const pid = mb.pid();
    const ifindex = mb.ifindex;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid as number, 'SIGKILL');
    for (let i = 0; i < 50 && lab.exec(b.ns, 'ip', ['link', 'show']).includes(b.wgIf); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await expect(mb.status()).rejects.toBeInstanceOf(WireguardError);
    const res = await mb.reconcile([peerOf(a, ma.publicKey)]);
    expect(res.changed).toBe(true);
    expect(mb.created).toBe(true);
    expect(mb.pid()).not.toBe(pid);
    expect(mb.ifindex).not.toBe(ifindex);
    const st = await mb.status();
    expect(st.publicKey).toBe(mb.publicKey);
    expect(st.peers.map((p) => p.publicKey)).toEqual([ma.publicKey]);
    expect(echo(lab, a, b, ECHO_PORT, 'healed')).toBe('healed');
  });

  it('refuses a key file readable by others, before touching any interface', async () => {
    const { mkdtempSync, mkdirSync, copyFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-wg-perm-'));
    try {
      mkdirSync(join(dir, 'wireguard'), { mode: 0o700 });
      copyFileSync(privateKeyPath(a.stateDir), privateKeyPath(dir));
      chmodSync(privateKeyPath(dir), 0o644);
      const err = await WireguardManager.open({
        stateDir: dir,
        interfaceName: `${a.wgIf}x`,
        netns: a.ns,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireguardError);
      expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE');
      expect((err as WireguardError).message).toMatch(/mode 0644 is too open/);
      expect(lab.exec(a.ns, 'ip', ['link', 'show']).includes(`${a.wgIf}x`)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an interface name whose wireguard-go runs in another namespace', async () => {
    const err = await WireguardManager.open({
      stateDir: b.stateDir,
      interfaceName: a.wgIf,
      netns: b.ns,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireguardError);
    expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT');
  });

  it('surfaces command failures with the command line and its output', async () => {
    const dev = new WireguardDevice(createExec({ netns: a.ns }), 'nosuchwg0');
    const err = await dev.dump().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireguardError);
    expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_COMMAND');
    expect((err as WireguardError).command).toEqual(['wg', 'show', 'nosuchwg0', 'dump']);
    expect((err as WireguardError).output).not.toBe('');
    expect((err as WireguardError).message).toContain('`wg show nosuchwg0 dump` failed (exit 1)');

    // kernel mode demanded on a kernel without the WireGuard module
    const kerr = await WireguardManager.open({
      stateDir: a.stateDir,
      interfaceName: `${a.wgIf}k`,
      netns: a.ns,
      mode: 'kernel',
    }).catch((e: unknown) => e);
    if (kerr instanceof WireguardManager) {
      await kerr.destroy(); // this kernel has the module after all
    } else {
      expect((kerr as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_COMMAND');
      expect((kerr as WireguardError).command).toEqual([
        'ip',
        'link',
        'add',
        'dev',
        `${a.wgIf}k`,
        'type',
        'wireguard',
      ]);
    }
  });

  it('a listen port already taken fails with the wg command and output, and leaves no interface behind', async () => {
    const name = `${a.wgIf}p`;
    const err = await WireguardManager.open({ stateDir: a.stateDir, interfaceName: name, netns: a.ns }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WireguardError);
    expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_COMMAND');
    expect((err as WireguardError).command).toEqual(['wg', 'set', name, 'listen-port', '51820']);
    expect((err as WireguardError).output).toMatch(/in use/i);
    expect(lab.exec(a.ns, 'ip', ['link', 'show']).includes(name)).toBe(false);
    const { existsSync } = await import('node:fs');
    expect(existsSync(`/var/run/wireguard/${name}.sock`)).toBe(false);
  });

  it('destroy() removes the interface, wireguard-go and its socket', async () => {
    if (mb === undefined) throw new Error('manager not open');
    const pid = (await mb.status()).pid;
    expect(pid).toBeGreaterThan(0);
    await mb.destroy();
    await mb.destroy(); // idempotent
    expect(lab.exec(b.ns, 'ip', ['link', 'show']).includes(b.wgIf)).toBe(false);
    const { existsSync } = await import('node:fs');
    expect(existsSync(`/var/run/wireguard/${b.wgIf}.sock`)).toBe(false);
    const alive = existsSync(`/proc/${pid}/stat`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    expect(alive).toBe(false);
    mb = undefined;
  });
});
