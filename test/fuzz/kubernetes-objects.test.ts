/**
 * Fuzz target: Kubernetes objects as the API server hands them over (Pod, Node, MutualAuthPolicy)
 * through the converters of src/kubernetes. Pods and nodes keep their API types (the API server
 * enforces them) with odd values in every field, annotation and address; MutualAuthPolicy objects
 * are mutated freely (a CRD's schema may be older than the daemon). Invariants: the converters
 * never throw; a converted pod has a valid SPIFFE ID of the cluster's trust domain, normalized
 * distinct IP addresses and its node; a converted node has an IP address, a valid WireGuard key
 * and ports when it has them, and valid pod CIDRs; a policy converts to rules or to problems.
 */
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SPIFFE_ID_TEMPLATE,
  mutualAuthPolicyConverter,
  nodeToInventoryNode,
  podToWorkload,
} from '../../src/kubernetes/index.js';
import type { NodeObject, PodObject, PolicyObject } from '../../src/kubernetes/index.js';
import { parseCidr } from '../../src/config/index.js';
import { parseSpiffeId } from '../../src/spiffe/index.js';
import { isWireguardKey } from '../../src/wireguard/index.js';
import { applyDocOp, corpus, docOp, fc, fuzzSync, oddValue, timeoutFor } from './harness.js';

const TARGET = 'kubernetes-objects';
const CI_SECONDS = 2;
const TD = 'cluster.local';

const seed = (name: string): unknown =>
  JSON.parse(
    corpus(TARGET)
      .find((f) => f.name === name)!
      .data.toString('utf8'),
  );

const str = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    'default',
    'node-a',
    'a/b',
    '..',
    '*',
    '{namespace}',
    'UPPER',
    'a'.repeat(300),
    'ns:x',
    'é',
  ),
  fc.constantFrom(
    '10.1.0.5',
    '10.1.0.5/32',
    '::ffff:10.1.0.5',
    'fd00:1::5',
    'FD00:1::5',
    '010.1.0.5',
    '1.2.3.4.5',
    'fe80::1%eth0',
    '[::1]',
  ),
  fc.constantFrom(
    '10.1.0.0/24',
    '10.1.0.1/24',
    'fd00::/129',
    '0.0.0.0/0',
    '10.1.0.0/24,fd00:1::/64',
    ',,',
    '51820',
    '0',
    '65536',
    '-1',
    ' 4250',
    '4250 ',
  ),
  fc.string({ maxLength: 12 }),
  fc.base64String({ maxLength: 48 }),
);
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });

const meta = fc.record(
  {
    name: str,
    namespace: str,
    uid: str,
    creationTimestamp: fc.oneof(str, fc.constant('2026-11-30T10:00:00Z')),
    deletionTimestamp: maybe(str),
    annotations: fc.dictionary(
      fc.oneof(
        fc.constantFrom(
          'meshauth.io/wireguard-public-key',
          'meshauth.io/wireguard-port',
          'meshauth.io/handshake-port',
          'meshauth.io/pod-cidrs',
        ),
        fc.string({ maxLength: 8 }),
      ),
      str,
      { maxKeys: 4 },
    ),
  },
  { requiredKeys: [] },
);

const pod: fc.Arbitrary<PodObject> = fc.record(
  {
    metadata: meta,
    spec: fc.record(
      { nodeName: str, serviceAccountName: str, hostNetwork: fc.boolean() },
      { requiredKeys: [] },
    ),
    status: fc.record(
      {
        phase: fc.oneof(fc.constantFrom('Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'), str),
        podIP: str,
        podIPs: fc.array(fc.record({ ip: str }, { requiredKeys: [] }), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

const node: fc.Arbitrary<NodeObject> = fc.record(
  {
    metadata: meta,
    spec: fc.record({ podCIDR: str, podCIDRs: fc.array(str, { maxLength: 3 }) }, { requiredKeys: [] }),
    status: fc.record(
      {
        addresses: fc.array(
          fc.record(
            { type: fc.oneof(fc.constantFrom('InternalIP', 'ExternalIP', 'Hostname'), str), address: str },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

const template = fc.oneof(
  fc.constant(DEFAULT_SPIFFE_ID_TEMPLATE),
  fc.constantFrom(
    'spiffe://{trustDomain}/ns/{namespace}/pod/{podName}',
    'spiffe://{trustDomain}/node/{nodeName}/sa/{serviceAccount}',
  ),
);

function checkPod(p: PodObject, spiffeIdTemplate: string): void {
  const r = podToWorkload(p, { trustDomain: TD, spiffeIdTemplate });
  if (!r.ok) {
    expect([
      'host-network',
      'terminating',
      'finished',
      'unscheduled',
      'no-ip',
      'malformed-ip',
      'invalid-spiffe-id',
    ]).toContain(r.reason);
    return;
  }
  const id = parseSpiffeId(r.workload.spiffeId);
  expect(id.trustDomain.name).toBe(TD);
  expect(id.isRoot).toBe(false);
  expect(r.workload.node).toBe(p.spec?.nodeName);
  expect(r.workload.ips.length).toBeGreaterThan(0);
  expect(new Set(r.workload.ips).size).toBe(r.workload.ips.length);
  for (const ip of r.workload.ips) expect(isIP(ip), ip).not.toBe(0);
}

function checkNode(n: NodeObject): void {
  const r = nodeToInventoryNode(n, { addressType: 'InternalIP' });
  if (!r.ok) {
    expect(['no-address', 'malformed-address']).toContain(r.reason);
    return;
  }
  expect(isIP(r.node.address), r.node.address).not.toBe(0);
  if (r.node.wireguardPublicKey !== undefined) expect(isWireguardKey(r.node.wireguardPublicKey)).toBe(true);
  for (const port of [r.node.handshakePort, r.node.wireguardPort]) {
    if (port !== undefined)
      expect(Number.isInteger(port) && port >= 1 && port <= 65535, String(port)).toBe(true);
  }
  for (const c of r.node.podCIDRs) expect(parseCidr(c), c).toBeDefined();
}

function checkPolicy(obj: unknown): void {
  const r = mutualAuthPolicyConverter(TD, DEFAULT_SPIFFE_ID_TEMPLATE)(obj as PolicyObject);
  if (r.ok) for (const rule of r.rules) expect(['required', 'permissive', 'disabled']).toContain(rule.mode);
  else expect(r.problems.length).toBeGreaterThan(0);
}

describe('fuzz: Kubernetes objects', () => {
  it('corpus objects convert', () => {
    expect(
      podToWorkload(seed('pod.json') as PodObject, {
        trustDomain: TD,
        spiffeIdTemplate: DEFAULT_SPIFFE_ID_TEMPLATE,
      }).ok,
    ).toBe(true);
    expect(nodeToInventoryNode(seed('node.json') as NodeObject, { addressType: 'InternalIP' })).toMatchObject(
      { ok: true, problems: [] },
    );
    const r = mutualAuthPolicyConverter(
      TD,
      DEFAULT_SPIFFE_ID_TEMPLATE,
    )(seed('mutualauthpolicy.json') as PolicyObject);
    expect(r).toMatchObject({ ok: true, rules: [{ mode: 'permissive' }] });
  });

  it(
    'pods: never throw; converted ones have a valid SPIFFE ID, addresses and node',
    () => {
      const mutatedSeed = fc
        .array(docOp, { minLength: 1, maxLength: 3 })
        .map((ops) => ops.reduce(applyDocOp, seed('pod.json')) as PodObject);
      fuzzSync(
        `${TARGET}-pod`,
        CI_SECONDS,
        fc.record({ p: fc.oneof(pod, mutatedSeed.filter(typedLikeApi)), t: template }),
        ({ p, t }) => checkPod(p, t),
      );
    },
    timeoutFor(CI_SECONDS),
  );

  it(
    'nodes: never throw; converted ones have an IP address, valid key, ports and pod CIDRs',
    () => {
      fuzzSync(`${TARGET}-node`, CI_SECONDS, node, checkNode);
    },
    timeoutFor(CI_SECONDS),
  );

  it(
    'MutualAuthPolicy objects of any shape: rules or problems, never a throw',
    () => {
      const mutated = fc
        .array(docOp, { minLength: 1, maxLength: 4 })
        .map((ops) => ops.reduce(applyDocOp, seed('mutualauthpolicy.json')));
      fuzzSync(`${TARGET}-policy`, CI_SECONDS, fc.oneof(mutated, oddValue), checkPolicy);
    },
    timeoutFor(CI_SECONDS),
  );
});

/** The API server enforces field types of core objects: keep only mutations that respect them. */
function typedLikeApi(p: PodObject): boolean {
  const isStr = (v: unknown): boolean => v === undefined || typeof v === 'string';
  const isObj = (v: unknown): boolean =>
    v === undefined || (typeof v === 'object' && v !== null && !Array.isArray(v));
  if (!isObj(p.metadata) || !isObj(p.spec) || !isObj(p.status)) return false;
  const m = (p.metadata ?? {}) as Record<string, unknown>;
  const s = (p.spec ?? {}) as Record<string, unknown>;
  const st = (p.status ?? {}) as Record<string, unknown>;
  if (
    ![
      m['name'],
      m['namespace'],
      m['uid'],
      s['nodeName'],
      s['serviceAccountName'],
      st['phase'],
      st['podIP'],
    ].every(isStr)
  )
    return false;
  if (s['hostNetwork'] !== undefined && typeof s['hostNetwork'] !== 'boolean') return false;
  if (m['deletionTimestamp'] !== undefined && typeof m['deletionTimestamp'] !== 'string') return false;
  if (m['creationTimestamp'] !== undefined && typeof m['creationTimestamp'] !== 'string') return false;
  const ips = st['podIPs'];
  if (ips === undefined) return true;
  return Array.isArray(ips) && ips.every((x) => isObj(x) && isStr((x as Record<string, unknown>)['ip']));
}
