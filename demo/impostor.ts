/**
 * A rogue handshake server for the demo and the e2e tests: it listens where a node's meshauthd
 * would and answers for the node's workloads with a certificate that must NOT be accepted.
 *
 *   impostor --kind untrusted-ca|wrong-id|critical-extension --listen <addr> --ca-dir <dev CA dir> --ids <id,...>
 *            [--port 4250] [--channel-port <port>]
 *
 * With --channel-port it also accepts node channels there (auth.mode channel), presenting a node
 * SVID of the same kind (rogue CA, another node's ID, a critical extension) for the node it poses as.
 *
 * untrusted-ca: SVIDs with the right SPIFFE IDs from a freshly made CA of the same trust domain.
 * wrong-id:     SVIDs from the real CA, but for spiffe://<td>/ns/demo/sa/impostor.
 * critical-extension: SVIDs from the real CA with the right SPIFFE IDs, carrying an unknown
 *               extension marked critical (RFC 5280 §4.2: a validator must refuse them).
 * Prints "listening" once ready; logs every client it fooled or not as JSON lines.
 */
import 'reflect-metadata';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { NodeChannels, nodeSpiffeIdFor } from '../src/auth/channel/index.js';
import { HandshakeServer } from '../src/auth/handshake/index.js';
import { DevCa } from '../src/identity/index.js';
import type { Svid } from '../src/spiffe/index.js';
import { createLogger } from '../src/log.js';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) {
    process.stderr.write(`impostor: missing --${name}\n`);
    process.exit(2);
  }
  return v;
}

const kind = arg('kind');
if (kind !== 'untrusted-ca' && kind !== 'wrong-id' && kind !== 'critical-extension') {
  process.stderr.write('impostor: --kind must be untrusted-ca, wrong-id or critical-extension\n');
  process.exit(2);
}
const realCa = await DevCa.load({
  caCert: join(arg('ca-dir'), 'ca.crt'),
  caKey: join(arg('ca-dir'), 'ca.key'),
});
const ids = arg('ids').split(',');
const node = arg('node');
const svids = new Map<string, Svid>();
const nodeId = nodeSpiffeIdFor(`spiffe://${realCa.trustDomain}/meshauth/node/{node}`);
let nodeSvid: Svid;
if (kind === 'untrusted-ca') {
  const rogue = await DevCa.create(realCa.trustDomain);
  for (const id of ids) svids.set(id, await rogue.issue(id));
  nodeSvid = await rogue.issue(nodeId(node));
} else if (kind === 'critical-extension') {
  const critical = new x509.Extension('1.3.6.1.4.1.55555.1', true, new Uint8Array([0x05, 0x00]));
  for (const id of ids) svids.set(id, await realCa.issue(id, { extensions: [critical] }));
  nodeSvid = await realCa.issue(nodeId(node), { extensions: [critical] });
} else {
  const wrong = await realCa.issue(`spiffe://${realCa.trustDomain}/ns/demo/sa/impostor`);
  for (const id of ids) svids.set(id, wrong);
  nodeSvid = await realCa.issue(nodeId('impostor'));
}
const logger = createLogger({ level: 'info', name: 'impostor' });
const server = new HandshakeServer({
  identity: { svid: (id) => svids.get(id), bundles: () => realCa.bundles() },
  nodeName: node,
  localIdentities: () => ids,
  nodeForAddress: () => 'any',
  isWorkloadOnNode: () => true,
  maxEntryTtlMs: 3_600_000,
  onAuthenticated: () => undefined,
  logger,
});
await server.listen({
  host: arg('listen'),
  port: Number(process.argv.includes('--port') ? arg('port') : '4250'),
});
let channels: NodeChannels | undefined;
if (process.argv.includes('--channel-port')) {
  channels = new NodeChannels({
    nodeName: node,
    nodeSvid: () => nodeSvid,
    nodeSpiffeId: nodeId,
    identity: { svid: (id) => svids.get(id), bundles: () => realCa.bundles() },
    channelEndpoint: () => undefined,
    nodeForAddress: () => 'any',
    isWorkloadOnNode: () => true,
    onPairRequested: () => undefined,
    maxEntryTtlMs: 3_600_000,
    idleTimeoutMs: 0,
    logger,
  });
  await channels.listen({ host: arg('listen'), port: Number(arg('channel-port')) });
}
process.stdout.write('listening\n');
const stop = (): void => void Promise.all([server.close(), channels?.close()]).then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
