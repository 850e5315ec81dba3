import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Svid, TrustBundles } from '../svid.js';
import { parseCertificate, parseCertificates, toPem } from '../certificate.js';
import { parseSpiffeId, parseTrustDomain } from '../id.js';
import { checkLeaf, keyMatchesLeaf } from '../x509-svid.js';
import type { ResponseRejectReason, ResponseRejection } from './errors.js';
import type { SubscribeToX509SvidsResponseMessage, X509SvidResponseMessage } from './proto.js';

/** An X509-SVID as received: leaf rules checked and key matched, chain not yet verified. */
export interface ReceivedX509Svid {
  spiffeId: string;
  hint: string;
  svid: Svid;
}

class Rejected extends Error {
  constructor(
    readonly reason: ResponseRejectReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Build an Svid from a declared SPIFFE ID, DER certificates (leaf first) and a PKCS#8 DER key.
 * The leaf must satisfy the X509-SVID leaf rules, carry the declared ID and match the key.
 */
function buildSvid(declaredId: string, chainDer: readonly Buffer[], keyDer: Buffer): Svid {
  let id: string;
  try {
    id = parseSpiffeId(declaredId).toString();
  } catch (err) {
    throw new Rejected(
      'bad-spiffe-id',
      `declared SPIFFE ID "${declaredId}" is invalid: ${(err as Error).message}`,
    );
  }
  if (chainDer.length === 0) throw new Rejected('empty-chain', `SVID for ${id} has no certificates`);
  let leaf;
  try {
    leaf = parseCertificate(chainDer[0]!);
    for (const d of chainDer.slice(1)) parseCertificate(d);
  } catch (err) {
    throw new Rejected(
      'malformed-certificate',
      `SVID for ${id} has a malformed certificate: ${(err as Error).message}`,
    );
  }
  let leafId: string;
  try {
    leafId = checkLeaf(leaf).toString();
  } catch (err) {
    throw new Rejected('malformed-certificate', `SVID for ${id}: ${(err as Error).message}`);
  }
  if (leafId !== id) throw new Rejected('spiffe-id-mismatch', `SVID declared as ${id} carries ${leafId}`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyDer, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new Rejected(
      'malformed-key',
      `SVID for ${id} has a malformed PKCS#8 key: ${(err as Error).message}`,
    );
  }
  if (!keyMatchesLeaf(key, leaf.x509))
    throw new Rejected('key-mismatch', `SVID for ${id}: the private key does not belong to the leaf`);
  return {
    spiffeId: id,
    chainDer: [...chainDer],
    chainPem: toPem(chainDer),
    key,
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
    leaf: leaf.x509,
    notBefore: new Date(leaf.x509.validFrom),
    notAfter: new Date(leaf.x509.validTo),
  };
}

function splitChain(data: Buffer): Buffer[] {
  if (data.length === 0) return [];
  try {
    return parseCertificates(data);
  } catch (err) {
    throw new Rejected('malformed-certificate', `certificate chain is not DER: ${(err as Error).message}`);
  }
}

function rejection(err: unknown, subject: string): ResponseRejection {
  if (err instanceof Rejected) return { reason: err.reason, subject, message: err.message };
  return { reason: 'malformed-certificate', subject, message: (err as Error).message };
}

/**
 * Trust bundles keyed "spiffe://<td>" (or a bare "<td>") to concatenated DER authorities. Entries
 * with an invalid trust domain, zero authorities or malformed certificates are rejected.
 */
export function decodeBundleMap(map: Readonly<Record<string, Buffer>>): {
  bundles: Map<string, Buffer[]>;
  rejected: ResponseRejection[];
} {
  const bundles = new Map<string, Buffer[]>();
  const rejected: ResponseRejection[] = [];
  for (const [key, value] of Object.entries(map)) {
    let td: string;
    try {
      td = parseTrustDomain(key).name;
    } catch (err) {
      rejected.push({
        reason: 'bad-trust-domain',
        subject: key,
        message: `bundle key "${key}" is not a trust domain: ${(err as Error).message}`,
      });
      continue;
    }
    let ders: Buffer[];
    try {
      ders = value.length === 0 ? [] : parseCertificates(value);
      for (const d of ders) {
        const c = parseCertificate(d);
        if (!c.x509.ca) throw new Error('an authority is not a CA certificate');
      }
    } catch (err) {
      rejected.push({
        reason: 'malformed-bundle',
        subject: key,
        message: `bundle for "${td}" is malformed: ${(err as Error).message}`,
      });
      continue;
    }
    if (ders.length === 0) {
      rejected.push({
        reason: 'empty-bundle',
        subject: key,
        message: `bundle for "${td}" has no authorities`,
      });
      continue;
    }
    bundles.set(td, ders);
  }
  return { bundles, rejected };
}

/**
 * A Workload API X509SVIDResponse: SVIDs (duplicate non-empty hints: the first wins) and the
 * bundles it carries (each SVID's own trust domain plus federated_bundles).
 */
export function decodeX509SvidResponse(msg: X509SvidResponseMessage): {
  svids: ReceivedX509Svid[];
  bundles: TrustBundles;
  rejected: ResponseRejection[];
} {
  const svids: ReceivedX509Svid[] = [];
  const rejected: ResponseRejection[] = [];
  const hints = new Set<string>();
  const bundleMap: Record<string, Buffer> = { ...msg.federatedBundles };
  for (const s of msg.svids) {
    if (s.hint !== '' && hints.has(s.hint)) {
      rejected.push({
        reason: 'duplicate-hint',
        subject: s.spiffeId,
        message: `SVID ${s.spiffeId} repeats hint "${s.hint}"; only the first is used`,
      });
      continue;
    }
    try {
      const svid = buildSvid(s.spiffeId, splitChain(s.x509Svid), s.x509SvidKey);
      if (s.hint !== '') hints.add(s.hint);
      svids.push({ spiffeId: svid.spiffeId, hint: s.hint, svid });
      const td = parseSpiffeId(svid.spiffeId).trustDomain.name;
      if (s.bundle.length > 0 && bundleMap[td] === undefined && bundleMap[`spiffe://${td}`] === undefined) {
        bundleMap[`spiffe://${td}`] = s.bundle;
      }
    } catch (err) {
      rejected.push(rejection(err, s.spiffeId));
    }
  }
  const b = decodeBundleMap(bundleMap);
  return { svids, bundles: b.bundles, rejected: [...rejected, ...b.rejected] };
}

/** A Delegated Identity API SubscribeToX509SVIDsResponse. */
export function decodeDelegatedX509Svids(msg: SubscribeToX509SvidsResponseMessage): {
  svids: ReceivedX509Svid[];
  federatesWith: string[];
  rejected: ResponseRejection[];
} {
  const svids: ReceivedX509Svid[] = [];
  const rejected: ResponseRejection[] = [];
  const hints = new Set<string>();
  for (const item of msg.x509Svids) {
    const s = item.x509Svid;
    const declared = s?.id ? `spiffe://${s.id.trustDomain}${s.id.path}` : '';
    if (!s) {
      rejected.push({ reason: 'empty-chain', subject: '', message: 'response item has no x509_svid' });
      continue;
    }
    if (s.hint !== '' && hints.has(s.hint)) {
      rejected.push({
        reason: 'duplicate-hint',
        subject: declared,
        message: `SVID ${declared} repeats hint "${s.hint}"; only the first is used`,
      });
      continue;
    }
    try {
      const chain: Buffer[] = [];
      for (const c of s.certChain) chain.push(...splitChain(c));
      const svid = buildSvid(declared, chain, item.x509SvidKey);
      if (s.hint !== '') hints.add(s.hint);
      svids.push({ spiffeId: svid.spiffeId, hint: s.hint, svid });
    } catch (err) {
      rejected.push(rejection(err, declared));
    }
  }
  return { svids, federatesWith: [...msg.federatesWith], rejected };
}
