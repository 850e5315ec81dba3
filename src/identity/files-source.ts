import { createHash, type KeyObject } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { fileErrorReason } from '../errors.js';
import { readInputFile } from '../read-file.js';
import {
  BundleError,
  MAX_BUNDLE_BYTES,
  X509SvidError,
  keyMatchesLeaf,
  parseBundle,
  parseCertificate,
  parseCertificates,
  parsePrivateKey,
  parseSpiffeId,
  toPem,
  verifyX509Svid,
  type Svid,
  type TrustBundles,
} from '../spiffe/index.js';
import type { Clock, Timer } from '../time.js';
import { IdentitySourceBase, REASON_NOT_WANTED, type Readiness } from './core.js';
import { FilesSourceError } from './errors.js';

/** One identity held on disk: a certificate chain (leaf first, PEM or DER) and its private key. */
export interface SvidFiles {
  spiffeId: string;
  cert: string;
  key: string;
}

export interface FilesSourceOptions {
  /** Trust bundle file: PEM, concatenated DER or SPIFFE JWKS. */
  bundle: string;
  svids: readonly SvidFiles[];
  /**
   * Trust domain of bundle authorities that do not name one in a spiffe:// URI SAN (and of a JWKS
   * bundle). Default: the trust domain of the configured SVIDs, when they all share one.
   */
  trustDomain?: string | undefined;
  /** Stat every file this often, in case fs.watch misses a change (default 2000 ms). */
  pollIntervalMs?: number | undefined;
  /** Wait this long after a change notification before reading, to let writers finish (default 50 ms). */
  debounceMs?: number | undefined;
  /**
   * How long a certificate and key that do not match may stay so when only one of the two files
   * changed, before the pair is rejected (default 5000 ms). Two files cannot be replaced in one
   * step: between the writer's two renames the pair on disk is half old, half new. Such a pair is
   * taken as a rotation in progress (the other file is expected to follow, see the class comment)
   * and is neither used nor reported until this long has passed without the other file changing.
   */
  pairSettleMs?: number | undefined;
  /** Use fs.watch notifications (default true); without them only the periodic stat notices changes. */
  watch?: boolean | undefined;
  logger?: Logger | undefined;
  /** Time for polling, debounce and expiry (default: the system clock). */
  clock?: Clock | undefined;
}

/** Why one file set was refused; `reason` is stable (svid-<x509 reason>, spiffe-id-mismatch, ...). */
interface Problem {
  reason: string;
  message: string;
}

interface IdentityState {
  files: SvidFiles;
  /** Digest of the files of the SVID held in the core, if one is. */
  heldDigest: string | undefined;
  /** Digest of the contents last tried, so an unchanged bad file is not re-reported every poll. */
  triedDigest: string | undefined;
  problem: Problem | undefined;
  /** Digests of the certificate and key files last read, to tell which of the two changed. */
  certDigest: string | undefined;
  keyDigest: string | undefined;
  /** A mismatched pair with one file changed, waiting for the other file of the rotation. */
  pairWait: { digest: string; timer: Timer; expired: boolean } | undefined;
}

function digestOf(...parts: Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(createHash('sha256').update(p).digest());
  return h.digest('hex');
}

/**
 * Largest bundle, certificate or key file read, bytes (a bundle's own limit; a certificate chain or
 * key is far smaller). Files are read with readInputFile: a FIFO, a device or a directory put in a
 * file's place is refused at once instead of blocking a read for ever (which hung every later
 * reload and close(), so the daemon could not stop) or reading without end (/dev/zero).
 */
const MAX_FILE_BYTES = MAX_BUNDLE_BYTES;

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * IdentitySource over files on disk: a trust bundle file and, per identity, a certificate chain
 * file and a key file. Files are watched (fs.watch on their directories, plus a periodic stat for
 * file systems where notifications are unreliable) and re-read on change. A file set is used only
 * after it verifies as an X509-SVID of the configured SPIFFE ID against the current bundle and the
 * key matches the leaf; anything else is logged with a reason and ignored, keeping the previous
 * valid state. Deleting an identity's certificate or key file removes that identity.
 *
 * Writers replace each file atomically (temporary file + rename in the same directory), and
 * replace both files of an identity on rotation, the key first and then the certificate (as
 * `meshauth dev-ca issue` does); the other order works too. Two renames are never one atomic step,
 * so a read can see the new key with the old certificate: a pair whose key does not match its
 * certificate while only one of the two files changed since the last read is a rotation in
 * progress. It is held back without a log line (the previous SVID stays in use) until the other
 * file changes, and rejected (`svid-key-mismatch`) only if the pair is still the same after
 * `pairSettleMs`.
 */
export class FilesSource extends IdentitySourceBase {
  readonly kind = 'files' as const;
  private readonly bundlePath: string;
  private readonly configured = new Map<string, IdentityState>();
  private readonly defaultTrustDomain: string | undefined;
  private readonly pollIntervalMs: number;
  private readonly debounceMs: number;
  private readonly pairSettleMs: number;
  private readonly logger: Logger | undefined;
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly statSeen = new Map<string, string>();
  private bundleDigest: string | undefined;
  private bundleTriedDigest: string | undefined;
  private bundleProblem: Problem | undefined;
  private running: Promise<void> | undefined;
  private rerun = false;
  private debounce: Timer | undefined;
  private poller: Timer | undefined;
  private polling: Promise<void> | undefined;

  constructor(opts: FilesSourceOptions) {
    super('files', {
      logger: opts.logger,
      clock: opts.clock,
      closedError: () => new FilesSourceError('files identity source: ready: closed'),
    });
    this.bundlePath = resolve(opts.bundle);
    this.pollIntervalMs = opts.pollIntervalMs ?? 2_000;
    this.debounceMs = opts.debounceMs ?? 50;
    this.pairSettleMs = opts.pairSettleMs ?? 5_000;
    this.logger = opts.logger;
    const domains = new Set<string>();
    for (const f of opts.svids) {
      let td: string;
      try {
        td = parseSpiffeId(f.spiffeId).trustDomain.name;
      } catch (err) {
        throw new FilesSourceError(`files identity source: ${(err as Error).message}`, { cause: err });
      }
      if (this.configured.has(f.spiffeId))
        throw new FilesSourceError(`files identity source: ${f.spiffeId} is configured twice`);
      domains.add(td);
      this.configured.set(f.spiffeId, {
        files: { spiffeId: f.spiffeId, cert: resolve(f.cert), key: resolve(f.key) },
        heldDigest: undefined,
        triedDigest: undefined,
        problem: undefined,
        certDigest: undefined,
        keyDigest: undefined,
        pairWait: undefined,
      });
    }
    this.defaultTrustDomain = opts.trustDomain ?? (domains.size === 1 ? [...domains][0] : undefined);
    if (opts.watch !== false) this.watchFiles();
    this.poller = this.core.clock.setInterval(() => this.poll(), this.pollIntervalMs);
    this.trigger();
  }

  setWanted(spiffeIds: readonly string[]): void {
    if (this.closed) return;
    const next = new Set(spiffeIds);
    for (const id of this.core.wanted) {
      if (!next.has(id)) this.drop(id, REASON_NOT_WANTED);
    }
    for (const id of next) {
      if (!this.core.wanted.has(id) && !this.configured.has(id)) {
        this.core.state('no-identity', `no certificate and key files are configured for ${id}`, {
          local_id: id,
          reason: 'not-configured',
        });
      }
    }
    this.core.setWanted(spiffeIds);
    this.trigger();
  }

  /**
   * Resolves once the files have been read and the bundle and every wanted identity are usable;
   * otherwise rejects saying what is wrong with each (the source keeps watching either way).
   */
  override async ready(): Promise<void> {
    await this.settle();
    return super.ready();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.core.close();
    this.poller?.cancel();
    this.debounce?.cancel();
    this.debounce = undefined;
    for (const st of this.configured.values()) this.endPairWait(st);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.polling;
    await this.running?.catch(() => undefined);
  }

  /**
   * Waits until a running periodic check, pending change notifications and the reloads they cause
   * have been processed (a debounced change is processed at once).
   */
  async settle(): Promise<void> {
    while (!this.closed && (this.polling || this.running || this.debounce)) {
      if (this.debounce) {
        this.debounce.cancel();
        this.debounce = undefined;
        this.trigger();
      }
      await this.polling;
      await this.running;
    }
  }

  protected override onExpired(id: string, svid: Svid): void {
    const st = this.configured.get(id);
    if (!st) return;
    st.triedDigest = st.heldDigest;
    st.heldDigest = undefined;
    st.problem = {
      reason: 'svid-expired',
      message: `${st.files.cert}: SVID expired at ${svid.notAfter.toISOString()}`,
    };
  }

  protected readiness(): Readiness {
    if (this.polling || this.running || this.debounce) return 'pending';
    const problems: string[] = [];
    if (this.core.bundles().size === 0) {
      problems.push(`bundle ${this.bundlePath}: ${this.bundleProblem?.message ?? 'not loaded'}`);
    }
    for (const id of this.core.wanted) {
      const st = this.configured.get(id);
      if (!st) problems.push(`${id}: no certificate and key files are configured`);
      else if (!this.core.get(id) && st.pairWait && !st.pairWait.expired) return 'pending';
      else if (!this.core.get(id)) problems.push(`${id}: ${st.problem?.message ?? 'not loaded'}`);
    }
    return problems.length > 0
      ? new FilesSourceError(`files identity source: not ready: ${problems.join('; ')}`)
      : 'ready';
  }

  private allPaths(): string[] {
    const out = [this.bundlePath];
    for (const st of this.configured.values()) out.push(st.files.cert, st.files.key);
    return out;
  }

  private watchFiles(): void {
    // Watch directories, not files: writers replace files by rename, which a file watch misses.
    const byDir = new Map<string, Set<string>>();
    for (const p of this.allPaths()) {
      const d = dirname(p);
      if (!byDir.has(d)) byDir.set(d, new Set());
      byDir.get(d)!.add(basename(p));
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          if (filename === null || names.has(filename.toString())) this.schedule();
        });
        w.on('error', (err) => {
          this.logger?.warn(
            { event: 'watch_failed', file: dir, err },
            'cannot watch directory; relying on periodic checks',
          );
          w.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, w);
      } catch (err) {
        this.logger?.warn(
          { event: 'watch_failed', file: dir, err },
          'cannot watch directory; relying on periodic checks',
        );
      }
    }
  }

  private poll(): void {
    if (this.closed || this.polling) return;
    this.polling = this.checkFiles().finally(() => {
      this.polling = undefined;
      this.core.wake();
    });
  }

  /** Stats every file; schedules a reload when any changed since the last check. */
  private async checkFiles(): Promise<void> {
    let changed = false;
    for (const p of this.allPaths()) {
      let sig: string;
      try {
        const s = await stat(p);
        sig = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch {
        sig = 'missing';
      }
      if (this.statSeen.get(p) !== sig) changed = true;
      this.statSeen.set(p, sig);
    }
    if (changed) this.schedule();
  }

  private schedule(): void {
    if (this.closed || this.debounce) return;
    this.debounce = this.core.clock.setTimeout(() => {
      this.debounce = undefined;
      this.trigger();
    }, this.debounceMs);
  }

  /** Run a reload now, or once more after the running one. */
  private trigger(): void {
    if (this.closed) return;
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.rerun = false;
          await this.reload();
        } while (this.rerun && !this.closed);
      } catch (err) {
        this.logger?.error({ event: 'reload_failed', err }, 'files identity source: reload failed');
      } finally {
        this.running = undefined;
        this.core.wake();
      }
    })();
  }

  private async reload(): Promise<void> {
    const bundleChanged = await this.reloadBundle();
    for (const id of this.core.wanted) {
      if (this.closed) return;
      const st = this.configured.get(id);
      if (st) await this.reloadIdentity(st, bundleChanged);
    }
  }

  private async reloadBundle(): Promise<boolean> {
    let data: Buffer;
    try {
      data = await readInputFile(this.bundlePath, MAX_FILE_BYTES);
    } catch (err) {
      const problem = {
        reason: isMissing(err) ? 'bundle-missing' : 'bundle-unreadable',
        message: fileErrorReason(err),
      };
      // logged once per cause, not once per poll
      const tag = `${problem.reason}:${problem.message}`;
      if (this.bundleTriedDigest !== tag) {
        this.bundleTriedDigest = tag;
        this.bundleProblem = problem;
        this.logger?.error(
          { event: 'bundle_rejected', file: this.bundlePath, reason: problem.reason, err },
          this.core.bundles().size > 0
            ? 'trust bundle file unreadable; keeping the previous bundle'
            : 'trust bundle file unreadable',
        );
      }
      return false;
    }
    const digest = digestOf(data);
    if (digest === this.bundleTriedDigest) return false;
    this.bundleTriedDigest = digest;
    if (digest === this.bundleDigest) {
      this.bundleProblem = undefined;
      return false;
    }
    let bundles: TrustBundles;
    try {
      bundles = this.parseBundleFile(data);
    } catch (err) {
      this.bundleProblem = { reason: 'bundle-invalid', message: (err as Error).message };
      this.logger?.error(
        { event: 'bundle_rejected', file: this.bundlePath, reason: 'bundle-invalid', err },
        this.core.bundles().size > 0
          ? 'trust bundle file rejected; keeping the previous bundle'
          : 'trust bundle file rejected',
      );
      return false;
    }
    this.bundleProblem = undefined;
    this.bundleDigest = digest;
    this.core.setBundles(bundles, {
      file: this.bundlePath,
      authorities: [...bundles.values()].reduce((n, a) => n + a.length, 0),
    });
    this.core.upstream('connected', `trust bundle ${this.bundlePath}`);
    return true;
  }

  /**
   * Authorities grouped by trust domain: the one named by an authority's spiffe:// URI SAN, else
   * the default trust domain. Every authority must be a CA certificate; zero authorities is an error.
   */
  private parseBundleFile(data: Buffer): TrustBundles {
    const fallback = this.defaultTrustDomain;
    const text = data.subarray(0, 64).toString('utf8').trimStart();
    if (text.startsWith('{') && !fallback) {
      throw new BundleError(
        `parse bundle ${this.bundlePath}: a JWKS bundle needs a trust domain, and the configured SVIDs do not share one`,
      );
    }
    // parseBundle checks the format and that every authority is a CA; the trust domain it is
    // given only labels messages when each authority names its own.
    const parsed = parseBundle(data, fallback ?? 'unknown');
    const out = new Map<string, Buffer[]>();
    parsed.x509Authorities.forEach((der, i) => {
      const named = parseCertificate(der).ext.uriSans.find((u) => u.startsWith('spiffe://'));
      let td = fallback;
      if (named) {
        const id = parseSpiffeId(named);
        if (!id.isRoot)
          throw new BundleError(
            `parse bundle ${this.bundlePath}: authority ${i} carries the workload SPIFFE ID ${named}`,
          );
        td = id.trustDomain.name;
      }
      if (!td) {
        throw new BundleError(
          `parse bundle ${this.bundlePath}: authority ${i} names no trust domain (no spiffe:// URI SAN), and the configured SVIDs do not share one`,
        );
      }
      if (!out.has(td)) out.set(td, []);
      out.get(td)!.push(der);
    });
    return out;
  }

  private async reloadIdentity(st: IdentityState, bundleChanged: boolean): Promise<void> {
    const id = st.files.spiffeId;
    let certData: Buffer;
    let keyData: Buffer;
    let reading = st.files.cert;
    try {
      // One after the other, so that a missing file is always reported the same way.
      certData = await readInputFile(reading, MAX_FILE_BYTES);
      reading = st.files.key;
      keyData = await readInputFile(reading, MAX_FILE_BYTES);
    } catch (err) {
      if (isMissing(err)) {
        const path = reading;
        if (st.triedDigest !== 'missing') {
          this.logger?.warn(
            { event: 'svid_files_missing', local_id: id, reason: 'files-missing', file: path },
            'SVID file missing',
          );
        }
        st.triedDigest = 'missing';
        st.certDigest = undefined;
        st.keyDigest = undefined;
        this.endPairWait(st);
        st.problem = { reason: 'files-missing', message: `${path}: no such file` };
        this.drop(id, `file removed: ${path}`);
        return;
      }
      // a file that cannot be used until it changes: the SVID held so far is kept, as for a bad one
      const tag = `unreadable:${reading}:${fileErrorReason(err)}`;
      if (st.triedDigest !== tag) this.reject(st, 'unreadable', `${reading}: ${fileErrorReason(err)}`, tag);
      return;
    }
    if (this.closed) return;
    const certDigest = digestOf(certData);
    const keyDigest = digestOf(keyData);
    // Nothing read before, or exactly one of the two files changed since the last read: a pair
    // that does not match may be a rotation caught between its two renames.
    const certChanged = certDigest !== st.certDigest;
    const keyChanged = keyDigest !== st.keyDigest;
    const maybeHalfRotated = st.certDigest === undefined || certChanged !== keyChanged;
    st.certDigest = certDigest;
    st.keyDigest = keyDigest;
    const digest = digestOf(certData, keyData);
    if (digest === st.triedDigest && !bundleChanged) return;
    st.triedDigest = digest;
    if (st.pairWait && st.pairWait.digest !== digest) this.endPairWait(st);
    const held = this.core.get(id);
    if (held && digest === st.heldDigest) {
      // Same files; only the bundle changed. Keep the SVID, but say so if the new bundle no longer vouches for it.
      try {
        verifyX509Svid(held.chainDer, this.core.bundles(), { now: new Date(this.core.clock.now()) });
        st.problem = undefined;
      } catch (err) {
        const reason = `svid-${(err as X509SvidError).reason ?? 'malformed'}`;
        this.logger?.warn(
          { event: 'svid_untrusted_by_bundle', local_id: id, reason, err },
          'the new trust bundle does not vouch for this SVID; still presenting it until its files change',
        );
      }
      return;
    }
    if (this.core.bundles().size === 0) {
      // Retried as soon as a bundle loads.
      st.triedDigest = undefined;
      st.problem = {
        reason: 'no-bundle',
        message: `cannot verify ${st.files.cert}: no valid trust bundle loaded`,
      };
      return;
    }
    const result = this.verifyFiles(st.files, certData, keyData);
    if ('problem' in result && result.problem.reason === 'svid-key-mismatch') {
      if (st.pairWait?.digest === digest && !st.pairWait.expired) return;
      if (!st.pairWait && maybeHalfRotated) {
        this.awaitPair(st, digest, result.problem);
        return;
      }
    }
    this.endPairWait(st);
    if ('problem' in result) {
      this.reject(st, result.problem.reason, result.problem.message, digest);
      return;
    }
    st.problem = undefined;
    st.heldDigest = digest;
    this.core.put(result.svid, { file: st.files.cert });
  }

  private verifyFiles(
    files: SvidFiles,
    certData: Buffer,
    keyData: Buffer,
  ): { svid: Svid } | { problem: Problem } {
    let ders: Buffer[];
    try {
      ders = parseCertificates(certData);
    } catch (err) {
      return {
        problem: {
          reason: 'svid-malformed',
          message: `${files.cert}: not a PEM or DER certificate chain: ${(err as Error).message}`,
        },
      };
    }
    let verified;
    try {
      verified = verifyX509Svid(ders, this.core.bundles(), { now: new Date(this.core.clock.now()) });
    } catch (err) {
      if (!(err instanceof X509SvidError)) throw err;
      return { problem: { reason: `svid-${err.reason}`, message: `${files.cert}: ${err.message}` } };
    }
    if (verified.spiffeId.toString() !== files.spiffeId) {
      return {
        problem: {
          reason: 'spiffe-id-mismatch',
          message: `${files.cert}: holds an SVID for ${verified.spiffeId}, not ${files.spiffeId}`,
        },
      };
    }
    let key: KeyObject;
    try {
      key = parsePrivateKey(keyData);
    } catch (err) {
      return {
        problem: { reason: 'bad-key', message: `${files.key}: not a private key: ${(err as Error).message}` },
      };
    }
    if (!keyMatchesLeaf(key, verified.leaf)) {
      return {
        problem: {
          reason: 'svid-key-mismatch',
          message: `${files.key}: the key does not belong to the certificate in ${files.cert}`,
        },
      };
    }
    // The chain the handshake presents: leaf and intermediates, without any bundle authority.
    const anchors = this.core.bundles().get(verified.spiffeId.trustDomain.name) ?? [];
    const chainDer = ders.filter((d, i) => i === 0 || !anchors.some((a) => a.equals(d)));
    return {
      svid: {
        spiffeId: files.spiffeId,
        chainDer,
        chainPem: toPem(chainDer),
        key,
        keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
        leaf: verified.leaf,
        notBefore: verified.notBefore,
        notAfter: verified.notAfter,
      },
    };
  }

  /**
   * Holds back a mismatched pair for pairSettleMs, expecting the other file of a rotation; reads
   * the files again then, and rejects the pair if it is still the same.
   */
  private awaitPair(st: IdentityState, digest: string, problem: Problem): void {
    st.problem = {
      reason: problem.reason,
      message: `${problem.message} (waiting up to ${this.pairSettleMs} ms for the rest of a rotation)`,
    };
    const timer = this.core.clock.setTimeout(() => {
      if (st.pairWait?.timer !== timer) return;
      st.pairWait.expired = true;
      st.triedDigest = undefined;
      this.trigger();
    }, this.pairSettleMs);
    st.pairWait = { digest, timer, expired: false };
    this.logger?.debug(
      { event: 'svid_pair_pending', local_id: st.files.spiffeId, file: st.files.cert },
      'SVID certificate and key do not match yet; waiting for the rest of the rotation',
    );
  }

  private endPairWait(st: IdentityState): void {
    st.pairWait?.timer.cancel();
    st.pairWait = undefined;
  }

  private reject(st: IdentityState, reason: string, message: string, digest: string): void {
    st.triedDigest = digest;
    st.problem = { reason, message };
    this.logger?.error(
      { event: 'svid_rejected', local_id: st.files.spiffeId, reason, err: message, file: st.files.cert },
      this.core.get(st.files.spiffeId)
        ? 'SVID files rejected; keeping the previous SVID'
        : 'SVID files rejected',
    );
  }

  private drop(id: string, reason: string): void {
    const st = this.configured.get(id);
    if (!st || !this.core.get(id)) return;
    st.heldDigest = undefined;
    if (reason === REASON_NOT_WANTED) {
      st.triedDigest = undefined;
      st.problem = undefined;
    }
    this.core.remove(id, reason);
  }
}
