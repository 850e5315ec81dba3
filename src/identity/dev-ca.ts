import 'reflect-metadata';
import { createPrivateKey, KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileErrorReason } from '../errors.js';
import { makeDirs } from '../make-dirs.js';
import { readInputFile } from '../read-file.js';
import { systemClock } from '../time.js';
import * as x509 from '@peculiar/x509';
import type { Logger } from 'pino';
import {
  parseCertificates,
  parsePrivateKey,
  parseSpiffeId,
  parseTrustDomain,
  toPem,
  type Svid,
  type TrustBundles,
} from '../spiffe/index.js';
import type { Clock, Timer } from '../time.js';
import { IdentitySourceBase, type Readiness } from './core.js';
import { DevCaError } from './errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** Default SVID lifetime of the development CA. */
export const DEV_CA_DEFAULT_SVID_TTL_MS = 3_600_000;
/** Lifetime of a newly created development CA certificate. */
export const DEV_CA_CERT_TTL_MS = 365 * 24 * 3_600_000;
/** Shortest SVID the CA issues near its own expiry, ms: with less left it refuses to issue. */
const MIN_SVID_MS = 1_000;
/** Leaves are back-dated this much so that small clock differences between nodes do not matter. */
const BACKDATE_MS = 30_000;

function serial(): string {
  // Positive 128-bit serial.
  const b = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/**
 * The embedded development CA: an ECDSA P-256 self-signed root for one trust domain that issues
 * X509-SVIDs directly. For demos and tests only; production identities come from SPIRE.
 */
export class DevCa {
  readonly trustDomain: string;
  readonly caDer: Buffer;
  readonly caPem: string;
  private readonly cert: x509.X509Certificate;
  private readonly signingKey: webcrypto.CryptoKey;

  private constructor(trustDomain: string, cert: x509.X509Certificate, signingKey: webcrypto.CryptoKey) {
    this.trustDomain = trustDomain;
    this.cert = cert;
    this.signingKey = signingKey;
    this.caDer = Buffer.from(cert.rawData);
    this.caPem = toPem([this.caDer]);
  }

  /** Create a new CA in memory. */
  static async create(trustDomain: string, opts: { ttlMs?: number } = {}): Promise<DevCa> {
    const td = parseTrustDomain(trustDomain).name;
    const keys = await generateKeys();
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `O=meshauth development CA,CN=${td}`,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + (opts.ttlMs ?? DEV_CA_CERT_TTL_MS)),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }]),
      ],
    });
    return new DevCa(td, cert, keys.privateKey);
  }

  /**
   * Load the CA from `dir` (ca.crt, ca.key), creating it there first when both are missing. The
   * key file is written 0600. A CA for another trust domain is an error.
   */
  static async init(opts: { dir: string; trustDomain: string }): Promise<{ ca: DevCa; created: boolean }> {
    const caCert = join(opts.dir, 'ca.crt');
    const caKey = join(opts.dir, 'ca.key');
    const haveCert = existsSync(caCert);
    const haveKey = existsSync(caKey);
    if (haveCert !== haveKey) {
      throw new DevCaError(
        `dev CA init: ${haveCert ? caKey : caCert} is missing while ${haveCert ? caCert : caKey} exists; remove it or restore the pair`,
      );
    }
    if (haveCert) {
      const ca = await DevCa.load({ caCert, caKey });
      if (ca.trustDomain !== parseTrustDomain(opts.trustDomain).name) {
        throw new DevCaError(
          `dev CA init: ${caCert} is for trust domain "${ca.trustDomain}", not "${opts.trustDomain}"`,
        );
      }
      return { ca, created: false };
    }
    const ca = await DevCa.create(opts.trustDomain);
    await ca.save({ caCert, caKey });
    return { ca, created: true };
  }

  /** Load a CA certificate and its PKCS#8 key (PEM). */
  static async load(opts: { caCert: string; caKey: string }): Promise<DevCa> {
    let certPem: string | undefined;
    let keyPem: string;
    try {
      certPem = (await readInputFile(opts.caCert)).toString('utf8');
      keyPem = (await readInputFile(opts.caKey)).toString('utf8');
    } catch (err) {
      const file = (err as NodeJS.ErrnoException).path ?? (certPem === undefined ? opts.caCert : opts.caKey);
      throw new DevCaError(`dev CA load: ${file}: ${fileErrorReason(err)}`, { cause: err });
    }
    try {
      const der = parseCertificates(certPem)[0]!;
      const cert = new x509.X509Certificate(der);
      const node = new X509Certificate(der);
      if (!node.ca) throw new Error(`${opts.caCert} is not a CA certificate`);
      const uri = node.subjectAltName?.match(/URI:spiffe:\/\/([^,/\s]+)/);
      if (!uri) throw new Error(`${opts.caCert} has no spiffe://<trust-domain> URI SAN`);
      const td = parseTrustDomain(uri[1]!).name;
      const keyObj = parsePrivateKey(keyPem);
      if (!node.checkPrivateKey(keyObj)) throw new Error(`${opts.caKey} does not belong to ${opts.caCert}`);
      const pkcs8 = keyObj.export({ format: 'der', type: 'pkcs8' });
      const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, ALG, false, ['sign']);
      return new DevCa(td, cert, signingKey);
    } catch (err) {
      if (err instanceof DevCaError) throw err;
      throw new DevCaError(`dev CA load: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Write ca.crt (0644) and ca.key (0600). */
  async save(paths: { caCert: string; caKey: string }): Promise<void> {
    const pkcs8 = Buffer.from(
      await webcrypto.subtle.exportKey('pkcs8', this.signingKey).catch(() => {
        throw new DevCaError(
          'dev CA save: this CA was loaded with a non-exportable key; it is already on disk',
        );
      }),
    );
    const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
      .export({ format: 'pem', type: 'pkcs8' })
      .toString();
    for (const p of [paths.caCert, paths.caKey]) await makeDirs(join(p, '..'), 0o700);
    await writeFile(paths.caKey, keyPem, { mode: 0o600 });
    await chmod(paths.caKey, 0o600);
    await writeFile(paths.caCert, this.caPem, { mode: 0o644 });
  }

  bundles(): TrustBundles {
    return new Map([[this.trustDomain, [this.caDer]]]);
  }

  /** Issue an X509-SVID for a SPIFFE ID of this trust domain. */
  async issue(
    spiffeId: string,
    opts: {
      ttlMs?: number;
      now?: Date;
      /** Added to the leaf as given (tests, impostors). */ extensions?: x509.Extension[];
    } = {},
  ): Promise<Svid> {
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain.name !== this.trustDomain) {
      throw new DevCaError(`dev CA issue: ${spiffeId} is not in trust domain "${this.trustDomain}"`);
    }
    if (id.isRoot) throw new DevCaError(`dev CA issue: ${spiffeId} has no path`);
    const ttl = opts.ttlMs ?? DEV_CA_DEFAULT_SVID_TTL_MS;
    if (!(ttl > 0)) throw new DevCaError(`dev CA issue: TTL must be positive (got ${ttl})`);
    const now = (opts.now ?? new Date(systemClock.now())).getTime();
    const caNotAfter = this.cert.notAfter.getTime();
    // An SVID never outlives the CA. Once the CA has less than MIN_SVID_MS left, the SVID would be
    // expired at birth (and its holder would renew it at once, again and again): refuse instead.
    if (caNotAfter - now < MIN_SVID_MS) {
      throw new DevCaError(
        `dev CA issue: the development CA certificate (trust domain "${this.trustDomain}") expires at ${new Date(caNotAfter).toISOString()}, ${caNotAfter <= now ? 'already past' : 'less than a second from now'}: create a new CA (remove ca.crt and ca.key, then run meshauth dev-ca init) and copy it to every node`,
      );
    }
    const keys = await generateKeys();
    const notAfter = Math.min(now + ttl, caNotAfter);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: 'O=meshauth workload',
      issuer: this.cert.subject,
      notBefore: new Date(Math.min(now - BACKDATE_MS, notAfter - 1000)),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature |
            x509.KeyUsageFlags.keyEncipherment |
            x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id.toString() }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert, false),
        ...(opts.extensions ?? []),
      ],
    });
    const der = Buffer.from(cert.rawData);
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const key: KeyObject = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    const leaf = new X509Certificate(der);
    return {
      spiffeId: id.toString(),
      chainDer: [der],
      chainPem: toPem([der]),
      key,
      keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
      leaf,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
  }
}

export interface DevCaSourceOptions {
  svidTtlMs?: number;
  /** Reissue when this fraction of an SVID's lifetime has passed (default 0.5). */
  renewAt?: number;
  /** Wait this long before trying again after a failed issuance (default 5 s). */
  retryMs?: number;
  logger?: Logger;
  clock?: Clock;
}

/** IdentitySource backed by the embedded development CA: issues, renews and drops SVIDs locally. */
export class DevCaSource extends IdentitySourceBase {
  readonly kind = 'dev-ca' as const;
  private readonly ca: DevCa;
  private readonly ttlMs: number;
  private readonly renewAt: number;
  private readonly retryMs: number;
  private readonly logger: Logger | undefined;
  private readonly timers = new Map<string, Timer>();
  private readonly pending = new Map<string, Promise<void>>();

  constructor(ca: DevCa, opts: DevCaSourceOptions = {}) {
    super('dev-ca', {
      logger: opts.logger,
      clock: opts.clock,
      closedError: () => new DevCaError('dev CA source ready: closed'),
    });
    this.ca = ca;
    this.ttlMs = opts.svidTtlMs ?? DEV_CA_DEFAULT_SVID_TTL_MS;
    this.renewAt = opts.renewAt ?? 0.5;
    this.retryMs = opts.retryMs ?? 5_000;
    if (!(this.renewAt > 0 && this.renewAt < 1))
      throw new DevCaError(`dev CA source: renewAt must be in (0, 1) (got ${this.renewAt})`);
    this.logger = opts.logger;
  }

  setWanted(spiffeIds: readonly string[]): void {
    if (this.core.closed) return;
    const { removed } = this.core.setWanted(spiffeIds);
    for (const id of removed) this.cancelTimer(id);
    for (const id of this.core.wanted) {
      if (!this.core.get(id) && !this.pending.has(id)) this.issueFor(id);
    }
  }

  bundles(): TrustBundles {
    return this.ca.bundles();
  }

  async close(): Promise<void> {
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
    this.core.close();
    await Promise.allSettled([...this.pending.values()]);
  }

  protected readiness(): Readiness {
    if (this.pending.size > 0) return 'pending';
    const missing = [...this.core.wanted].filter((id) => !this.core.get(id));
    return missing.length > 0
      ? new DevCaError(`dev CA source: could not issue SVIDs for ${missing.join(', ')}`)
      : 'ready';
  }

  private cancelTimer(id: string): void {
    this.timers.get(id)?.cancel();
    this.timers.delete(id);
  }

  private issueFor(id: string): void {
    const p = this.ca
      .issue(id, { ttlMs: this.ttlMs, now: new Date(this.core.clock.now()) })
      .then((svid) => {
        if (this.core.closed || !this.core.wanted.has(id)) return;
        this.core.put(svid);
        this.scheduleRenewal(id, svid);
      })
      .catch((err: unknown) => {
        this.logger?.error(
          { event: 'svid_issue_failed', local_id: id, err },
          'development CA could not issue an SVID',
        );
        if (!this.core.closed && this.core.wanted.has(id)) this.retry(id, this.retryMs);
      })
      .finally(() => {
        this.pending.delete(id);
        this.core.wake();
      });
    this.pending.set(id, p);
  }

  private retry(id: string, ms: number): void {
    this.cancelTimer(id);
    this.timers.set(
      id,
      this.core.clock.setTimeout(() => {
        this.timers.delete(id);
        if (!this.core.closed && this.core.wanted.has(id)) this.issueFor(id);
      }, ms),
    );
  }

  private scheduleRenewal(id: string, svid: Svid): void {
    // Measured from issuance, not notBefore (which is back-dated).
    const now = this.core.clock.now();
    this.retry(id, Math.max(0, (svid.notAfter.getTime() - now) * this.renewAt));
  }
}
