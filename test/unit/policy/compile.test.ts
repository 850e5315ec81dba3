import { describe, expect, it } from 'vitest';
import { AuthType, IDENTITY_UNRESOLVED, POLICY_ANY_REMOTE } from '../../../src/datapath/types.js';
import { loadConfig } from '../../../src/config/index.js';
import { assertNodeListed, loadInventoryFile, parseInventory } from '../../../src/inventory/index.js';
import {
  compileNodeState,
  loadPolicyFile,
  preauthPairs,
  parsePolicy,
  type HandleAllocator,
} from '../../../src/policy/index.js';

/** In-memory allocator with the same numbering rule as IdAllocator. */
class MemoryAllocator implements HandleAllocator {
  readonly ids = new Map<string, number>();
  calls = 0;
  idFor(key: string): number {
    this.calls++;
    let id = this.ids.get(key);
    if (id === undefined) this.ids.set(key, (id = this.ids.size + 1));
    return id;
  }
}

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const CLIENT = 'spiffe://demo.local/ns/demo/sa/client';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const PROM = 'spiffe://demo.local/ns/monitoring/sa/prometheus';

const inventory = parseInventory(`nodes:
  - { name: node-a, address: 10.0.0.1, podCIDRs: [10.10.1.0/24, "fd00:a::/64"] }
  - { name: node-b, address: 10.0.0.2, podCIDRs: [10.10.2.0/24] }
workloads:
  - { spiffeId: "${WEB}", node: node-a, ips: [10.10.1.10, "fd00:a::10"] }
  - { spiffeId: "${CLIENT}", node: node-a, ips: [10.10.1.11] }
  - { spiffeId: "${API}", node: node-b, ips: [10.10.2.10] }
  - { spiffeId: "${WEB}", node: node-b, ips: [10.10.2.11] }
  - { spiffeId: "${PROM}", node: node-b, ips: [10.10.2.20] }
`);

function compile(
  nodeName: string,
  policyText: string,
  opts: { includeRemotePodCidrs?: boolean; unresolvedPodCidrs?: boolean } = {},
) {
  const identities = new MemoryAllocator();
  const nodes = new MemoryAllocator();
  const state = compileNodeState({
    nodeName,
    inventory,
    policy: parsePolicy(policyText),
    identities,
    nodes,
    ...opts,
  });
  return { state, identities, nodes };
}

const pairs = (state: ReturnType<typeof compile>['state'], ids: Map<string, number>) => {
  const name = new Map([...ids].map(([k, v]) => [v, k]));
  name.set(POLICY_ANY_REMOTE, '*');
  return state.policy.map((e) => {
    expect(e.authType).toBe(AuthType.SpiffeMtls);
    return `${name.get(e.key.localId)} -> ${name.get(e.key.remoteId)}`;
  });
};

describe('compileNodeState', () => {
  const POLICY = `rules:
  - { name: web-api, from: "${WEB}", to: "${API}" }
  - { name: client-web, from: "${CLIENT}", to: "${WEB}" }
`;

  it('builds the ipcache of every workload address, local node id 0', () => {
    const { state, identities, nodes } = compile('node-a', POLICY);
    // Identities are allocated in sorted order of SPIFFE ID, node ids for other nodes only.
    expect([...identities.ids]).toEqual([
      [API, 1],
      [CLIENT, 2],
      [WEB, 3],
      [PROM, 4],
    ]);
    expect([...nodes.ids]).toEqual([['node-b', 1]]);
    expect(state.ipcache).toEqual([
      { cidr: '10.10.1.10/32', identity: 3, nodeId: 0 },
      { cidr: '10.10.1.11/32', identity: 2, nodeId: 0 },
      { cidr: '10.10.2.10/32', identity: 1, nodeId: 1 },
      { cidr: '10.10.2.11/32', identity: 3, nodeId: 1 },
      { cidr: '10.10.2.20/32', identity: 4, nodeId: 1 },
      { cidr: 'fd00:a::10/128', identity: 3, nodeId: 0 },
    ]);
    expect(state.localSpiffeIds).toEqual([CLIENT, WEB]);
  });

  it('policy entries for local workloads, both directions of each rule, local pairs included', () => {
    const a = compile('node-a', POLICY);
    expect(pairs(a.state, a.identities.ids)).toEqual([
      `${CLIENT} -> ${WEB}`,
      `${WEB} -> ${API}`,
      `${WEB} -> ${CLIENT}`,
    ]);
    // On node-b, api is local (reverse direction of web-api) and so is a web replica.
    const b = compile('node-b', POLICY);
    expect(b.nodes.ids.has('node-a')).toBe(true);
    expect(b.nodes.ids.has('node-b')).toBe(false);
    expect(pairs(b.state, b.identities.ids)).toEqual([
      `${API} -> ${WEB}`,
      `${WEB} -> ${API}`,
      `${WEB} -> ${CLIENT}`,
    ]);
    expect(b.state.ipcache.find((e) => e.cidr === '10.10.1.10/32')?.nodeId).toBe(b.nodes.ids.get('node-a'));
  });

  it('a rule to "*" gives one wildcard entry', () => {
    const { state, identities } = compile('node-b', `rules:\n  - { name: prom, from: "${PROM}", to: "*" }\n`);
    // prometheus must authenticate with anyone: one wildcard entry. The other local workloads
    // must authenticate with prometheus (the rule covers the pair in both directions).
    expect(pairs(state, identities.ids)).toEqual([`${API} -> ${PROM}`, `${WEB} -> ${PROM}`, `${PROM} -> *`]);
    expect(state.policy.at(-1)?.key).toEqual({
      localId: identities.ids.get(PROM),
      remoteId: POLICY_ANY_REMOTE,
    });
    // from "*" works the same way seen from the destination
    const a = compile('node-a', `rules:\n  - { name: anyone-web, from: "*", to: "${WEB}" }\n`);
    expect(pairs(a.state, a.identities.ids)).toEqual([`${CLIENT} -> ${WEB}`, `${WEB} -> *`]);
  });

  it('globs expand over the inventory', () => {
    const { state, identities } = compile(
      'node-b',
      `rules:\n  - { name: mon, from: "spiffe://demo.local/ns/monitoring/*", to: "spiffe://demo.local/ns/demo/*" }\n`,
    );
    expect(pairs(state, identities.ids)).toEqual(
      [
        `${PROM} -> ${API}`,
        `${PROM} -> ${CLIENT}`,
        `${PROM} -> ${WEB}`,
        `${API} -> ${PROM}`,
        `${WEB} -> ${PROM}`,
      ].sort((x, y) => {
        const id = (s: string) => s.split(' -> ').map((k) => identities.ids.get(k) as number);
        const [a1, a2] = id(x);
        const [b1, b2] = id(y);
        return (a1 as number) - (b1 as number) || (a2 as number) - (b2 as number);
      }),
    );
  });

  it('no rules, no policy entries; disabled rules count for nothing', () => {
    expect(compile('node-a', 'rules: []\n').state.policy).toEqual([]);
    expect(
      compile('node-a', `rules:\n  - { name: x, from: "*", to: "*", mode: disabled }\n`).state.policy,
    ).toEqual([]);
  });

  it('optionally maps remote pod CIDRs to their node', () => {
    const { state, nodes } = compile('node-a', POLICY, { includeRemotePodCidrs: true });
    expect(state.ipcache).toContainEqual({
      cidr: '10.10.2.0/24',
      identity: 0,
      nodeId: nodes.ids.get('node-b'),
    });
    expect(state.ipcache.some((e) => e.cidr === '10.10.1.0/24')).toBe(false);
  });

  it('gives each pair the mode of its strongest rule; a required wildcard covers everything', () => {
    const { state, identities } = compile(
      'node-a',
      `rules:
  - { name: web-api, from: "${WEB}", to: "${API}", mode: permissive }
  - { name: client-web, from: "${CLIENT}", to: "${WEB}", mode: permissive }
  - { name: client-web-strict, from: "${CLIENT}", to: "${WEB}" }
`,
    );
    const id = (s: string) => identities.ids.get(s);
    expect(state.policy).toEqual([
      { key: { localId: id(CLIENT), remoteId: id(WEB) }, authType: 1, mode: 'enforce' },
      { key: { localId: id(WEB), remoteId: id(API) }, authType: 1, mode: 'permissive' },
      { key: { localId: id(WEB), remoteId: id(CLIENT) }, authType: 1, mode: 'enforce' },
    ]);
    // A permissive wildcard keeps a specific entry for an enforced pair.
    const w = compile(
      'node-a',
      `rules:
  - { name: any-web, from: "*", to: "${WEB}", mode: permissive }
  - { name: client-web, from: "${CLIENT}", to: "${WEB}" }
`,
    );
    const wid = (s: string) => w.identities.ids.get(s);
    expect(w.state.policy).toEqual([
      { key: { localId: wid(CLIENT), remoteId: wid(WEB) }, authType: 1, mode: 'enforce' },
      { key: { localId: wid(WEB), remoteId: POLICY_ANY_REMOTE }, authType: 1, mode: 'permissive' },
      { key: { localId: wid(WEB), remoteId: wid(CLIENT) }, authType: 1, mode: 'enforce' },
    ]);
  });

  it('fails closed for pod addresses not known yet when asked to', () => {
    const POLICY2 = `rules:
  - { name: web-api, from: "${WEB}", to: "${API}" }
  - { name: client-new, from: "${CLIENT}", to: "spiffe://demo.local/ns/demo/sa/not-running-yet", mode: permissive }
`;
    const { state, identities, nodes } = compile('node-a', POLICY2, { unresolvedPodCidrs: true });
    // every node's pod CIDRs, this node's included, as unresolved
    expect(state.ipcache.filter((e) => e.identity === IDENTITY_UNRESOLVED)).toEqual([
      { cidr: '10.10.1.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 0 },
      { cidr: '10.10.2.0/24', identity: IDENTITY_UNRESOLVED, nodeId: nodes.ids.get('node-b') },
      { cidr: 'fd00:a::/64', identity: IDENTITY_UNRESOLVED, nodeId: 0 },
    ]);
    // each local identity named by a rule gets (local, unresolved) with its strongest mode, even
    // when no current workload matches the rule's other side
    const unresolved = state.policy.filter((e) => e.key.remoteId === IDENTITY_UNRESOLVED);
    expect(unresolved).toEqual(
      [
        {
          key: { localId: identities.ids.get(CLIENT), remoteId: IDENTITY_UNRESOLVED },
          authType: 1,
          mode: 'permissive',
        },
        {
          key: { localId: identities.ids.get(WEB), remoteId: IDENTITY_UNRESOLVED },
          authType: 1,
          mode: 'enforce',
        },
      ].sort((a, b) => (a.key.localId as number) - (b.key.localId as number)),
    );
    // a required wildcard already covers unresolved addresses
    const w = compile('node-b', `rules:\n  - { name: prom, from: "${PROM}", to: "*" }\n`, {
      unresolvedPodCidrs: true,
    });
    expect(
      w.state.policy.filter(
        (e) => e.key.localId === w.identities.ids.get(PROM) && e.key.remoteId === IDENTITY_UNRESOLVED,
      ),
    ).toEqual([]);
  });

  it('uses the batch allocation when available', () => {
    const identities = new MemoryAllocator();
    let batches = 0;
    const batching: HandleAllocator = {
      idFor: (k) => identities.idFor(k),
      idsFor: (keys) => {
        batches++;
        return keys.map((k) => identities.idFor(k));
      },
    };
    compileNodeState({
      nodeName: 'node-a',
      inventory,
      policy: parsePolicy('rules: []\n'),
      identities: batching,
      nodes: new MemoryAllocator(),
    });
    expect(batches).toBe(1);
  });

  it('refuses a node that is not in the inventory', () => {
    expect(() => compile('node-z', 'rules: []\n')).toThrow(
      'compile node state: node "node-z" is not in inventory',
    );
  });
});

describe('preauthPairs', () => {
  const POLICY = `rules:
  - { name: web-api, from: "${WEB}", to: "${API}" }
  - { name: client-web, from: "${CLIENT}", to: "${WEB}" }
`;
  const named = (c: ReturnType<typeof compile>, keys: ReturnType<typeof preauthPairs>) => {
    const id = new Map([...c.identities.ids].map(([k, v]) => [v, k]));
    const node = new Map([...c.nodes.ids].map(([k, v]) => [v, k]));
    return keys.map((k) => {
      expect(k.authType).toBe(AuthType.SpiffeMtls);
      return `${id.get(k.localId)} -> ${id.get(k.remoteId)} @${node.get(k.remoteNode)}`;
    });
  };

  it('lists the required pairs with workloads on other nodes, from the node whose name sorts first', () => {
    const a = compile('node-a', POLICY);
    const input = { nodeName: 'node-a', inventory, policy: parsePolicy(POLICY) };
    // web<->api crosses nodes; web<->client is local; the web replica on node-b pairs with client.
    expect(named(a, preauthPairs(a.state, input))).toEqual([
      `${CLIENT} -> ${WEB} @node-b`,
      `${WEB} -> ${API} @node-b`,
    ]);
    // node-b sorts after node-a: node-a initiates, node-b only answers.
    const b = compile('node-b', POLICY);
    expect(preauthPairs(b.state, { ...input, nodeName: 'node-b' })).toEqual([]);
  });

  it('lists nothing without rules', () => {
    const none = 'rules: []\n';
    const a = compile('node-a', none);
    expect(preauthPairs(a.state, { nodeName: 'node-a', inventory, policy: parsePolicy(none) })).toEqual([]);
  });
});

describe('examples', () => {
  it.each(['examples/config.yaml', 'examples/config.node-b.yaml'])(
    '%s compiles against the example files',
    (file) => {
      const config = loadConfig({ file });
      const inv = loadInventoryFile(config.inventory.file as string);
      assertNodeListed(inv, config.node, config.file);
      const state = compileNodeState({
        nodeName: config.node,
        inventory: inv,
        policy: loadPolicyFile(config.policy.file as string),
        identities: new MemoryAllocator(),
        nodes: new MemoryAllocator(),
      });
      expect(state.ipcache).toHaveLength(4);
      // web (node-a) <-> api (node-b) is the one enabled rule: one entry on each node.
      expect(state.policy).toHaveLength(1);
    },
  );
});
