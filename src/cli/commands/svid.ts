import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import { readInputFile } from '../../read-file.js';
import {
  BundleError,
  X509SvidError,
  checkLeaf,
  criticalExtensions,
  keyMatchesLeaf,
  parseBundle,
  parseCertificate,
  parseCertificates,
  parsePrivateKey,
  parseSpiffeId,
  parseSvidCertificate,
  parseTrustDomain,
  PublicKeyError,
  verifyX509Svid,
  type ParsedCertificate,
  type SpiffeId,
  type X509SvidReason,
} from '../../spiffe/index.js';
import { fileErrorReason } from '../../errors.js';
import { CliError } from '../errors.js';
import { formatTtl, parseOutput, renderTable } from '../format.js';
import type { CommandRegistrar } from '../program.js';

const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};

/** Names of the extensions RFC 5280 §4.2 defines, for display; others are shown by OID. */
const EXTENSION_NAMES: Record<string, string> = {
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.30': 'nameConstraints',
  '2.5.29.31': 'cRLDistributionPoints',
  '2.5.29.32': 'certificatePolicies',
  '2.5.29.33': 'policyMappings',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.36': 'policyConstraints',
  '2.5.29.37': 'extKeyUsage',
  '2.5.29.54': 'inhibitAnyPolicy',
};

const CURVE_NAMES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** What `svid inspect` reports about one certificate. */
export interface CertificateReport {
  index: number;
  role: 'leaf' | 'intermediate' | 'root';
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  uriSans: string[];
  dnsSans: string[];
  ca: boolean;
  pathLen: number | null;
  keyUsage: string[] | null;
  extKeyUsage: string[] | null;
  publicKey: string;
  sha256: string;
  /**
   * Every extension marked critical, with whether path validation handles it; one it does not
   * handle makes `meshauth svid verify` refuse the chain (unhandled-critical-extension).
   */
  criticalExtensions: { oid: string; name: string | null; handled: boolean }[];
}

/** What `svid inspect` reports about a chain (leaf first). */
export interface SvidReport {
  file: string;
  spiffeId: string | null;
  trustDomain: string | null;
  /**
   * The X509-SVID leaf rules and, for every certificate, RFC 5280 §4.2's refusal of critical
   * extensions validation does not handle (not trust): ok, or the reason the first check fails.
   */
  svidRules: { ok: true } | { ok: false; reason: X509SvidReason; message: string };
  /** Validity of the leaf now. */
  validity: 'valid' | 'expired' | 'not-yet-valid';
  serials: string[];
  certificates: CertificateReport[];
}

function oneLine(dn: string): string {
  return dn.replace(/\n/g, ', ');
}

function sans(x509: X509Certificate, kind: 'DNS'): string[] {
  const out: string[] = [];
  for (const part of (x509.subjectAltName ?? '').split(', ')) {
    if (part.startsWith(`${kind}:`)) out.push(part.slice(kind.length + 1));
  }
  return out;
}

function describeKey(x509: X509Certificate): string {
  const k = x509.publicKey;
  const d = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case 'ec':
      return `EC ${CURVE_NAMES[d.namedCurve ?? ''] ?? d.namedCurve ?? '?'}`;
    case 'rsa':
      return `RSA ${d.modulusLength ?? '?'}`;
    default:
      return (k.asymmetricKeyType ?? 'unknown').toUpperCase();
  }
}

function isSelfSigned(c: ParsedCertificate): boolean {
  try {
    return c.x509.issuer === c.x509.subject && c.x509.verify(c.x509.publicKey);
  } catch {
    return false;
  }
}

function certificateReport(c: ParsedCertificate, index: number): CertificateReport {
  const bc = c.ext.basicConstraints;
  return {
    index,
    role: index === 0 ? 'leaf' : isSelfSigned(c) ? 'root' : 'intermediate',
    subject: oneLine(c.x509.subject),
    issuer: oneLine(c.x509.issuer),
    serial: c.x509.serialNumber.toUpperCase(),
    notBefore: new Date(c.x509.validFrom).toISOString(),
    notAfter: new Date(c.x509.validTo).toISOString(),
    uriSans: [...c.ext.uriSans],
    dnsSans: sans(c.x509, 'DNS'),
    ca: bc?.ca ?? false,
    pathLen: bc?.pathLen ?? null,
    keyUsage: c.ext.keyUsage ? [...c.ext.keyUsage] : null,
    extKeyUsage: c.ext.extKeyUsage ? c.ext.extKeyUsage.map((oid) => EKU_NAMES[oid] ?? oid) : null,
    publicKey: describeKey(c.x509),
    sha256: c.x509.fingerprint256,
    criticalExtensions: criticalExtensions(c.der).map((e) => ({
      oid: e.oid,
      name: EXTENSION_NAMES[e.oid] ?? null,
      handled: e.handled,
    })),
  };
}

async function readInput(what: string, path: string): Promise<Buffer> {
  try {
    return await readInputFile(path);
  } catch (err) {
    throw new CliError(`${what}: ${path}: ${fileErrorReason(err)}`);
  }
}

function parseChain(what: string, path: string, data: Buffer): ParsedCertificate[] {
  let ders: Buffer[];
  try {
    ders = parseCertificates(data);
  } catch (err) {
    throw new CliError(`${what}: ${path}: not a PEM or DER certificate chain (${(err as Error).message})`);
  }
  return ders.map((der, i) => {
    try {
      return parseCertificate(der);
    } catch (err) {
      // the reason code svid verify and audit events use for it
      if (err instanceof PublicKeyError)
        throw new CliError(
          `${what}: ${path}: bad-public-key: certificate ${i} has an unusable public key: ${err.message}`,
        );
      throw new CliError(`${what}: ${path}: certificate ${i} is malformed (${(err as Error).message})`);
    }
  });
}

/** Build the inspection report for a chain file's contents. */
export function inspectChain(file: string, data: Buffer, now: Date = new Date()): SvidReport {
  const chain = parseChain('svid inspect', file, data);
  const leaf = chain[0]!;
  let id: SpiffeId | null = null;
  let svidRules: SvidReport['svidRules'] = { ok: true };
  try {
    id = checkLeaf(leaf);
  } catch (err) {
    if (!(err instanceof X509SvidError)) throw err;
    svidRules = { ok: false, reason: err.reason, message: err.message };
    // Still show the ID when there is exactly one valid one and another rule failed.
    if (leaf.ext.uriSans.length === 1) {
      try {
        id = parseSpiffeId(leaf.ext.uriSans[0]!);
      } catch {
        id = null;
      }
    }
  }
  const nb = new Date(leaf.x509.validFrom);
  const na = new Date(leaf.x509.validTo);
  const certificates = chain.map(certificateReport);
  // RFC 5280 §4.2: a critical extension validation does not handle makes the certificate
  // unusable, whatever else it says; svid verify refuses it, so inspect does not call it ok
  const unhandled = certificates.flatMap((c) =>
    c.criticalExtensions.filter((e) => !e.handled).map((e) => ({ c, e })),
  );
  if (svidRules.ok && unhandled.length > 0) {
    const { c, e } = unhandled[0]!;
    svidRules = {
      ok: false,
      reason: 'unhandled-critical-extension',
      message: `certificate ${c.index} (${c.role}) has critical extension ${e.oid}, which validation does not handle (RFC 5280 §4.2)${
        unhandled.length > 1 ? ` (and ${unhandled.length - 1} more)` : ''
      }`,
    };
  }
  return {
    file,
    spiffeId: id ? id.toString() : null,
    trustDomain: id ? id.trustDomain.name : null,
    svidRules,
    validity: now < nb ? 'not-yet-valid' : now > na ? 'expired' : 'valid',
    serials: chain.map((c) => c.x509.serialNumber.toUpperCase()),
    certificates,
  };
}

function renderReport(r: SvidReport, now: Date): string {
  const leaf = r.certificates[0]!;
  const left = Date.parse(leaf.notAfter) - now.getTime();
  const validity =
    r.validity === 'valid'
      ? `valid, expires in ${formatTtl(left)}`
      : r.validity === 'expired'
        ? 'EXPIRED'
        : 'NOT YET VALID';
  const summary: string[][] = [
    ['SPIFFE ID', r.spiffeId ?? '-'],
    ['trust domain', r.trustDomain ?? '-'],
    ['X509-SVID rules', r.svidRules.ok ? 'ok' : `FAILED ${r.svidRules.reason}: ${r.svidRules.message}`],
    ['validity', `${leaf.notBefore} .. ${leaf.notAfter} (${validity})`],
    ['chain', `${r.certificates.length} certificate${r.certificates.length === 1 ? '' : 's'}`],
    ['serials', r.serials.join(', ')],
  ];
  let out = renderTable(['FIELD', 'VALUE'], summary).split('\n').slice(1).join('\n');
  for (const c of r.certificates) {
    const rows: string[][] = [
      ['subject', c.subject || '-'],
      ['issuer', c.issuer || '-'],
      ['serial', c.serial],
      ['not before', c.notBefore],
      ['not after', c.notAfter],
      ['URI SANs', c.uriSans.join(', ') || '-'],
      ['DNS SANs', c.dnsSans.join(', ') || '-'],
      ['CA', c.ca ? `true${c.pathLen !== null ? ` (path length ${c.pathLen})` : ''}` : 'false'],
      ['key usage', c.keyUsage ? c.keyUsage.join(', ') || '(empty)' : '(absent)'],
      ['ext key usage', c.extKeyUsage ? c.extKeyUsage.join(', ') || '(empty)' : '(absent)'],
      [
        'critical',
        c.criticalExtensions
          .map((e) => `${e.name ?? e.oid}${e.handled ? '' : ' (NOT HANDLED)'}`)
          .join(', ') || '(none)',
      ],
      ['public key', c.publicKey],
      ['sha256', c.sha256],
    ];
    out += `\ncertificate ${c.index} (${c.role})\n`;
    out += renderTable(['FIELD', 'VALUE'], rows)
      .split('\n')
      .slice(1)
      .map((l) => (l ? `  ${l}` : l))
      .join('\n');
  }
  return out;
}

function loadKey(path: string, data: Buffer): KeyObject {
  try {
    return parsePrivateKey(data);
  } catch (err) {
    throw new CliError(`svid verify: --key ${path}: not a private key (${(err as Error).message})`);
  }
}

function parseAt(text: string): Date {
  const t = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(t)) {
    throw new CliError(`svid verify: --at must be an ISO 8601 time (2026-01-02T15:04:05Z), got "${text}"`, 2);
  }
  return new Date(t);
}

/** `meshauth svid inspect` and `meshauth svid verify`: offline X509-SVID tools. */
export const registerSvidCommands: CommandRegistrar = (program: Command) => {
  const out = (text: string): void => program.configureOutput().writeOut?.(text);
  const svid = program
    .command('svid')
    .description('Inspect and verify X509-SVID files (offline; no daemon needed)');

  svid
    .command('inspect')
    .description(
      'Show the SPIFFE ID, trust domain, serials, validity, key usage and EKU of a certificate chain',
    )
    .argument('<file>', 'certificate chain, PEM or DER, leaf first')
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText(
      'after',
      `
The first certificate is the leaf. The X509-SVID leaf rules are checked, and every certificate's
critical extensions: one that validation does not handle (RFC 5280 §4.2) is listed as NOT HANDLED
and fails the rules (unhandled-critical-extension). Trust is not checked: use
"meshauth svid verify" for that. Exit status: 0 when the file holds certificates, 1 otherwise.

Examples:
  meshauth svid inspect web.crt
  meshauth svid inspect web.crt -o json`,
    )
    .action(async (file: string, o: { output: string }) => {
      const format = parseOutput(o.output);
      const now = new Date();
      const report = inspectChain(file, await readInput('svid inspect', file), now);
      out(format === 'json' ? `${JSON.stringify(report)}\n` : renderReport(report, now));
    });

  svid
    .command('verify')
    .description(
      'Verify an X509-SVID chain against a trust bundle; exit 0 when valid, 1 with the reason when not',
    )
    .argument('<chain-file>', 'certificate chain, PEM or DER, leaf first')
    .requiredOption('--bundle <file>', 'trust bundle: PEM, concatenated DER or SPIFFE JWKS')
    .option('--trust-domain <td>', "trust domain of the bundle (default: the leaf's trust domain)")
    .option('--key <file>', 'also check that this private key (PEM or DER PKCS#8) belongs to the leaf')
    .option('--at <time>', 'verify at this ISO 8601 time instead of now')
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText(
      'after',
      `
Exit status: 0 when the chain is a valid X509-SVID, 1 when it is not (or a file cannot be
read), 2 on usage errors. Failures print the stable reason code (the one audit events use,
without the "svid-" prefix) and an explanation, e.g.
  invalid: untrusted: verify X509-SVID: ... does not chain to an authority of the "..." bundle
A bundle that cannot be used (malformed, no CA authority, more than 256 authorities or 4 MiB)
prints "error: bundle-invalid: ..." (reason "bundle-invalid" with -o json) and exits 1.

Examples:
  meshauth svid verify --bundle ca.crt web.crt
  meshauth svid verify --bundle bundle.json --trust-domain example.org --key web.key web.crt -o json`,
    )
    .action(
      async (
        chainFile: string,
        o: { bundle: string; trustDomain?: string; key?: string; at?: string; output: string },
      ) => {
        const format = parseOutput(o.output);
        const now = o.at ? parseAt(o.at) : new Date();
        let bundleTd: string | undefined;
        if (o.trustDomain !== undefined) {
          try {
            bundleTd = parseTrustDomain(o.trustDomain).name;
          } catch (err) {
            throw new CliError(`svid verify: --trust-domain: ${(err as Error).message}`, 2);
          }
        }
        const chainData = await readInput('svid verify', chainFile);
        const bundleData = await readInput('svid verify: --bundle', o.bundle);
        const keyData = o.key ? await readInput('svid verify: --key', o.key) : undefined;

        const fail = (reason: X509SvidReason, message: string): never => {
          out(
            format === 'json'
              ? `${JSON.stringify({ ok: false, file: chainFile, reason, message })}\n`
              : `invalid: ${reason}: ${message}\n`,
          );
          throw new CliError('', 1);
        };

        // The bundle belongs to --trust-domain, else to the trust domain the leaf claims.
        let td = bundleTd;
        if (td === undefined) {
          try {
            const leaf = parseSvidCertificate(parseCertificates(chainData)[0]!, 'leaf');
            td = checkLeaf(leaf).trustDomain.name;
          } catch (err) {
            if (err instanceof X509SvidError) fail(err.reason, err.message);
            fail('malformed', `verify X509-SVID: chain is not DER or PEM: ${(err as Error).message}`);
          }
        }
        let authorities: Buffer[];
        try {
          authorities = parseBundle(bundleData, td!).x509Authorities;
        } catch (err) {
          if (!(err instanceof BundleError)) throw err;
          // The chain cannot be shown valid without a usable bundle: exit 1, with its own reason.
          const message = `--bundle ${o.bundle}: ${err.message}`;
          out(
            format === 'json'
              ? `${JSON.stringify({ ok: false, file: chainFile, reason: 'bundle-invalid', message })}\n`
              : `error: bundle-invalid: ${message}\n`,
          );
          throw new CliError('', 1);
        }
        try {
          const v = verifyX509Svid(chainData, new Map([[td!, authorities]]), { now });
          if (keyData && !keyMatchesLeaf(loadKey(o.key!, keyData), v.leaf)) {
            fail('key-mismatch', `verify X509-SVID: the private key in ${o.key} does not belong to the leaf`);
          }
          if (format === 'json') {
            out(
              `${JSON.stringify({
                ok: true,
                file: chainFile,
                spiffeId: v.spiffeId.toString(),
                trustDomain: v.spiffeId.trustDomain.name,
                serials: v.serials,
                notBefore: v.notBefore.toISOString(),
                notAfter: v.notAfter.toISOString(),
                chainNotAfter: v.chainNotAfter.toISOString(),
                keyChecked: Boolean(keyData),
              })}\n`,
            );
          } else {
            out(
              `valid: ${v.spiffeId} (trust domain ${v.spiffeId.trustDomain.name}), ${v.chain.length} certificate${
                v.chain.length === 1 ? '' : 's'
              }, leaf serial ${v.serials[0]}, valid until ${v.notAfter.toISOString()}${keyData ? ', key matches' : ''}\n`,
            );
          }
        } catch (err) {
          if (err instanceof X509SvidError) fail(err.reason, err.message);
          throw err;
        }
      },
    );
};
