import 'reflect-metadata';
import { createPrivateKey, sign, webcrypto, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * Certificate chains that vary the fields and extensions RFC 5280 (§4.1, §4.2, §6.1) speaks about,
 * for the differential test of meshauth's X509-SVID verification against `openssl verify`.
 *
 * Every chain is root -> 0..2 intermediates -> leaf, built from a default that is a valid
 * X509-SVID (EC P-256, strict RFC 5280 profile: SKID on CAs, AKID on issued certificates, critical
 * basicConstraints and keyUsage), with one defect applied per case.
 */

export const TD = 'demo.local';
export const SPIFFE_ID = `spiffe://${TD}/ns/demo/sa/web`;
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

/** What one certificate of a chain looks like; every field defaults to a conforming value. */
export interface CertDef {
  subject?: string;
  /** basicConstraints; null leaves it out. */
  bc?: { ca: boolean; pathLen?: number; critical?: boolean } | null;
  /** keyUsage flags (x509.KeyUsageFlags); null leaves it out. */
  ku?: number | null;
  eku?: string[] | null;
  uris?: string[];
  dns?: string[];
  sanCritical?: boolean;
  /** SKID: present (default), missing, or critical. */
  skid?: 'ok' | 'missing' | 'critical';
  /** AKID of issued certificates: matching (default), missing, another key id, or critical. */
  akid?: 'ok' | 'missing' | 'wrong' | 'critical';
  /** Validity relative to the verification time, in days. */
  notBeforeDays?: number;
  notAfterDays?: number;
  extra?: x509.Extension[];
  /** Rewrite the signed certificate before it is (re-)signed. */
  tbs?: (t: asn.TBSCertificate) => void;
  /** Sign with an unrelated key instead of the issuer's. */
  wrongSigner?: boolean;
  /** Flip a byte of the signature after signing. */
  tamper?: boolean;
  /** Issuer name written into the certificate instead of the issuer's subject. */
  issuerName?: string;
}

export interface ChainCase {
  name: string;
  root?: CertDef;
  /** Intermediates, closest to the root first. */
  inters?: CertDef[];
  leaf?: CertDef;
  /** Anchors of the bundle: the root (default), or the first intermediate too. */
  anchors?: 'root' | 'root+inter0' | 'inter0';
  /** Also present the root in the chain. */
  presentRoot?: boolean;
  /** Leave the intermediate next to the root out of the presented chain. */
  omitTopIntermediate?: boolean;
  /** Verdict of RFC 5280 (and OpenSSL). */
  expect: 'accept' | 'reject';
  /**
   * Set when an X509-SVID rule (SPIFFE X509-SVID §4, §5) rejects what RFC 5280 allows, or rejects
   * first: the meshauth reason. The differential then expects meshauth to reject with it.
   */
  spiffe?: string;
  /** The meshauth reason expected for an RFC 5280 refusal. */
  reason?: string;
}

export interface BuiltChain {
  leaf: Buffer;
  /** Presented certificates after the leaf. */
  presented: Buffer[];
  anchors: Buffer[];
}

const CA_KU = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
const LEAF_KU = x509.KeyUsageFlags.digitalSignature;
const EKU_TLS = [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] as string[];

interface Issued {
  der: Buffer;
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  key: KeyObject;
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function keyObject(keys: webcrypto.CryptoKeyPair): Promise<KeyObject> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
}

let serialCounter = 1;

async function issue(
  def: CertDef,
  role: 'root' | 'inter' | 'leaf',
  issuer: Issued | undefined,
  at: Date,
): Promise<Issued> {
  const keys = await newKeys();
  const isCa = role !== 'leaf';
  const exts: x509.Extension[] = [];
  const bc = def.bc === undefined ? { ca: isCa, critical: true } : def.bc;
  if (bc) exts.push(new x509.BasicConstraintsExtension(bc.ca, bc.pathLen, bc.critical ?? true));
  const ku = def.ku === undefined ? (isCa ? CA_KU : LEAF_KU) : def.ku;
  if (ku !== null) exts.push(new x509.KeyUsagesExtension(ku, true));
  const eku = def.eku === undefined ? (isCa ? null : EKU_TLS) : def.eku;
  if (eku) exts.push(new x509.ExtendedKeyUsageExtension(eku));
  const uris = def.uris ?? (role === 'leaf' ? [SPIFFE_ID] : [`spiffe://${TD}`]);
  const names: x509.JsonGeneralName[] = [
    ...uris.map((value) => ({ type: 'url' as const, value })),
    ...(def.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  if (names.length > 0) exts.push(new x509.SubjectAlternativeNameExtension(names, def.sanCritical ?? false));
  const skid = def.skid ?? 'ok';
  if (skid !== 'missing') {
    const e = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
    exts.push(skid === 'critical' ? new x509.SubjectKeyIdentifierExtension(e.keyId, true) : e);
  }
  const signer = issuer ?? { keys, cert: undefined };
  const akid = def.akid ?? 'ok';
  if (akid !== 'missing' && (issuer || akid !== 'ok')) {
    if (akid === 'wrong') exts.push(new x509.AuthorityKeyIdentifierExtension('00112233445566778899', false));
    else if (issuer)
      exts.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, akid === 'critical'));
  }
  exts.push(...(def.extra ?? []));
  const subject = def.subject ?? (role === 'leaf' ? 'O=SPIRE,CN=web' : `O=test,CN=${role} ${serialCounter}`);
  const t = at.getTime();
  const notBefore = new Date(t + (def.notBeforeDays ?? -1) * DAY);
  const notAfter = new Date(t + (def.notAfterDays ?? (isCa ? 30 : 7)) * DAY);
  const serialNumber = `01${(serialCounter++).toString(16).padStart(8, '0')}`;
  const base = issuer
    ? await x509.X509CertificateGenerator.create({
        serialNumber,
        subject,
        issuer: def.issuerName ?? issuer.cert.subject,
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: signer.keys.privateKey,
        signingAlgorithm: ALG,
        extensions: exts,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber,
        name: subject,
        notBefore,
        notAfter,
        keys,
        signingAlgorithm: ALG,
        extensions: exts,
      });
  let der = Buffer.from(base.rawData);
  if (def.tbs || def.wrongSigner) {
    const c = AsnConvert.parse(der, asn.Certificate);
    def.tbs?.(c.tbsCertificate);
    const signingKey = def.wrongSigner ? await keyObject(await newKeys()) : await keyObject(signer.keys);
    const tbsDer = Buffer.from(AsnConvert.serialize(c.tbsCertificate));
    c.signatureValue = new Uint8Array(sign('sha256', tbsDer, { key: signingKey, dsaEncoding: 'der' })).buffer;
    der = Buffer.from(AsnConvert.serialize(c));
  }
  if (def.tamper) {
    der = Buffer.from(der);
    der[der.length - 3]! ^= 0x5a;
  }
  return { der, cert: new x509.X509Certificate(der), keys, key: await keyObject(keys) };
}

/** Build a case's chain, valid at `at`. */
export async function buildChain(c: ChainCase, at: Date): Promise<BuiltChain> {
  const root = await issue(c.root ?? {}, 'root', undefined, at);
  let issuer = root;
  const inters: Issued[] = [];
  for (const def of c.inters ?? []) {
    issuer = await issue(def, 'inter', issuer, at);
    inters.push(issuer);
  }
  const leaf = await issue(c.leaf ?? {}, 'leaf', issuer, at);
  const presented = inters
    .slice()
    .reverse()
    .map((i) => i.der);
  if (c.omitTopIntermediate) presented.pop();
  if (c.presentRoot) presented.push(root.der);
  const anchors =
    c.anchors === 'inter0'
      ? [inters[0]!.der]
      : c.anchors === 'root+inter0'
        ? [root.der, inters[0]!.der]
        : [root.der];
  return { leaf: leaf.der, presented, anchors };
}

// ---- extension values the builder library has no class for (DER written with asn1-x509) ----

const UNKNOWN_OID = '1.3.6.1.4.1.55555.1';
const NULL_DER = new Uint8Array([0x05, 0x00]);

export function unknownExt(critical: boolean): x509.Extension {
  return new x509.Extension(UNKNOWN_OID, critical, NULL_DER);
}

function nameConstraints(
  kind: 'uniformResourceIdentifier' | 'dNSName',
  permitted: string[],
  excluded: string[],
): x509.Extension {
  const subtrees = (names: string[]) =>
    names.length === 0
      ? undefined
      : new asn.GeneralSubtrees(
          names.map((n) => new asn.GeneralSubtree({ base: new asn.GeneralName({ [kind]: n }) })),
        );
  const nc = new asn.NameConstraints({
    permittedSubtrees: subtrees(permitted),
    excludedSubtrees: subtrees(excluded),
  });
  return new x509.Extension(asn.id_ce_nameConstraints, true, AsnConvert.serialize(nc));
}

function certificatePolicies(oids: string[]): x509.Extension {
  const cp = new asn.CertificatePolicies(oids.map((o) => new asn.PolicyInformation({ policyIdentifier: o })));
  return new x509.Extension(asn.id_ce_certificatePolicies, false, AsnConvert.serialize(cp));
}

/** PolicyConstraints ::= SEQUENCE { requireExplicitPolicy [0] SkipCerts OPTIONAL, inhibitPolicyMapping [1] ... } */
function policyConstraints(requireExplicitPolicy: number): x509.Extension {
  return new x509.Extension(
    asn.id_ce_policyConstraints,
    true,
    new Uint8Array([0x30, 0x03, 0x80, 0x01, requireExplicitPolicy]),
  );
}

function inhibitAnyPolicy(skip: number): x509.Extension {
  return new x509.Extension(asn.id_ce_inhibitAnyPolicy, true, new Uint8Array([0x02, 0x01, skip]));
}

const KU = x509.KeyUsageFlags;
const EKU = x509.ExtendedKeyUsage;
const ANY_POLICY = asn.id_ce_certificatePolicies_anyPolicy;

/** Drop every extension of a TBS certificate and make it version 1 (RFC 5280 §4.1.2.1). */
function toVersion1(t: asn.TBSCertificate): void {
  t.version = asn.Version.v1;
  t.extensions = undefined;
}

/** Duplicate the extension with this OID (RFC 5280 §4.2: at most one instance). */
function duplicate(oid: string) {
  return (t: asn.TBSCertificate): void => {
    const e = t.extensions?.find((x) => x.extnID === oid);
    if (e && t.extensions) t.extensions.push(e);
  };
}

/** The corpus: every case is built by buildChain and judged by both validators. */
export function corpus(): ChainCase[] {
  const cases: ChainCase[] = [];
  const depths = [0, 1, 2];
  const inters = (n: number, def: CertDef = {}) => Array.from({ length: n }, () => ({ ...def }));

  for (const n of depths) {
    cases.push({ name: `valid, ${n} intermediates`, inters: inters(n), expect: 'accept' });
    cases.push({
      name: `unknown critical extension on the leaf, ${n} intermediates`,
      inters: inters(n),
      leaf: { extra: [unknownExt(true)] },
      expect: 'reject',
      reason: 'unhandled-critical-extension',
    });
    cases.push({
      name: `unknown critical extension on the root, ${n} intermediates`,
      inters: inters(n),
      root: { extra: [unknownExt(true)] },
      expect: 'reject',
      reason: 'unhandled-critical-extension',
    });
    cases.push({
      name: `unknown NON-critical extensions everywhere, ${n} intermediates`,
      inters: inters(n, { extra: [unknownExt(false)] }),
      root: { extra: [unknownExt(false)] },
      leaf: { extra: [unknownExt(false)] },
      expect: 'accept',
    });
    cases.push({
      name: `leaf expired, ${n} intermediates`,
      inters: inters(n),
      leaf: { notBeforeDays: -3, notAfterDays: -1 },
      expect: 'reject',
      reason: 'expired',
    });
    cases.push({
      name: `leaf not yet valid, ${n} intermediates`,
      inters: inters(n),
      leaf: { notBeforeDays: 1, notAfterDays: 3 },
      expect: 'reject',
      reason: 'not-yet-valid',
    });
    cases.push({
      name: `root expired, ${n} intermediates`,
      inters: inters(n),
      root: { notBeforeDays: -30, notAfterDays: -1 },
      expect: 'reject',
      reason: 'expired',
    });
    cases.push({
      name: `leaf signature tampered, ${n} intermediates`,
      inters: inters(n),
      leaf: { tamper: true },
      expect: 'reject',
      reason: 'bad-signature',
    });
    cases.push({
      name: `leaf signed by an unrelated key with the right names, ${n} intermediates`,
      inters: inters(n),
      leaf: { wrongSigner: true },
      expect: 'reject',
      reason: 'bad-signature',
    });
    cases.push({
      name: `leaf names an issuer that does not exist, ${n} intermediates`,
      inters: inters(n),
      leaf: { issuerName: 'O=test,CN=somebody else' },
      expect: 'reject',
      reason: 'untrusted',
    });
    cases.push({
      name: `leaf AKID names another key, ${n} intermediates`,
      inters: inters(n),
      leaf: { akid: 'wrong' },
      expect: 'reject',
      reason: 'untrusted',
    });
    cases.push({
      name: `leaf without AKID, ${n} intermediates`,
      inters: inters(n),
      leaf: { akid: 'missing' },
      expect: 'reject',
      reason: 'invalid-extension',
    });
    cases.push({
      name: `duplicate keyUsage on the leaf, ${n} intermediates`,
      inters: inters(n),
      leaf: { tbs: duplicate('2.5.29.15') },
      expect: 'reject',
      reason: 'invalid-extension',
    });
    cases.push({
      name: `root presented in the chain too, ${n} intermediates`,
      inters: inters(n),
      presentRoot: true,
      expect: 'accept',
    });
  }

  for (const n of [1, 2]) {
    cases.push({
      name: `unknown critical extension on the intermediate next to the leaf, ${n} intermediates`,
      inters: [...inters(n - 1), { extra: [unknownExt(true)] }],
      expect: 'reject',
      reason: 'unhandled-critical-extension',
    });
    cases.push({
      name: `unknown critical extension on the intermediate next to the root, ${n} intermediates`,
      inters: [{ extra: [unknownExt(true)] }, ...inters(n - 1)],
      expect: 'reject',
      reason: 'unhandled-critical-extension',
    });
    cases.push({
      name: `intermediate without basicConstraints, ${n} intermediates`,
      inters: [...inters(n - 1), { bc: null }],
      expect: 'reject',
      reason: 'bad-intermediate',
    });
    cases.push({
      name: `intermediate with cA=false, ${n} intermediates`,
      inters: [{ bc: { ca: false } }, ...inters(n - 1)],
      expect: 'reject',
      reason: 'bad-intermediate',
    });
    cases.push({
      name: `intermediate basicConstraints not critical, ${n} intermediates`,
      inters: [...inters(n - 1), { bc: { ca: true, critical: false } }],
      expect: 'reject',
      reason: 'bad-intermediate',
    });
    cases.push({
      name: `intermediate keyUsage without keyCertSign, ${n} intermediates`,
      inters: [...inters(n - 1), { ku: KU.digitalSignature | KU.cRLSign }],
      expect: 'reject',
      reason: 'bad-intermediate',
    });
    cases.push({
      name: `intermediate without keyUsage, ${n} intermediates`,
      inters: [...inters(n - 1), { ku: null }],
      expect: 'reject',
      reason: 'bad-intermediate',
    });
    cases.push({
      name: `intermediate without SKID, ${n} intermediates`,
      inters: [...inters(n - 1), { skid: 'missing' }],
      expect: 'reject',
      reason: 'invalid-extension',
    });
    cases.push({
      // RFC 5280 §4.2.1.1: MUST NOT be critical; OpenSSL then treats it as unhandled.
      name: `intermediate with a critical AKID, ${n} intermediates`,
      inters: [{ akid: 'critical' }, ...inters(n - 1)],
      expect: 'reject',
      reason: 'unhandled-critical-extension',
    });
    cases.push({
      name: `intermediate expired, ${n} intermediates`,
      inters: [...inters(n - 1), { notBeforeDays: -30, notAfterDays: -1 }],
      leaf: { notBeforeDays: -2 },
      expect: 'reject',
      reason: 'expired',
    });
    cases.push({
      name: `intermediate not yet valid, ${n} intermediates`,
      inters: [{ notBeforeDays: 1 }, ...inters(n - 1)],
      expect: 'reject',
      reason: 'not-yet-valid',
    });
    cases.push({
      name: `intermediate version 1 (no extensions), ${n} intermediates`,
      inters: [...inters(n - 1), { tbs: toVersion1 }],
      expect: 'reject',
    });
    cases.push({
      name: `intermediate signature tampered, ${n} intermediates`,
      inters: [{ tamper: true }, ...inters(n - 1)],
      expect: 'reject',
      reason: 'bad-signature',
    });
    cases.push({
      name: `intermediate next to the root not presented, ${n} intermediates`,
      inters: inters(n),
      omitTopIntermediate: true,
      expect: 'reject',
      reason: 'untrusted',
    });
    cases.push({
      name: `intermediate EKU clientAuth only (no TLS server use), ${n} intermediates`,
      inters: [...inters(n - 1), { eku: [EKU.clientAuth] }],
      expect: 'reject',
      reason: 'invalid-purpose',
    });
    cases.push({
      name: `intermediate EKU serverAuth+clientAuth, ${n} intermediates`,
      inters: [...inters(n - 1), { eku: [EKU.serverAuth, EKU.clientAuth] }],
      expect: 'accept',
    });
    cases.push({
      name: `intermediate EKU codeSigning only, ${n} intermediates`,
      inters: [...inters(n - 1), { eku: [EKU.codeSigning] }],
      expect: 'reject',
      reason: 'invalid-purpose',
    });
    cases.push({
      name: `intermediate is the bundle authority (partial chain), ${n} intermediates`,
      inters: inters(n),
      anchors: 'inter0',
      expect: 'accept',
    });
  }

  // Path length (RFC 5280 §4.2.1.9, §6.1.4 (l), (m)).
  cases.push({
    name: 'root pathLen 0, one intermediate',
    root: { bc: { ca: true, pathLen: 0 } },
    inters: inters(1),
    expect: 'reject',
    reason: 'bad-intermediate',
  });
  cases.push({
    name: 'root pathLen 0, no intermediate',
    root: { bc: { ca: true, pathLen: 0 } },
    expect: 'accept',
  });
  cases.push({
    name: 'root pathLen 1, two intermediates',
    root: { bc: { ca: true, pathLen: 1 } },
    inters: inters(2),
    expect: 'reject',
    reason: 'bad-intermediate',
  });
  cases.push({
    name: 'root pathLen 1, one intermediate',
    root: { bc: { ca: true, pathLen: 1 } },
    inters: inters(1),
    expect: 'accept',
  });
  cases.push({
    name: 'intermediate pathLen 0 above another intermediate',
    inters: [{ bc: { ca: true, pathLen: 0 } }, {}],
    expect: 'reject',
    reason: 'bad-intermediate',
  });
  cases.push({
    name: 'intermediate pathLen 0 next to the leaf',
    inters: [{}, { bc: { ca: true, pathLen: 0 } }],
    expect: 'accept',
  });
  cases.push({
    name: 'pathLen on a leaf (not a CA)',
    leaf: { bc: { ca: false, pathLen: 0 } },
    expect: 'reject',
    reason: 'invalid-extension',
  });

  // Trust anchor shape.
  cases.push({
    name: 'root without basicConstraints',
    root: { bc: null },
    expect: 'reject',
    reason: 'untrusted',
  });
  cases.push({ name: 'root cA=false', root: { bc: { ca: false } }, expect: 'reject', reason: 'untrusted' });
  cases.push({
    name: 'root keyUsage without keyCertSign',
    root: { ku: KU.cRLSign },
    expect: 'reject',
    reason: 'untrusted',
  });
  cases.push({ name: 'root version 1', root: { tbs: toVersion1 }, expect: 'reject' });
  cases.push({
    name: 'root not yet valid',
    root: { notBeforeDays: 1 },
    expect: 'reject',
    reason: 'not-yet-valid',
  });
  cases.push({
    name: 'root without SKID',
    root: { skid: 'missing' },
    expect: 'reject',
    reason: 'invalid-extension',
  });
  cases.push({
    name: 'root SKID critical',
    root: { skid: 'critical' },
    expect: 'reject',
    reason: 'unhandled-critical-extension',
  });
  cases.push({
    name: 'leaf AKID critical',
    leaf: { akid: 'critical' },
    expect: 'reject',
    reason: 'unhandled-critical-extension',
  });

  // Name constraints (RFC 5280 §4.2.1.10, §6.1.3 (b)); a SPIFFE ID's URI host is its trust domain.
  const nc = (kind: 'uniformResourceIdentifier' | 'dNSName', p: string[], e: string[]) => [
    nameConstraints(kind, p, e),
  ];
  cases.push({
    name: 'root permits URI host demo.local',
    root: { extra: nc('uniformResourceIdentifier', [TD], []) },
    expect: 'accept',
  });
  cases.push({
    name: 'root permits URI host other.local only',
    root: { extra: nc('uniformResourceIdentifier', ['other.local'], []) },
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    name: 'root excludes URI host demo.local',
    root: { extra: nc('uniformResourceIdentifier', [], [TD]) },
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    name: 'intermediate permits URI host other.local only',
    inters: [{ extra: nc('uniformResourceIdentifier', ['other.local'], []) }],
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    name: 'intermediate excludes URI subdomains .local',
    inters: [{ extra: nc('uniformResourceIdentifier', [], ['.local']) }],
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    name: 'root permits DNS demo.svc, leaf DNS SAN web.demo.svc',
    root: { extra: nc('dNSName', ['demo.svc'], []) },
    leaf: { dns: ['web.demo.svc'] },
    expect: 'accept',
  });
  cases.push({
    name: 'root permits DNS demo.svc, leaf DNS SAN web.other.svc',
    root: { extra: nc('dNSName', ['demo.svc'], []) },
    leaf: { dns: ['web.other.svc'] },
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    name: 'intermediate excludes DNS demo.svc, leaf DNS SAN web.demo.svc',
    inters: [{ extra: nc('dNSName', [], ['demo.svc']) }],
    leaf: { dns: ['web.demo.svc'] },
    expect: 'reject',
    reason: 'name-constraints',
  });
  cases.push({
    // §4.2.1.10: only CAs carry it; a validator applies it to the certificates below, so it is inert here.
    name: 'name constraints on a leaf (not a CA)',
    leaf: { extra: nc('dNSName', ['demo.svc'], []) },
    expect: 'accept',
  });

  // Certificate policies (RFC 5280 §4.2.1.4, §4.2.1.11, §4.2.1.14, §6.1.3 (d)-(f), §6.1.5).
  const P1 = '1.3.6.1.4.1.55555.2.1';
  const P2 = '1.3.6.1.4.1.55555.2.2';
  // The trust anchor's own constraints are not part of path processing (§6.1.1 (d)): ignored.
  cases.push({
    name: 'root requires an explicit policy (anchor: not processed), chain has none',
    root: { extra: [policyConstraints(0)] },
    inters: inters(1),
    expect: 'accept',
  });
  cases.push({
    name: 'intermediate requires an explicit policy, chain has none',
    inters: [{ extra: [policyConstraints(0)] }],
    expect: 'reject',
    reason: 'policy',
  });
  cases.push({
    name: 'intermediate requires an explicit policy, chain asserts P1 throughout',
    inters: [{ extra: [policyConstraints(0), certificatePolicies([P1])] }],
    leaf: { extra: [certificatePolicies([P1])] },
    expect: 'accept',
  });
  cases.push({
    name: 'explicit policy required, intermediate P1, leaf P2',
    inters: [{ extra: [policyConstraints(0), certificatePolicies([P1])] }],
    leaf: { extra: [certificatePolicies([P2])] },
    expect: 'reject',
    reason: 'policy',
  });
  cases.push({
    name: 'explicit policy required, anyPolicy on the intermediate, leaf P2',
    inters: [{ extra: [policyConstraints(0), certificatePolicies([ANY_POLICY])] }],
    leaf: { extra: [certificatePolicies([P2])] },
    expect: 'accept',
  });
  cases.push({
    name: 'explicit policy required, inhibitAnyPolicy 0, anyPolicy on the next intermediate',
    inters: [
      { extra: [policyConstraints(0), inhibitAnyPolicy(0), certificatePolicies([ANY_POLICY])] },
      { extra: [certificatePolicies([ANY_POLICY])] },
    ],
    leaf: { extra: [certificatePolicies([P2])] },
    expect: 'reject',
    reason: 'policy',
  });
  cases.push({
    name: 'explicit policy required after one more certificate, none asserted',
    inters: [{ extra: [policyConstraints(1)] }, {}],
    expect: 'reject',
    reason: 'policy',
  });
  cases.push({
    name: 'policies without any requirement (P1 on the leaf only)',
    leaf: { extra: [certificatePolicies([P1])] },
    inters: inters(1),
    expect: 'accept',
  });
  cases.push({
    name: 'duplicate certificatePolicies on the leaf',
    leaf: { extra: [certificatePolicies([P1]), certificatePolicies([P2])] },
    expect: 'reject',
    reason: 'policy',
  });

  // Leaf fields.
  cases.push({
    name: 'leaf version 1 (no extensions at all)',
    leaf: { tbs: toVersion1 },
    expect: 'accept',
    spiffe: 'no-uri-san',
  });
  cases.push({
    name: 'leaf version 2 with extensions',
    leaf: { tbs: (t) => void (t.version = asn.Version.v2) },
    expect: 'reject',
    reason: 'invalid-extension',
  });
  cases.push({
    name: 'leaf empty subject, SAN not critical',
    leaf: { subject: '' },
    expect: 'reject',
    reason: 'invalid-extension',
  });
  cases.push({
    name: 'leaf empty subject, SAN critical',
    leaf: { subject: '', sanCritical: true },
    expect: 'accept',
  });
  cases.push({
    name: 'leaf keyAgreement only (TLS client and server may use it)',
    leaf: { ku: KU.keyAgreement },
    expect: 'accept',
    spiffe: 'no-digital-signature',
  });
  cases.push({
    name: 'leaf keyEncipherment only',
    leaf: { ku: KU.keyEncipherment },
    expect: 'reject',
    spiffe: 'no-digital-signature',
  });
  cases.push({ name: 'leaf without keyUsage', leaf: { ku: null }, expect: 'accept', spiffe: 'no-key-usage' });
  cases.push({
    name: 'leaf EKU serverAuth only',
    leaf: { eku: [EKU.serverAuth] },
    expect: 'reject',
    spiffe: 'bad-eku',
  });
  cases.push({
    name: 'leaf EKU clientAuth only',
    leaf: { eku: [EKU.clientAuth] },
    expect: 'reject',
    spiffe: 'bad-eku',
  });
  cases.push({
    name: 'leaf EKU anyExtendedKeyUsage',
    leaf: { eku: ['2.5.29.37.0'] },
    expect: 'reject',
    spiffe: 'bad-eku',
  });
  cases.push({ name: 'leaf without EKU', leaf: { eku: null }, expect: 'accept' });
  cases.push({
    name: 'leaf is a CA',
    leaf: { bc: { ca: true }, ku: KU.digitalSignature | KU.keyCertSign },
    expect: 'accept',
    spiffe: 'leaf-is-ca',
  });
  cases.push({
    name: 'leaf keyCertSign without cA',
    leaf: { ku: KU.digitalSignature | KU.keyCertSign },
    expect: 'reject',
    spiffe: 'leaf-key-cert-sign',
  });
  cases.push({
    name: 'leaf with two URI SANs',
    leaf: { uris: [SPIFFE_ID, `spiffe://${TD}/ns/demo/sa/db`] },
    expect: 'accept',
    spiffe: 'multiple-uri-sans',
  });
  cases.push({ name: 'leaf without basicConstraints', leaf: { bc: null }, expect: 'accept' });
  cases.push({
    name: 'intermediate carries a workload SPIFFE ID',
    inters: [{ uris: [`spiffe://${TD}/ns/demo/sa/ca`] }],
    expect: 'accept',
    spiffe: 'bad-intermediate',
  });
  return cases;
}
