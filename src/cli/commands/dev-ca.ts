import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { fileErrorReason } from '../../errors.js';
import { DevCa } from '../../identity/index.js';
import { makeDirs } from '../../make-dirs.js';
import { parseSpiffeId, parseTrustDomain } from '../../spiffe/index.js';
import { CliError } from '../errors.js';
import { formatSpan, parseDurationMs, parseOutput } from '../format.js';
import type { CommandRegistrar } from '../program.js';

/** Write a file atomically (temporary file + rename) with the given mode. */
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, data, { mode });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function caFiles(dir: string): { caCert: string; caKey: string } {
  return { caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key') };
}

/** The same existing file (also through a symlink or a hard link), or the same path. */
function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/**
 * What is wrong with `dev-ca issue --out`, or undefined: it is a prefix of two files, so a
 * directory (an existing one, or a path ending in "/") would silently become "<dir>.crt" beside
 * it, and a prefix whose files are the CA's own would replace the CA with a leaf, for good.
 */
function outProblem(out: string, ca: { caCert: string; caKey: string }): string | undefined {
  const prefix = resolve(out);
  let isDir = false;
  try {
    isDir = statSync(prefix).isDirectory();
  } catch {
    // nothing there: a prefix
  }
  if (out.endsWith('/') || isDir)
    return `--out ${out}: is a directory; --out is a path prefix for <prefix>.crt and <prefix>.key (e.g. --out ${join(out, 'web')})`;
  for (const f of [`${prefix}.crt`, `${prefix}.key`]) {
    if (sameFile(f, ca.caCert) || sameFile(f, ca.caKey))
      return `--out ${out}: would overwrite the development CA's own ${sameFile(f, ca.caCert) ? ca.caCert : ca.caKey}; choose another prefix`;
  }
  return undefined;
}

/** `meshauth dev-ca init` and `meshauth dev-ca issue`: the embedded development CA on disk. */
export const registerDevCaCommands: CommandRegistrar = (program: Command) => {
  const out = (text: string): void => program.configureOutput().writeOut?.(text);
  const devCa = program
    .command('dev-ca')
    .description('Development CA (ECDSA P-256): create it and issue X509-SVIDs from it (not for production)');

  devCa
    .command('init')
    .description(
      'Create the development CA in a directory (ca.crt, ca.key 0600), or reuse the one already there',
    )
    .requiredOption('--dir <dir>', 'directory of ca.crt and ca.key')
    .requiredOption('--trust-domain <td>', 'trust domain of the CA, e.g. demo.local')
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText(
      'after',
      `
An existing CA for the same trust domain is reused; one for another trust domain is an error.
Copy the directory to every node that must trust the same SVIDs.

Examples:
  meshauth dev-ca init --dir /var/lib/meshauth/dev-ca --trust-domain demo.local`,
    )
    .action(async (o: { dir: string; trustDomain: string; output: string }) => {
      const format = parseOutput(o.output);
      let td: string;
      try {
        td = parseTrustDomain(o.trustDomain).name;
      } catch (err) {
        throw new CliError(`dev-ca init: --trust-domain: ${(err as Error).message}`, 2);
      }
      const dir = resolve(o.dir);
      try {
        await makeDirs(dir, 0o700);
      } catch (err) {
        throw new CliError(`dev-ca init: --dir ${o.dir}: cannot create it: ${fileErrorReason(err)}`);
      }
      const { ca, created } = await DevCa.init({ dir, trustDomain: td });
      const { caCert, caKey } = caFiles(dir);
      const info = new X509Certificate(ca.caDer);
      if (format === 'json') {
        out(
          `${JSON.stringify({
            created,
            trustDomain: ca.trustDomain,
            caCert,
            caKey,
            serial: info.serialNumber.toUpperCase(),
            notAfter: new Date(info.validTo).toISOString(),
            sha256: info.fingerprint256,
          })}\n`,
        );
        return;
      }
      out(
        `${created ? 'created a new' : 'reusing the existing'} development CA for trust domain ${ca.trustDomain}\n` +
          `  certificate  ${caCert}\n` +
          `  key          ${caKey} (mode 0600)\n` +
          `  valid until  ${new Date(info.validTo).toISOString()}\n` +
          `  sha256       ${info.fingerprint256}\n`,
      );
    });

  devCa
    .command('issue')
    .description(
      'Issue an X509-SVID from the development CA in a directory: writes <prefix>.crt and <prefix>.key (0600)',
    )
    .requiredOption('--dir <dir>', 'directory of ca.crt and ca.key (see "dev-ca init")')
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID of the SVID, in the CA trust domain')
    .requiredOption('--out <prefix>', 'output path prefix: writes <prefix>.crt and <prefix>.key')
    .option('--ttl <duration>', 'lifetime, e.g. 30m, 1h, 1d', '1h')
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText(
      'after',
      `
Each file is replaced atomically (temporary file + rename), the key first and then the
certificate. A running meshauthd with identity.source "files" never uses a half-written file, and
takes a key that does not match the certificate yet as a rotation in progress: it keeps the
previous SVID and waits for the certificate instead of rejecting the pair.

Examples:
  meshauth dev-ca issue --dir ./dev-ca --spiffe-id spiffe://demo.local/ns/demo/sa/web --out ./web
  meshauth dev-ca issue --dir ./dev-ca --spiffe-id spiffe://demo.local/ns/demo/sa/db --ttl 10m --out /tmp/db`,
    )
    .action(async (o: { dir: string; spiffeId: string; out: string; ttl: string; output: string }) => {
      const format = parseOutput(o.output);
      const ttlMs = parseDurationMs(o.ttl);
      if (ttlMs === undefined || ttlMs < 1000) {
        throw new CliError(
          `dev-ca issue: --ttl: must be a duration of at least 1s, like 30m, 1h, 1d (got ${JSON.stringify(o.ttl)})`,
          2,
        );
      }
      try {
        parseSpiffeId(o.spiffeId);
      } catch (err) {
        throw new CliError(`dev-ca issue: --spiffe-id: ${(err as Error).message}`, 2);
      }
      const dir = resolve(o.dir);
      const files = caFiles(dir);
      if (!existsSync(files.caCert) || !existsSync(files.caKey)) {
        throw new CliError(
          `dev-ca issue: no development CA in ${dir} (create it with: meshauth dev-ca init --dir ${o.dir} --trust-domain <td>)`,
        );
      }
      const problem = outProblem(o.out, files);
      if (problem) throw new CliError(`dev-ca issue: ${problem}`, 2);
      const ca = await DevCa.load(files);
      const issuedAt = Date.now();
      const svid = await ca.issue(o.spiffeId, { ttlMs, now: new Date(issuedAt) });
      const prefix = resolve(o.out);
      const crt = `${prefix}.crt`;
      const key = `${prefix}.key`;
      try {
        await makeDirs(dirname(prefix));
      } catch (err) {
        throw new CliError(
          `dev-ca issue: --out ${o.out}: cannot create ${dirname(prefix)}: ${fileErrorReason(err)}`,
        );
      }
      // Key first: a watcher that sees the new certificate must find the matching key already there.
      // A read between the two renames sees the new key with the old certificate; the files
      // identity source holds such a pair back until the certificate follows (pairSettleMs).
      for (const [file, data, mode] of [
        [key, svid.keyPem, 0o600],
        [crt, svid.chainPem, 0o644],
      ] as const) {
        try {
          await writeAtomic(file, data, mode);
        } catch (err) {
          throw new CliError(`dev-ca issue: cannot write ${file}: ${fileErrorReason(err)}`);
        }
      }
      const serial = svid.leaf.serialNumber.toUpperCase();
      // the CA caps the lifetime at its own expiry: say what was issued, not what was asked
      // (certificate times are whole seconds: a notAfter up to 1 s early is not a cap)
      const capped = svid.notAfter.getTime() < issuedAt + ttlMs - 1000;
      const lifetimeMs = capped ? svid.notAfter.getTime() - issuedAt : ttlMs;
      if (format === 'json') {
        out(
          `${JSON.stringify({
            spiffeId: svid.spiffeId,
            serial,
            notBefore: svid.notBefore.toISOString(),
            notAfter: svid.notAfter.toISOString(),
            cert: crt,
            key,
          })}\n`,
        );
        return;
      }
      out(
        `issued ${svid.spiffeId}\n` +
          `  serial       ${serial}\n` +
          `  valid        ${svid.notBefore.toISOString()} .. ${svid.notAfter.toISOString()} (${formatSpan(lifetimeMs)}${capped ? `; --ttl ${o.ttl} capped at the CA's expiry` : ''})\n` +
          `  certificate  ${crt}\n` +
          `  key          ${key} (mode 0600)\n`,
      );
    });
};
