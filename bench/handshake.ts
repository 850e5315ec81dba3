/**
 * Handshake throughput: full meshauth handshakes (TLS 1.3 mTLS with P-256 SVIDs, SPIFFE
 * verification on both sides, hello/result frames, entry callback) per second on ONE core, next to
 * OpenSSL's own TLS 1.3 mutual-TLS handshakes (`openssl s_server` + `openssl s_time -new`) with the
 * same certificates on the same core, in the same run, as a ratio.
 *
 *   node dist/bench/handshake.js [--seconds 5] [--rounds 2] [--concurrency 16] [--cpu 0]
 *
 * meshauth: client and server in this one process (one thread does both ends' work).
 * bare node:tls: the same, with TLS 1.3 mutual handshakes that verify the peer chain in TLS and
 * nothing else (measureNodeTls): the baseline of the per-pair mode, alternated with it in each
 * round; the ratio is taken within each round, then the median over rounds.
 * openssl:  s_server and s_time are two processes, both pinned to the same core with taskset.
 * So both columns measure "complete mutual handshakes (both ends) per second of one core".
 * MESHAUTH_BENCH_SMOKE=1 runs a one-second round (CI smoke run).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { connect as tlsConnect, createSecureContext, createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HandshakeClient, HandshakeServer } from '../src/auth/handshake/index.js';
import { disableSessionTickets } from '../src/tls/session-tickets.js';
import type { Svid, TrustBundles } from '../src/spiffe/index.js';
import { benchArgs } from './args.js';

const TRUST_DOMAIN = 'bench.local';
const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/client`;
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/server`;

export interface HandshakeBenchOptions {
  seconds: number;
  rounds: number;
  concurrency: number;
  /** Core to pin to (taskset); undefined = no pinning. */
  cpu: number | undefined;
}

export interface HandshakeBenchResult {
  meshauthSequentialPerSec: number;
  meshauthConcurrentPerSec: number;
  opensslPerSec: number;
  /** Bare node:tls mutual handshakes (measureNodeTls), 1 in flight. */
  nodeTlsPerSec: number;
  /** The same with `concurrency` in flight. */
  nodeTlsConcurrentPerSec: number;
  /** Bare node:tls mutual handshakes that verify no chain (attribution), 1 in flight. */
  nodeTlsUnverifiedPerSec: number;
  ratioSequential: number;
  ratioConcurrent: number;
  /** meshauth per-pair / bare node:tls, 1 in flight: median over rounds of the ratio within a round. */
  ratioBareSequential: number;
  /** The same with `concurrency` in flight. */
  ratioBareConcurrent: number;
  /** CPU time (user + system) per handshake, both ends, µs, over all rounds at 1 in flight. */
  meshauthCpuUsPerHandshake: number;
  nodeTlsCpuUsPerHandshake: number;
  commands: string[];
  pinnedCpu: number | undefined;
}

export interface Pki {
  dir: string;
  caPem: string;
  bundles: TrustBundles;
  client: Svid;
  server: Svid;
  files: { ca: string; clientCert: string; clientKey: string; serverCert: string; serverKey: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** CA + two SVIDs (ECDSA P-256) made with the openssl CLI, so both measurements use the very same files. */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-bench-'));
  writeFileSync(
    join(dir, 'ca.ext'),
    `basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nsubjectAltName=URI:spiffe://${TRUST_DOMAIN}\n`,
  );
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ca.key'], dir);
  openssl(['req', '-new', '-key', 'ca.key', '-subj', '/O=meshauth bench/CN=bench CA', '-out', 'ca.csr'], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'ca.csr',
      '-signkey',
      'ca.key',
      '-days',
      '1',
      '-sha256',
      '-extfile',
      'ca.ext',
      '-set_serial',
      '1',
      '-out',
      'ca.pem',
    ],
    dir,
  );
  const issue = (name: string, id: string, serial: string): Svid => {
    writeFileSync(
      join(dir, `${name}.ext`),
      `basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:${id}\n`,
    );
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`],
      dir,
    );
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', '/O=SPIRE', '-out', `${name}.csr`], dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-days',
        '1',
        '-sha256',
        '-extfile',
        `${name}.ext`,
        '-set_serial',
        serial,
        '-out',
        `${name}.pem`,
      ],
      dir,
    );
    const pem = readFileSync(join(dir, `${name}.pem`), 'utf8');
    const keyPem = readFileSync(join(dir, `${name}.key`), 'utf8');
    const leaf = new X509Certificate(pem);
    return {
      spiffeId: id,
      chainDer: [leaf.raw],
      chainPem: pem,
      key: createPrivateKey(keyPem),
      keyPem,
      leaf,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
  };
  const client = issue('client', CLIENT_ID, `0x${randomBytes(8).toString('hex')}`);
  const server = issue('server', SERVER_ID, `0x${randomBytes(8).toString('hex')}`);
  const caPem = readFileSync(join(dir, 'ca.pem'), 'utf8');
  return {
    dir,
    caPem,
    bundles: new Map([[TRUST_DOMAIN, [new X509Certificate(caPem).raw]]]),
    client,
    server,
    files: {
      ca: join(dir, 'ca.pem'),
      clientCert: join(dir, 'client.pem'),
      clientKey: join(dir, 'client.key'),
      serverCert: join(dir, 'server.pem'),
      serverKey: join(dir, 'server.key'),
    },
  };
}

function identityOf(svid: Svid, bundles: TrustBundles) {
  return { svid: (id: string) => (id === svid.spiffeId ? svid : undefined), bundles: () => bundles };
}

/** meshauth handshakes per second with `concurrency` in flight, client and server in this process. */
/** CPU time (user + system, this process) spent in a measured loop, and handshakes completed in it. */
export interface CpuSample {
  cpuUs: number;
  handshakes: number;
}

export async function measureMeshauth(
  pki: Pki,
  seconds: number,
  concurrency: number,
  cpu?: CpuSample,
): Promise<number> {
  const server = new HandshakeServer({
    identity: identityOf(pki.server, pki.bundles),
    nodeName: 'node-b',
    localIdentities: () => [SERVER_ID],
    nodeForAddress: () => 'node-a',
    isWorkloadOnNode: () => true,
    maxEntryTtlMs: 3_600_000,
    onAuthenticated: () => {},
    limits: { perPeerRatePerSec: 1e9, perPeerBurst: 1e9, maxConnections: 4096 },
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  const client = new HandshakeClient({
    identity: identityOf(pki.client, pki.bundles),
    nodeName: 'node-a',
    maxEntryTtlMs: 3_600_000,
    timeoutMs: 10_000,
  });
  const req = {
    peerNode: 'node-b',
    peerAddress: '127.0.0.1',
    peerPort: port,
    localId: CLIENT_ID,
    remoteId: SERVER_ID,
  };
  try {
    for (let i = 0; i < 20; i++) await client.authenticate(req); // warm-up
    let done = 0;
    const deadline = performance.now() + seconds * 1000;
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await client.authenticate(req);
        done++;
      }
    };
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsed = (performance.now() - started) / 1000;
    recordCpu(cpu, cpu0, done);
    const failed = Object.values(server.stats().failed).reduce((a, b) => a + b, 0);
    if (failed > 0)
      throw new Error(`bench: ${failed} server-side failures: ${JSON.stringify(server.stats().failed)}`);
    return done / elapsed;
  } finally {
    await server.close();
  }
}

/**
 * Bare node:tls TLS 1.3 mutual handshakes per second: the fair baseline for meshauth's per-pair mode.
 * Same certificates and keys (ECDSA P-256), TLS 1.3 only, no session tickets (as meshauth), and the
 * peer chain verified on both ends by TLS itself: each side trusts the bench CA
 * (`rejectUnauthorized: true`), so OpenSSL validates the chain inside the handshake, and the client
 * accepts the server's identity when its URI SAN is the expected SPIFFE ID (node's
 * checkServerIdentity, which runs on every verified client connection). A handshake counts when
 * both ends completed it: the server ends the connection once it accepted the client's
 * certificate, and the client waits for that end. That is the point at which a meshauth
 * handshake's result arrives, so both columns count the same event.
 * `verifyPeer: false` (attribution only) trusts nothing and verifies no chain: the same handshake
 * without the cost of chain verification.
 */
export async function measureNodeTls(
  pki: Pki,
  seconds: number,
  concurrency: number,
  cpu?: CpuSample,
  opts: { verifyPeer?: boolean } = {},
): Promise<number> {
  const verify = opts.verifyPeer ?? true;
  disableSessionTickets();
  const base = {
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ca: verify ? [pki.caPem] : [],
  };
  const server = createTlsServer({
    ...base,
    cert: pki.server.chainPem,
    key: pki.server.keyPem,
    requestCert: true,
    rejectUnauthorized: verify,
  });
  server.on('secureConnection', (sock) => {
    sock.on('error', () => {});
    // What an application authorizing its peer reads: the verified client certificate.
    if ((verify && !sock.authorized) || !sock.getPeerX509Certificate()) sock.destroy();
    else sock.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const clientContext = createSecureContext({ ...base, cert: pki.client.chainPem, key: pki.client.keyPem });
  const expectedSan = `URI:${SERVER_ID}`;
  const once = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const c = tlsConnect({
        host: '127.0.0.1',
        port,
        secureContext: clientContext,
        rejectUnauthorized: verify,
        checkServerIdentity: (_host, cert) =>
          cert.subjectaltname === expectedSan ? undefined : new Error('bench: unexpected server identity'),
      });
      c.once('secureConnect', () => {
        if (verify && !c.authorized) {
          c.destroy();
          reject(new Error(`bench: server not authorized: ${String(c.authorizationError)}`));
        }
      });
      c.on('data', () => {});
      c.once('end', () => {
        c.destroy();
        resolve();
      });
      c.once('error', reject);
    });
  try {
    for (let i = 0; i < 20; i++) await once();
    let done = 0;
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          await once();
          done++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    recordCpu(cpu, cpu0, done);
    return done / elapsed;
  } finally {
    await new Promise((r) => server.close(r));
  }
}

function recordCpu(out: CpuSample | undefined, since: NodeJS.CpuUsage, handshakes: number): void {
  if (!out) return;
  const used = process.cpuUsage(since);
  out.cpuUs += used.user + used.system;
  out.handshakes += handshakes;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function pinned(cpu: number | undefined, cmd: string[]): string[] {
  return cpu === undefined ? cmd : ['taskset', '-c', String(cpu), ...cmd];
}

/** OpenSSL TLS 1.3 mTLS handshakes per second: s_server (client cert required) + s_time -new. */
export async function measureOpenssl(
  pki: Pki,
  seconds: number,
  cpu: number | undefined,
  commands: string[],
): Promise<number> {
  const port = await freePort();
  const f = pki.files;
  const serverCmd = pinned(cpu, [
    'openssl',
    's_server',
    '-accept',
    `127.0.0.1:${port}`,
    '-tls1_3',
    '-cert',
    f.serverCert,
    '-key',
    f.serverKey,
    '-CAfile',
    f.ca,
    '-Verify',
    '1',
    '-no_ticket',
    '-quiet',
    '-naccept',
    '1000000000',
  ]);
  const timeCmd = pinned(cpu, [
    'openssl',
    's_time',
    '-connect',
    `127.0.0.1:${port}`,
    '-new',
    '-tls1_3',
    '-cert',
    f.clientCert,
    '-key',
    f.clientKey,
    '-CAfile',
    f.ca,
    '-time',
    String(seconds),
  ]);
  if (commands.length < 2) commands.push(serverCmd.join(' '), timeCmd.join(' '));
  const srv: ChildProcess = spawn(serverCmd[0]!, serverCmd.slice(1), { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    await waitForPort(port);
    const out = execFileSync(timeCmd[0]!, timeCmd.slice(1), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const m = /(\d+) connections in ([\d.]+) real seconds/.exec(out);
    if (!m) throw new Error(`bench: cannot parse s_time output:\n${out}`);
    return Number(m[1]) / Number(m[2]);
  } finally {
    srv.kill('SIGTERM');
  }
}

async function waitForPort(port: number): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`bench: openssl s_server did not listen on ${port}`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export async function runHandshakeBench(opts: HandshakeBenchOptions): Promise<HandshakeBenchResult> {
  if (opts.cpu !== undefined) {
    // Pin every thread of this process (the meshauth client + server) to the chosen core.
    execFileSync('taskset', ['-a', '-cp', String(opts.cpu), String(process.pid)], { stdio: 'ignore' });
  }
  const pki = makePki();
  const commands: string[] = [];
  const seq: number[] = [];
  const conc: number[] = [];
  const ossl: number[] = [];
  const bare: number[] = [];
  const bareConc: number[] = [];
  const unverified: number[] = [];
  const meshCpu: CpuSample = { cpuUs: 0, handshakes: 0 };
  const bareCpu: CpuSample = { cpuUs: 0, handshakes: 0 };
  try {
    for (let r = 0; r < opts.rounds; r++) {
      // Alternate which of the two goes first, so that a drift in machine load favours neither.
      const pair = async (c: number, mesh: number[], nodeTls: number[]): Promise<void> => {
        const m = (): Promise<number> => measureMeshauth(pki, opts.seconds, c, c === 1 ? meshCpu : undefined);
        const b = (): Promise<number> => measureNodeTls(pki, opts.seconds, c, c === 1 ? bareCpu : undefined);
        if (r % 2 === 0) {
          mesh.push(await m());
          nodeTls.push(await b());
        } else {
          nodeTls.push(await b());
          mesh.push(await m());
        }
      };
      await pair(1, seq, bare);
      await pair(opts.concurrency, conc, bareConc);
      unverified.push(await measureNodeTls(pki, opts.seconds, 1, undefined, { verifyPeer: false }));
      ossl.push(await measureOpenssl(pki, opts.seconds, opts.cpu, commands));
    }
  } finally {
    rmSync(pki.dir, { recursive: true, force: true });
  }
  const meshauthSequentialPerSec = median(seq);
  const meshauthConcurrentPerSec = median(conc);
  const opensslPerSec = median(ossl);
  return {
    meshauthSequentialPerSec,
    meshauthConcurrentPerSec,
    opensslPerSec,
    nodeTlsPerSec: median(bare),
    nodeTlsConcurrentPerSec: median(bareConc),
    nodeTlsUnverifiedPerSec: median(unverified),
    ratioSequential: meshauthSequentialPerSec / opensslPerSec,
    ratioConcurrent: meshauthConcurrentPerSec / opensslPerSec,
    ratioBareSequential: median(seq.map((x, i) => x / bare[i]!)),
    ratioBareConcurrent: median(conc.map((x, i) => x / bareConc[i]!)),
    meshauthCpuUsPerHandshake: meshCpu.cpuUs / meshCpu.handshakes,
    nodeTlsCpuUsPerHandshake: bareCpu.cpuUs / bareCpu.handshakes,
    commands,
    pinnedCpu: opts.cpu,
  };
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'handshake',
      summary:
        'Handshake throughput: full meshauth handshakes per second on one core, next to bare node:tls\n' +
        "mutual handshakes and OpenSSL's own (s_server + s_time -new) in the same run, as ratios.",
      notes: 'MESHAUTH_BENCH_SMOKE=1: a one-second round.',
    },
    {
      seconds: {
        type: 'string',
        value: 's',
        number: { min: 0.1 },
        help: 'length of each measurement (default: 5)',
      },
      rounds: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'alternating rounds (default: 2)',
      },
      concurrency: {
        type: 'string',
        value: 'n',
        default: '16',
        number: { min: 1, integer: true },
        help: 'handshakes in flight at once',
      },
      cpu: { type: 'string', value: 'n|none', default: '0', help: 'core to pin to (none: no pinning)' },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const opts: HandshakeBenchOptions = {
    seconds: Number(values.seconds ?? (smoke ? 1 : 5)),
    rounds: Number(values.rounds ?? (smoke ? 1 : 2)),
    concurrency: Number(values.concurrency),
    cpu: values.cpu === 'none' ? undefined : Number(values.cpu),
  };
  const r = await runHandshakeBench(opts);
  if (values.json) {
    console.log(JSON.stringify(r));
    return;
  }
  const f = (x: number): string => x.toFixed(0).padStart(8);
  const n = String(opts.concurrency).padEnd(2);
  console.log(
    `handshakes per second on one core (cpu ${r.pinnedCpu ?? 'unpinned'}; ${opts.rounds} × ${opts.seconds}s rounds, median)`,
  );
  console.log(
    `  meshauth per-pair, 1 in flight       ${f(r.meshauthSequentialPerSec)}   ratio vs openssl ${r.ratioSequential.toFixed(2)}   vs bare node:tls ${r.ratioBareSequential.toFixed(2)}`,
  );
  console.log(
    `  meshauth per-pair, ${n} in flight      ${f(r.meshauthConcurrentPerSec)}   ratio vs openssl ${r.ratioConcurrent.toFixed(2)}   vs bare node:tls ${r.ratioBareConcurrent.toFixed(2)}`,
  );
  console.log(
    `  bare node:tls mutual, 1 in flight    ${f(r.nodeTlsPerSec)}   ratio vs openssl ${(r.nodeTlsPerSec / r.opensslPerSec).toFixed(2)}`,
  );
  console.log(
    `  bare node:tls mutual, ${n} in flight   ${f(r.nodeTlsConcurrentPerSec)}   ratio vs openssl ${(r.nodeTlsConcurrentPerSec / r.opensslPerSec).toFixed(2)}`,
  );
  console.log(
    `  bare node:tls, no chain verified, 1  ${f(r.nodeTlsUnverifiedPerSec)}   ratio vs openssl ${(r.nodeTlsUnverifiedPerSec / r.opensslPerSec).toFixed(2)}   (attribution only)`,
  );
  console.log(`  openssl s_server + s_time -new       ${f(r.opensslPerSec)}`);
  console.log(
    `  CPU per handshake (both ends, 1 in flight): meshauth ${r.meshauthCpuUsPerHandshake.toFixed(0)} µs, bare node:tls ${r.nodeTlsCpuUsPerHandshake.toFixed(0)} µs (ratio ${(r.nodeTlsCpuUsPerHandshake / r.meshauthCpuUsPerHandshake).toFixed(2)})`,
  );
  console.log(
    '  meshauth and bare node:tls: client and server in one node process; openssl: two processes on the same core',
  );
  for (const c of r.commands) console.log(`  $ ${c}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
