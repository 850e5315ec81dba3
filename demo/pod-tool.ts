/**
 * Tiny traffic tool run inside pod namespaces by the demo and the e2e tests:
 *   serve   --port P                  TCP server answering "ok <name>\n" to every connection
 *   connect --host H --port P [--timeout MS]   one TCP connection; prints {"ok":bool,"ms":N,"error"?}
 *   flood   --host H --port P --ms D  sends UDP datagrams as fast as it can for D ms; prints {"sent":N}
 */
import { createSocket } from 'node:dgram';
import { createConnection, createServer } from 'node:net';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) {
    process.stderr.write(`pod-tool: missing --${name}\n`);
    process.exit(2);
  }
  return v;
}

const cmd = process.argv[2];
if (cmd === 'serve') {
  const name = arg('name', 'server');
  const server = createServer((s) => {
    s.on('error', () => {});
    s.end(`ok ${name}\n`);
  });
  server.listen(Number(arg('port')), '0.0.0.0', () => process.stdout.write('listening\n'));
} else if (cmd === 'connect') {
  const started = process.hrtime.bigint();
  const sock = createConnection({ host: arg('host'), port: Number(arg('port')) });
  const done = (ok: boolean, error?: string, reply?: string): void => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    process.stdout.write(JSON.stringify({ ok, ms: Math.round(ms * 100) / 100, error, reply }) + '\n');
    sock.destroy();
    process.exit(0);
  };
  sock.setTimeout(Number(arg('timeout', '5000')), () => done(false, 'timeout'));
  let data = '';
  sock.on('data', (d) => (data += d.toString()));
  sock.on('end', () => done(true, undefined, data.trim()));
  sock.on('error', (e) => done(false, e.message));
} else if (cmd === 'flood') {
  const sock = createSocket('udp4');
  const host = arg('host');
  const port = Number(arg('port'));
  const until = Date.now() + Number(arg('ms'));
  const payload = Buffer.alloc(32, 0x61);
  let sent = 0;
  const tick = (): void => {
    for (let i = 0; i < 200; i++) {
      sock.send(payload, port, host);
      sent++;
    }
    if (Date.now() < until) setImmediate(tick);
    else sock.close(() => process.stdout.write(JSON.stringify({ sent }) + '\n'));
  };
  tick();
} else {
  process.stderr.write('usage: pod-tool serve|connect|flood ...\n');
  process.exit(2);
}
