import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsLab } from '../../helpers/netns.js';
import {
  DEFAULT_SOCKET_DIR,
  findWireguardGoPid,
  netnsInode,
  uapiSocketPath,
} from '../../../src/wireguard/index.js';
import type { WireguardPeer } from '../../../src/wireguard/index.js';

/** One simulated node: its namespace, a pod namespace behind a veth, and the addresses involved. */
export interface LabNode {
  readonly name: string;
  /** Node namespace (underlay interface `ul`, pod-facing `pod0`, the WireGuard interface). */
  readonly ns: string;
  /** Pod namespace (`eth0`, default route via the node). */
  readonly podNs: string;
  readonly underlayIp: string;
  readonly podCidr: string;
  readonly podIp: string;
  readonly podCidr6: string;
  readonly podIp6: string;
  /** WireGuard interface name, unique on the host (wireguard-go's socket path is host-wide). */
  readonly wgIf: string;
  readonly stateDir: string;
}

/**
 * Two nodes on one underlay link (192.168.77.0/24), each with one pod namespace in its own pod
 * CIDR (10.77.1.0/24 on A, 10.77.2.0/24 on B), forwarding enabled in the node namespaces. Every
 * namespace, wireguard-go daemon, UAPI socket and state directory is removed by lab.cleanup().
 */
export function twoNodeLab(prefix = 'wg'): { lab: NetnsLab; a: LabNode; b: LabNode } {
  const lab = new NetnsLab(prefix);
  const mk = (name: 'a' | 'b', idx: number): LabNode => {
    const ns = lab.addNamespace(`n${name}`);
    const podNs = lab.addNamespace(`p${name}`);
    const node: LabNode = {
      name: `node-${name}`,
      ns,
      podNs,
      underlayIp: `192.168.77.${idx}`,
      podCidr: `10.77.${idx}.0/24`,
      podIp: `10.77.${idx}.2`,
      podCidr6: `fd77:${idx}::/64`,
      podIp6: `fd77:${idx}::2`,
      wgIf: `${lab.tag}${name}`,
      stateDir: mkdtempSync(join(tmpdir(), `meshauth-wg-${name}-`)),
    };
    lab.link(
      { ns: podNs, ifname: 'eth0', addr: `${node.podIp}/24` },
      { ns, ifname: 'pod0', addr: `10.77.${idx}.1/24` },
    );
    lab.exec(podNs, 'ip', ['route', 'add', 'default', 'via', `10.77.${idx}.1`]);
    lab.exec(podNs, 'ip', ['addr', 'add', `${node.podIp6}/64`, 'dev', 'eth0', 'nodad']);
    lab.exec(ns, 'ip', ['addr', 'add', `fd77:${idx}::1/64`, 'dev', 'pod0', 'nodad']);
    lab.exec(podNs, 'ip', ['-6', 'route', 'add', 'default', 'via', `fd77:${idx}::1`]);
    lab.exec(ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    lab.onCleanup(() => {
      // wireguard-go daemonized itself: kill it by pid (found in this namespace), drop its socket
      try {
        const pid = findWireguardGoPid(node.wgIf, netnsInode(ns));
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
      } catch {
        /* namespace or process already gone */
      }
      rmSync(uapiSocketPath(DEFAULT_SOCKET_DIR, node.wgIf), { force: true });
      rmSync(node.stateDir, { recursive: true, force: true });
    });
    return node;
  };
  const a = mk('a', 1);
  const b = mk('b', 2);
  lab.link(
    { ns: a.ns, ifname: 'ul', addr: `${a.underlayIp}/24` },
    { ns: b.ns, ifname: 'ul', addr: `${b.underlayIp}/24` },
  );
  return { lab, a, b };
}

/** The peer description of `node` as the other node sees it. */
export function peerOf(node: LabNode, publicKey: string, port = 51820): WireguardPeer {
  return {
    name: node.name,
    publicKey,
    endpoint: `${node.underlayIp}:${port}`,
    allowedIPs: [node.podCidr, node.podCidr6],
  };
}

/** Plain (unencrypted) routes between the pod CIDRs over the underlay: the control path. */
export function routeOverUnderlay(lab: NetnsLab, a: LabNode, b: LabNode): void {
  lab.exec(a.ns, 'ip', ['route', 'replace', b.podCidr, 'via', b.underlayIp, 'dev', 'ul']);
  lab.exec(b.ns, 'ip', ['route', 'replace', a.podCidr, 'via', a.underlayIp, 'dev', 'ul']);
}

const ECHO_SERVER = `
const net = require('node:net');
let pending = process.argv.length - 2;
for (const host of process.argv.slice(2)) {
  net.createServer((s) => s.pipe(s)).listen(Number(process.argv[1]), host, () => --pending === 0 && process.stdout.write('ready\\n'));
}
`;

// A first packet that finds no session waits for the WireGuard handshake; when the peer did not
// know us yet, the retry comes REKEY_TIMEOUT (5 s) later, so allow more than that.
const ECHO_CLIENT = `
const net = require('node:net');
const [host, port, payload, timeoutMs] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let got = '';
s.setTimeout(Number(timeoutMs), () => { process.stderr.write('timeout'); process.exit(2); });
s.on('connect', () => s.write(payload));
s.on('data', (d) => { got += d; if (got.length >= payload.length) { process.stdout.write(got); s.end(); } });
s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
`;

/** Starts a TCP echo server on the pod's address; resolves when it listens. */
export async function startEcho(lab: NetnsLab, node: LabNode, port: number): Promise<void> {
  const child = lab.spawn(node.podNs, process.execPath, [
    '-e',
    ECHO_SERVER,
    String(port),
    node.podIp,
    node.podIp6,
  ]);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('echo server did not start')), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`echo server exited ${code}`)));
  });
}

/**
 * Sends `payload` from `from`'s pod to `to`'s pod echo server and returns what came back; throws
 * when nothing comes back within `timeoutMs` (default 12 s; see ECHO_CLIENT).
 */
export function echo(
  lab: NetnsLab,
  from: LabNode,
  to: LabNode,
  port: number,
  payload: string,
  family: 4 | 6 = 4,
  timeoutMs = 12_000,
): string {
  const host = family === 4 ? to.podIp : to.podIp6;
  return lab.exec(
    from.podNs,
    process.execPath,
    ['-e', ECHO_CLIENT, host, String(port), payload, String(timeoutMs)],
    { timeoutMs: timeoutMs + 5_000 },
  );
}

/** Captures on the node's underlay interface while `fn` runs; returns the raw pcap bytes and its text decode. */
export async function captureUnderlay(
  lab: NetnsLab,
  node: LabNode,
  fn: () => void | Promise<void>,
): Promise<{ pcap: Buffer; text: string }> {
  const { readFileSync } = await import('node:fs');
  const file = join(node.stateDir, `cap-${Date.now()}.pcap`);
  const child = lab.spawn(node.ns, 'tcpdump', ['-i', 'ul', '-n', '-U', '--immediate-mode', '-w', file]);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
    child.stderr?.on('data', (d: Buffer) => {
      if (d.toString().includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`tcpdump exited ${code}`)));
  });
  await fn();
  await new Promise((r) => setTimeout(r, 300));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  await exited;
  const pcap = readFileSync(file);
  const text = lab.exec(node.ns, 'tcpdump', ['-r', file, '-n']);
  return { pcap, text };
}
