import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toPem, verifyX509Svid, X509SvidError } from '../../../src/spiffe/index.js';
import { buildChain, corpus, TD, type BuiltChain, type ChainCase } from './corpus.js';

/**
 * Differential test: meshauth's X509-SVID verification against `openssl verify` (RFC 5280 §6.1
 * path validation) on a generated corpus of chains.
 *
 * OpenSSL is run as meshauth configures it: strict RFC 5280 profile, policy processing, every
 * bundle authority a trust anchor (-partial_chain), the verification time given, and an X509-SVID
 * authenticating both ends of TLS, i.e. accepted only when both `-purpose sslclient` and
 * `-purpose sslserver` accept. Cases marked `spiffe` are where an X509-SVID rule (SPIFFE
 * X509-SVID §4.1-§4.3, §5) refuses what RFC 5280 allows, or refuses first.
 */

const AT = new Date(Math.floor(Date.now() / 1000) * 1000);
const CASES = corpus();
let dir: string;
const built = new Map<string, BuiltChain>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-differential-'));
  for (const c of CASES) built.set(c.name, await buildChain(c, AT));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface OpensslVerdict {
  ok: boolean;
  output: string;
}

let fileSeq = 0;
function opensslVerify(chain: BuiltChain, purpose: 'sslclient' | 'sslserver'): OpensslVerdict {
  const id = fileSeq++;
  const ca = join(dir, `${id}-ca.pem`);
  const leaf = join(dir, `${id}-leaf.pem`);
  const untrusted = join(dir, `${id}-untrusted.pem`);
  writeFileSync(ca, toPem(chain.anchors));
  writeFileSync(leaf, toPem([chain.leaf]));
  const args = ['verify', '-x509_strict', '-policy_check', '-policy', '2.5.29.32.0', '-partial_chain'];
  args.push('-purpose', purpose);
  args.push('-attime', String(AT.getTime() / 1000), '-CAfile', ca);
  if (chain.presented.length > 0) {
    writeFileSync(untrusted, toPem(chain.presented));
    args.push('-untrusted', untrusted);
  }
  args.push(leaf);
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

function meshauthVerify(chain: BuiltChain): { ok: true } | { ok: false; reason: string; message: string } {
  try {
    verifyX509Svid([chain.leaf, ...chain.presented], new Map([[TD, chain.anchors]]), { now: AT });
    return { ok: true };
  } catch (err) {
    if (!(err instanceof X509SvidError)) throw err;
    return { ok: false, reason: err.reason, message: err.message };
  }
}

describe('differential: meshauth X509-SVID verification vs openssl verify', () => {
  it('the corpus is large and varied', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(100);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
    expect(CASES.filter((c) => c.expect === 'accept').length).toBeGreaterThanOrEqual(15);
  });

  it.each(CASES.map((c) => [c.name, c] as [string, ChainCase]))('%s', (_name, c) => {
    const chain = built.get(c.name)!;
    const client = opensslVerify(chain, 'sslclient');
    const server = opensslVerify(chain, 'sslserver');
    const opensslOk = client.ok && server.ok;
    const ours = meshauthVerify(chain);
    const context = `openssl sslclient: ${client.output}\nopenssl sslserver: ${server.output}\nmeshauth: ${JSON.stringify(ours)}`;
    // The corpus states the RFC 5280 verdict; OpenSSL must agree with it.
    expect(opensslOk ? 'accept' : 'reject', context).toBe(c.expect);
    if (c.spiffe) {
      expect(ours.ok, context).toBe(false);
      if (!ours.ok) expect(ours.reason, context).toBe(c.spiffe);
      return;
    }
    // Same verdict as OpenSSL.
    expect(ours.ok, context).toBe(opensslOk);
    if (!ours.ok && c.reason) expect(ours.reason, context).toBe(c.reason);
  });
});
