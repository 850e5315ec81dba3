import { normalizeIp, spiffeIdProblem } from '../config/index.js';
import type { InventoryWorkload } from '../inventory/index.js';
import { hostAddressProblem, parseIp } from '../net/index.js';
import type { PodObject } from './objects.js';

/**
 * Why a normalized address cannot be a pod's or node's own address (unspecified, loopback,
 * multicast, broadcast): such an address in the ipcache would give that identity to traffic that
 * is not the object's (every host's loopback, any unbound socket). Undefined when it can be.
 */
export function notHostAddress(normalized: string): string | undefined {
  const p = parseIp(normalized);
  const why = p.ok ? hostAddressProblem(p.value) : 'not an address';
  return why ? `${why} address` : undefined;
}

/** Default SPIFFE ID template: the SPIRE convention for Kubernetes workloads. */
export const DEFAULT_SPIFFE_ID_TEMPLATE = 'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}';

const PLACEHOLDERS = ['trustDomain', 'namespace', 'serviceAccount', 'podName', 'nodeName'] as const;

/** Why a pod is not a workload. "not-workload" reasons are normal; the others are bad input. */
export type PodSkipReason =
  | 'host-network'
  | 'terminating'
  | 'finished'
  | 'unscheduled'
  | 'no-ip'
  | 'malformed-ip'
  | 'invalid-spiffe-id';

/** Reasons that mean the object itself is wrong (logged at warn and counted as bad input). */
export const BAD_POD_REASONS: ReadonlySet<PodSkipReason> = new Set(['malformed-ip', 'invalid-spiffe-id']);

export type PodResult =
  | { ok: true; workload: InventoryWorkload & { name: string }; uid: string; createdAtMs: number }
  | { ok: false; reason: PodSkipReason; detail?: string };

export interface PodConversion {
  trustDomain: string;
  /** With {trustDomain}, {namespace}, {serviceAccount}, {podName}, {nodeName}. */
  spiffeIdTemplate: string;
}

/** Returns the reason when the template uses an unknown placeholder. */
export function spiffeIdTemplateProblem(template: string): string | undefined {
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1] as string))
      return `unknown placeholder {${m[1]}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`;
  }
  return undefined;
}

function fillTemplate(t: string, v: Record<(typeof PLACEHOLDERS)[number], string>): string {
  return t.replace(/\{(\w+)\}/g, (all, k: string) => (k in v ? v[k as keyof typeof v] : all));
}

function timeMs(t: Date | string | undefined): number {
  if (t === undefined) return 0;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * A pod as a workload: SPIFFE ID from the template, addresses from status.podIPs (IPv4 and IPv6;
 * status.podIP when podIPs is absent), node from spec.nodeName, and the SPIRE Kubernetes
 * workload-attestor selectors k8s:ns, k8s:sa, k8s:pod-uid. Host-network, unscheduled, IP-less,
 * finished (Succeeded/Failed) and terminating (deletionTimestamp set) pods are not workloads.
 * A pod with any malformed address, or one that cannot be a pod's (unspecified, loopback,
 * multicast, broadcast), is skipped whole: a partial entry could pin the wrong identity.
 */
export function podToWorkload(pod: PodObject, conv: PodConversion): PodResult {
  const meta = pod.metadata ?? {};
  if (pod.spec?.hostNetwork) return { ok: false, reason: 'host-network' };
  if (meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null)
    return { ok: false, reason: 'terminating' };
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { ok: false, reason: 'finished' };
  const node = pod.spec?.nodeName;
  if (!node) return { ok: false, reason: 'unscheduled' };
  const raw = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => !!ip);
  if (raw.length === 0 && pod.status?.podIP) raw.push(pod.status.podIP);
  if (raw.length === 0) return { ok: false, reason: 'no-ip' };
  const ips: string[] = [];
  for (const ip of raw) {
    const n = normalizeIp(ip);
    if (n === undefined || ip.includes('/')) return { ok: false, reason: 'malformed-ip', detail: ip };
    const special = notHostAddress(n);
    if (special) return { ok: false, reason: 'malformed-ip', detail: `${ip}: ${special}` };
    if (!ips.includes(n)) ips.push(n);
  }
  const namespace = meta.namespace ?? 'default';
  const serviceAccount = pod.spec?.serviceAccountName || 'default';
  const podName = meta.name ?? '';
  const spiffeId = fillTemplate(conv.spiffeIdTemplate, {
    trustDomain: conv.trustDomain,
    namespace,
    serviceAccount,
    podName,
    nodeName: node,
  });
  const problem = spiffeIdProblem(spiffeId, true);
  if (problem) return { ok: false, reason: 'invalid-spiffe-id', detail: `${spiffeId}: ${problem}` };
  const uid = meta.uid ?? '';
  return {
    ok: true,
    uid,
    createdAtMs: timeMs(meta.creationTimestamp),
    workload: {
      name: `${namespace}/${podName}`,
      spiffeId,
      node,
      ips,
      selectors: [`k8s:ns:${namespace}`, `k8s:sa:${serviceAccount}`, ...(uid ? [`k8s:pod-uid:${uid}`] : [])],
    },
  };
}
