import * as z from 'zod';
import { fields, parseCidr, showValue } from '../config/index.js';
import type { InventoryData } from './types.js';

const opt = () => z.unknown().optional();

function custom<T>(check: (v: unknown) => { value: T } | string) {
  return opt().transform((v, ctx): T => {
    const r = check(v);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return r.value;
  });
}

const cidr = custom((v) => {
  const c = typeof v === 'string' ? parseCidr(v) : undefined;
  return c ? { value: c.text } : `must be a CIDR like 10.0.1.0/24 with zero host bits (got ${showValue(v)})`;
});

const wgKey = custom((v) => {
  if (v === undefined) return { value: undefined };
  if (typeof v === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(v) && Buffer.from(v, 'base64').length === 32)
    return { value: v };
  return `must be a base64 WireGuard public key of 32 bytes (got ${showValue(v)})`;
});

const selector = custom((v) =>
  typeof v === 'string' && /^[A-Za-z0-9_-]+:.+$/.test(v)
    ? { value: v }
    : `must be a selector "type:value" like "k8s:ns:demo" (got ${showValue(v)})`,
);

const nodeName = custom((v) =>
  typeof v === 'string' && /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(v)
    ? { value: v }
    : v === undefined
      ? 'is required'
      : `must be a node name of lower-case letters, digits, "-" and "." (got ${showValue(v)})`,
);

export const inventorySchema = z.strictObject({
  nodes: z
    .array(
      z.strictObject({
        name: nodeName,
        address: fields.ipField(),
        podCIDRs: z
          .array(cidr)
          .optional()
          .transform((v) => v ?? []),
        wireguardPublicKey: wgKey,
        handshakePort: fields.intField(1, 65535).optional(),
      }),
    )
    .min(1),
  workloads: z
    .array(
      z.strictObject({
        name: fields.optionalStringField(),
        spiffeId: fields.spiffeIdField(),
        node: nodeName,
        ips: z.array(fields.ipField()).min(1),
        selectors: z
          .array(selector)
          .optional()
          .transform((v) => v ?? []),
      }),
    )
    .optional()
    .transform((v) => v ?? []),
});

export type ParsedInventory = z.output<typeof inventorySchema>;

export function toInventoryData(p: ParsedInventory): InventoryData {
  return {
    nodes: p.nodes.map((n) => ({
      name: n.name,
      address: n.address,
      podCIDRs: n.podCIDRs,
      wireguardPublicKey: n.wireguardPublicKey,
      handshakePort: n.handshakePort,
    })),
    workloads: p.workloads.map((w) => ({
      name: w.name,
      spiffeId: w.spiffeId,
      node: w.node,
      ips: w.ips,
      selectors: w.selectors,
    })),
  };
}
