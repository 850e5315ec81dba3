import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonResolver } from '../../../src/daemon/resolver.js';
import { IdAllocator } from '../../../src/identity/index.js';
import { parseInventory, type Inventory } from '../../../src/inventory/index.js';
import { parsePolicy, type Policy } from '../../../src/policy/index.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

const inventoryText = (apiNode: string, apiIp = '10.10.2.10'): string => `nodes:
  - { name: node-a, address: 10.0.0.1, podCIDRs: [10.10.1.0/24] }
  - { name: node-b, address: 10.0.0.2, podCIDRs: [10.10.2.0/24], handshakePort: 4300 }
workloads:
  - { spiffeId: "${WEB}", node: node-a, ips: [10.10.1.10] }
  - { spiffeId: "${API}", node: ${apiNode}, ips: [${apiIp}] }
`;
const policyText = `rules:\n  - { name: web-api, from: "${WEB}", to: "${API}" }\n`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-resolver-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function setup() {
  const identities = IdAllocator.open({ file: join(dir, 'identities.json'), namespace: 'identity' });
  const nodes = IdAllocator.open({ file: join(dir, 'nodes.json'), namespace: 'node' });
  const world = {
    inventory: parseInventory(inventoryText('node-b')) as Inventory,
    policy: parsePolicy(policyText) as Policy,
    local: [WEB],
    svids: new Set([WEB]),
  };
  const resolver = new DaemonResolver({
    identities,
    nodes,
    inventory: () => world.inventory,
    policy: () => world.policy,
    handshakePort: 4250,
    localIdentities: () => world.local,
    holdsSvid: (id) => world.svids.has(id),
  });
  const key = {
    localId: identities.idFor(WEB),
    remoteId: identities.idFor(API),
    remoteNode: nodes.idFor('node-b'),
    authType: 1,
  };
  return { world, resolver, key, identities, nodes };
}

describe('DaemonResolver', () => {
  it('names the handles of an entry and leaves unknown ones out', () => {
    const t = setup();
    expect(t.resolver.names(t.key)).toEqual({ localId: WEB, remoteId: API, node: 'node-b' });
    expect(t.resolver.names({ ...t.key, remoteId: 999, remoteNode: 998 })).toEqual({
      localId: WEB,
      remoteId: undefined,
      node: undefined,
    });
    expect(t.resolver.nodeEndpoint('node-b')).toEqual({ address: '10.0.0.2', port: 4300 });
    expect(t.resolver.nodeEndpoint('node-a')).toEqual({ address: '10.0.0.1', port: 4250 });
  });

  it('keeps an entry that is still wanted', () => {
    const t = setup();
    expect(t.resolver.obsoleteReason(t.key)).toBeUndefined();
    expect(t.resolver.pairRequired(WEB, API, 'node-b')).toBe(true);
  });

  it('gives the first reason an entry must go, in order', () => {
    const t = setup();
    expect(t.resolver.obsoleteReason({ ...t.key, remoteNode: 998 })).toBe('unknown-handle');
    // No SVID held for our side.
    t.world.svids.clear();
    expect(t.resolver.obsoleteReason(t.key)).toBe('svid-removed');
    // The policy no longer asks for the pair (checked before the SVID).
    t.world.policy = parsePolicy('rules: []\n');
    expect(t.resolver.obsoleteReason(t.key)).toBe('policy-removed');
    expect(t.resolver.pairRequired(WEB, API, 'node-b')).toBe(false);
    // The remote workload moved to another node (checked before the policy).
    t.world.inventory = parseInventory(inventoryText('node-a', '10.10.1.20'));
    expect(t.resolver.obsoleteReason(t.key)).toBe('workload-moved');
    // Our workload left this node (checked before everything but unknown handles).
    t.world.local = [DB];
    expect(t.resolver.obsoleteReason(t.key)).toBe('identity-removed');
  });
});
