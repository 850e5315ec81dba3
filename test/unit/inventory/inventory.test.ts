import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ConfigError } from '../../../src/config/index.js';
import {
  assertNodeListed,
  Inventory,
  InventoryError,
  loadInventoryFile,
  parseInventory,
  watchInventoryFile,
  type InventoryChange,
} from '../../../src/inventory/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const dir = mkdtempSync(join(tmpdir(), 'meshauth-inventory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GOOD = `nodes:
  - { name: node-a, address: 10.0.0.1, podCIDRs: [10.10.1.0/24, "fd00:a::/64"] }
  - { name: node-b, address: 10.0.0.2, podCIDRs: [10.10.2.0/24], handshakePort: 4300,
      wireguardPublicKey: "${Buffer.alloc(32, 7).toString('base64')}" }
workloads:
  - { name: web, spiffeId: "spiffe://demo.local/ns/demo/sa/web", node: node-a, ips: [10.10.1.10, "fd00:a::10"], selectors: ["k8s:ns:demo"] }
  - { name: web-2, spiffeId: "spiffe://demo.local/ns/demo/sa/web", node: node-b, ips: [10.10.2.11] }
  - { name: api, spiffeId: "spiffe://demo.local/ns/demo/sa/api", node: node-b, ips: [10.10.2.10] }
`;

function errorOf(fn: () => unknown): InventoryError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InventoryError);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as InventoryError).code).toBe('MESHAUTH_ERR_INVENTORY');
    return err as InventoryError;
  }
  throw new Error('expected an InventoryError');
}

describe('inventory lookups', () => {
  const inv = parseInventory(GOOD);
  it('finds nodes by name and by daemon address', () => {
    expect(inv.node('node-b')).toEqual({
      name: 'node-b',
      address: '10.0.0.2',
      podCIDRs: ['10.10.2.0/24'],
      handshakePort: 4300,
      wireguardPublicKey: Buffer.alloc(32, 7).toString('base64'),
    });
    expect(inv.node('node-c')).toBeUndefined();
    expect(inv.nodeForAddress('10.0.0.1')?.name).toBe('node-a');
    expect(inv.nodeForAddress('::ffff:10.0.0.2')?.name).toBe('node-b');
    expect(inv.nodeForAddress('10.0.0.3')).toBeUndefined();
    expect(inv.nodeForAddress('garbage')).toBeUndefined();
    expect(inv.nodeForPodAddress('10.10.2.99')?.name).toBe('node-b');
    expect(inv.nodeForPodAddress('fd00:a::1:2')?.name).toBe('node-a');
    expect(inv.nodeForPodAddress('192.168.0.1')).toBeUndefined();
  });

  it('finds workloads by node, address and SPIFFE ID', () => {
    expect(inv.workloadsOnNode('node-b').map((w) => w.name)).toEqual(['web-2', 'api']);
    expect(inv.workloadsOnNode('node-x')).toEqual([]);
    expect(inv.workloadByIp('10.10.1.10')?.name).toBe('web');
    expect(inv.workloadByIp('FD00:A:0::10')?.name).toBe('web');
    expect(inv.workloadByIp('10.10.1.99')).toBeUndefined();
    expect(inv.isWorkloadOnNode('spiffe://demo.local/ns/demo/sa/web', 'node-a')).toBe(true);
    expect(inv.isWorkloadOnNode('spiffe://demo.local/ns/demo/sa/api', 'node-a')).toBe(false);
    expect(inv.isWorkloadOnNode('spiffe://demo.local/ns/demo/sa/api', 'node-b')).toBe(true);
    expect(inv.spiffeIdsOnNode('node-b')).toEqual([
      'spiffe://demo.local/ns/demo/sa/api',
      'spiffe://demo.local/ns/demo/sa/web',
    ]);
    expect(inv.workloadsWithSpiffeId('spiffe://demo.local/ns/demo/sa/web')).toHaveLength(2);
    expect(inv.workloadByIp('10.10.1.10')?.selectors).toEqual(['k8s:ns:demo']);
    expect(inv.workloadByIp('10.10.2.10')?.selectors).toEqual([]);
  });

  it('is frozen', () => {
    expect(() => (inv.nodes() as Array<unknown>).push({})).toThrow();
  });

  it('loads the example inventory', () => {
    const ex = loadInventoryFile('examples/inventory.yaml');
    expect(ex.nodes().map((x) => x.name)).toEqual(['node-a', 'node-b']);
    expect(ex.spiffeIdsOnNode('node-a')).toHaveLength(2);
  });

  it('checks the configured node', () => {
    expect(() => assertNodeListed(inv, 'node-a', '/etc/c.yaml')).not.toThrow();
    expect(() => assertNodeListed(inv, 'node-z', '/etc/c.yaml')).toThrow(
      'config /etc/c.yaml: node: "node-z" is not in inventory (nodes: node-a, node-b)',
    );
  });
});

describe('inventory validation', () => {
  const node = (extra = '') =>
    `nodes:\n  - { name: node-a, address: 10.0.0.1, podCIDRs: [10.10.1.0/24]${extra} }\n`;
  const cases: Array<[string, string, string[]]> = [
    ['no nodes', 'nodes: []\n', ['nodes: must have at least 1 item(s)']],
    ['unknown key', `${node()}workload: []\n`, ['workload: unknown key (did you mean "workloads"?)']],
    [
      'bad node address',
      'nodes:\n  - { name: node-a, address: 10.0.0.256 }\n',
      ['nodes[0].address: must be an IPv4 or IPv6 address (got "10.0.0.256")'],
    ],
    [
      'bad CIDR',
      'nodes:\n  - { name: node-a, address: 10.0.0.1, podCIDRs: [10.10.1.5/24] }\n',
      ['nodes[0].podCIDRs[0]: must be a CIDR like 10.0.1.0/24 with zero host bits (got "10.10.1.5/24")'],
    ],
    [
      'bad WireGuard key',
      node(', wireguardPublicKey: abc'),
      ['nodes[0].wireguardPublicKey: must be a base64 WireGuard public key of 32 bytes (got "abc")'],
    ],
    [
      'duplicate node',
      `${node()}  - { name: node-a, address: 10.0.0.1 }\n`,
      [
        'nodes[1].name: duplicate node name "node-a" (also nodes[0])',
        'nodes[1].address: address 10.0.0.1 is also the address of nodes[0]',
      ],
    ],
    [
      'overlapping pod CIDRs',
      `${node()}  - { name: node-b, address: 10.0.0.2, podCIDRs: [10.10.0.0/16] }\n`,
      ['nodes[1].podCIDRs[0]: 10.10.0.0/16 overlaps 10.10.1.0/24 (nodes[0].podCIDRs[0])'],
    ],
    [
      'workload on unknown node',
      `${node()}workloads:\n  - { spiffeId: "spiffe://d/w", node: node-b, ips: [10.10.1.2] }\n`,
      ['workloads[0].node: unknown node "node-b" (nodes: node-a)'],
    ],
    [
      'invalid SPIFFE ID',
      `${node()}workloads:\n  - { spiffeId: "spiffe://demo.local/ns//x", node: node-a, ips: [10.10.1.2] }\n`,
      [
        'workloads[0].spiffeId: is not a valid SPIFFE ID: path cannot contain empty segments (got "spiffe://demo.local/ns//x")',
      ],
    ],
    [
      'SPIFFE ID without path',
      `${node()}workloads:\n  - { spiffeId: "spiffe://demo.local", node: node-a, ips: [10.10.1.2] }\n`,
      [
        'workloads[0].spiffeId: is not a valid SPIFFE ID: has no path (a workload ID looks like spiffe://<trust-domain>/<path>) (got "spiffe://demo.local")',
      ],
    ],
    [
      'duplicate workload IP',
      `${node()}workloads:\n  - { spiffeId: "spiffe://d/a", node: node-a, ips: [10.10.1.2] }\n  - { spiffeId: "spiffe://d/b", node: node-a, ips: [10.10.1.2] }\n`,
      ['workloads[1].ips[0]: address 10.10.1.2 is also used by workloads[0].ips[0]'],
    ],
    [
      'workload outside pod CIDRs',
      `${node()}workloads:\n  - { spiffeId: "spiffe://d/a", node: node-a, ips: [10.10.9.2] }\n`,
      ['workloads[0].ips[0]: address 10.10.9.2 is outside the pod CIDRs of node "node-a" (10.10.1.0/24)'],
    ],
    [
      'workload without ips',
      `${node()}workloads:\n  - { spiffeId: "spiffe://d/a", node: node-a, ips: [] }\n`,
      ['workloads[0].ips: must have at least 1 item(s)'],
    ],
    [
      'bad selector',
      `${node()}workloads:\n  - { spiffeId: "spiffe://d/a", node: node-a, ips: [10.10.1.2], selectors: [demo] }\n`,
      ['workloads[0].selectors[0]: must be a selector "type:value" like "k8s:ns:demo" (got "demo")'],
    ],
  ];
  it.each(cases)('%s', (_name, text, expected) => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, text);
    const err = errorOf(() => loadInventoryFile(file));
    expect(err.problems).toEqual(expected.map((e) => `inventory ${file}: ${e}`));
  });

  it('reports YAML syntax errors with their position', () => {
    const file = join(dir, 'syntax.yaml');
    writeFileSync(file, 'nodes:\n  - name: a\n   address: x\n');
    expect(errorOf(() => loadInventoryFile(file)).message).toMatch(
      new RegExp(`^inventory ${file}: line 3, column \\d+: YAML syntax error: `),
    );
  });

  it('validates data given to the constructor and to replace()', () => {
    const inv = parseInventory(GOOD);
    const before = inv.data;
    const bad = structuredClone(before) as { workloads: Array<{ node: string }> };
    (bad.workloads[0] as { node: string }).node = 'node-q';
    expect(() => inv.replace(bad as typeof before)).toThrow(
      'inventory: workloads[0].node: unknown node "node-q"',
    );
    expect(inv.data).toBe(before);
    expect(() => new Inventory(bad as typeof before, 'x')).toThrow(InventoryError);
  });
});

describe('inventory reload', () => {
  it('replaces on a good file, keeps the old state on a bad one, and notifies listeners', async () => {
    const file = join(dir, 'watched.yaml');
    writeFileSync(file, GOOD);
    const inv = loadInventoryFile(file);
    const changes: InventoryChange[] = [];
    inv.onChange((c) => changes.push(c));
    const clock = new FakeClock();
    const logged: Array<{ event?: string; nodes?: number; reason?: string }> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const watcher = watchInventoryFile(inv, file, { log, debounceMs: 20, clock });
    try {
      // A bad file (workload on a missing node) is refused; lookups keep working.
      writeFileSync(file, GOOD.replace('node: node-b, ips: [10.10.2.10]', 'node: node-c, ips: [10.10.2.10]'));
      const bad = watcher.reload();
      expect(bad.ok).toBe(false);
      expect(!bad.ok && bad.error.message).toMatch(/workloads\[2\]\.node: unknown node "node-c"/);
      expect(inv.workloadByIp('10.10.2.10')?.name).toBe('api');
      expect(changes).toHaveLength(0);
      expect(logged.map((l) => l.event)).toEqual(['inventory_reload_failed']);
      expect(logged[0]?.reason).toMatch(/unknown node "node-c"/);

      // A good new file, written atomically as editors and config managers do; the watcher sees it.
      const tmp = join(dir, 'watched.yaml.tmp');
      writeFileSync(tmp, GOOD.replace('ips: [10.10.2.10]', 'ips: [10.10.2.12]'));
      renameSync(tmp, file);
      // Settle point: the watcher noticed a change (its debounce is pending); then the quiet time passes.
      await expect.poll(() => clock.pending, { timeout: 5_000 }).toBe(1);
      clock.advance(20);
      expect(changes).toHaveLength(1);
      expect(inv.workloadByIp('10.10.2.10')).toBeUndefined();
      expect(inv.workloadByIp('10.10.2.12')?.name).toBe('api');
      expect(changes[0]?.previous.workloads[2]?.ips).toEqual(['10.10.2.10']);
      expect(logged.map((l) => l.event)).toEqual(['inventory_reload_failed', 'inventory_reloaded']);

      // Reloading identical content does not notify.
      expect(watcher.reload()).toEqual({ ok: true });
      expect(changes).toHaveLength(1);
    } finally {
      watcher.close();
      watcher.close();
    }
  });

  it('refuses a file without this node before swapping, logs the reason once, and logs the fix', () => {
    const file = join(dir, 'this-node.yaml');
    writeFileSync(file, GOOD);
    const inv = loadInventoryFile(file);
    const first = inv.data;
    const changes: InventoryChange[] = [];
    inv.onChange((c) => changes.push(c));
    const logged: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const outcomes: Array<[string | undefined, boolean]> = [];
    const watcher = watchInventoryFile(inv, file, {
      log,
      node: 'node-a',
      configFile: '/etc/meshauth/config.yaml',
      observe: (o, failing) => outcomes.push([o, failing]),
      debounceMs: 20,
      clock: new FakeClock(),
    });
    try {
      // Valid on its own, but start-up would refuse it here: node-a (this node) is gone.
      const withoutA = `nodes:
  - { name: node-b, address: 10.0.0.2, podCIDRs: [10.10.2.0/24] }
workloads:
  - { name: api, spiffeId: "spiffe://demo.local/ns/demo/sa/api", node: node-b, ips: [10.10.2.10] }
`;
      writeFileSync(file, withoutA);
      const r = watcher.reload();
      expect(r.ok).toBe(false);
      expect(!r.ok && r.error).toBeInstanceOf(ConfigError);
      expect(inv.data).toBe(first);
      expect(inv.node('node-a')?.address).toBe('10.0.0.1');
      expect(changes).toHaveLength(0);
      expect(logged).toHaveLength(1);
      const failed = logged[0] as Record<string, unknown>;
      expect(failed['event']).toBe('inventory_reload_failed');
      expect(failed['reason']).toBe(
        'config /etc/meshauth/config.yaml: node: "node-a" is not in inventory ' + file + ' (nodes: node-b)',
      );
      // An expected error: its code, no stack and no second copy of the message.
      expect(failed['code']).toBe('MESHAUTH_ERR_CONFIG');
      expect(failed['err']).toBeUndefined();
      expect(JSON.stringify(failed).split('is not in').length - 1).toBe(1);

      // Fixed back to the content in use: nothing changes, but the log says the file is good again.
      writeFileSync(file, GOOD);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(changes).toHaveLength(0);
      expect(logged.at(-1)).toMatchObject({ event: 'inventory_reloaded', unchanged: true, nodes: 2 });
      // A further identical reload (no failure before it) logs nothing.
      expect(watcher.reload()).toEqual({ ok: true });
      expect(logged).toHaveLength(2);
      expect(outcomes).toEqual([
        ['failed', true],
        ['unchanged', false],
        ['unchanged', false],
      ]);
    } finally {
      watcher.close();
    }
  });

  it('says so when a new inventory was taken but a listener failed on it, and tells the listeners again', () => {
    const file = join(dir, 'listener.yaml');
    writeFileSync(file, GOOD);
    const inv = loadInventoryFile(file);
    let fail = true;
    const heard: string[] = [];
    inv.onChange(() => {
      heard.push('first');
      if (fail) throw new Error('map write failed');
    });
    // A listener after the failing one still hears about the change.
    inv.onChange(() => heard.push('second'));
    const logged: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const outcomes: Array<[string | undefined, boolean]> = [];
    const watcher = watchInventoryFile(inv, file, {
      log,
      node: 'node-a',
      observe: (o, failing) => outcomes.push([o, failing]),
      clock: new FakeClock(),
    });
    try {
      writeFileSync(file, GOOD.replace('ips: [10.10.2.10]', 'ips: [10.10.2.12]'));
      expect(watcher.reload()).toEqual({ ok: true });
      expect(inv.workloadByIp('10.10.2.12')?.name).toBe('api');
      expect(heard).toEqual(['first', 'second']);
      expect(logged.map((l) => l['event'])).toEqual(['inventory_reload_failed']);
      expect(logged[0]).toMatchObject({ applied: true, reason: 'map write failed' });
      // Unexpected: the stack is kept.
      expect((logged[0]?.['err'] as { stack?: string } | undefined)?.stack).toMatch(/map write failed/);
      expect(outcomes).toEqual([['failed', true]]);

      // The same file once acting works: the listeners hear it again; applied, no longer failing.
      fail = false;
      expect(watcher.reload()).toEqual({ ok: true });
      expect(heard).toEqual(['first', 'second', 'first', 'second']);
      expect(logged.at(-1)).toMatchObject({ event: 'inventory_reloaded', unchanged: true, retried: true });
      expect(outcomes.at(-1)).toEqual(['applied', false]);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(heard).toHaveLength(4);
      expect(outcomes.at(-1)).toEqual(['unchanged', false]);
    } finally {
      watcher.close();
    }
  });

  it('replace tells every listener and then throws what the failing ones threw', () => {
    const file = join(dir, 'replace-listeners.yaml');
    writeFileSync(file, GOOD);
    const inv = loadInventoryFile(file);
    const heard: number[] = [];
    inv.onChange(() => {
      heard.push(1);
      throw new Error('one');
    });
    inv.onChange(() => heard.push(2));
    inv.onChange(() => {
      heard.push(3);
      throw new Error('three');
    });
    const next = { ...inv.data, workloads: inv.data.workloads.slice(0, 1) };
    expect(() => inv.replace(next)).toThrow('2 inventory listeners failed: one; three');
    expect(heard).toEqual([1, 2, 3]);
    expect(inv.workloads()).toHaveLength(1);
  });
});
