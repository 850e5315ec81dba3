/**
 * The peer node's handshake server for bench/auth-latency: holds SVIDs from the given dev CA for
 * the listed SPIFFE IDs and accepts handshakes on 127.0.0.1. Prints {"port":N} when listening.
 *
 *   node dist/bench/peer-server.js --ca-dir <dir> --ids-file <file, one ID per line> --client-node <name>
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HandshakeServer } from '../src/auth/handshake/index.js';
import { DevCa } from '../src/identity/index.js';
import type { Svid } from '../src/spiffe/index.js';
import { benchArgs } from './args.js';

const { values } = benchArgs(
  {
    name: 'peer-server',
    summary:
      "The peer node's handshake server for bench/auth-latency (started by it): SVIDs from a dev CA\n" +
      'for the listed SPIFFE IDs, handshakes accepted on 127.0.0.1; prints {"port":N} when listening.',
  },
  {
    'ca-dir': { type: 'string', value: 'dir', help: 'directory of the dev CA (ca.crt, ca.key); required' },
    'ids-file': {
      type: 'string',
      value: 'file',
      help: 'SPIFFE IDs to hold SVIDs for, one per line; required',
    },
    'client-node': { type: 'string', value: 'name', default: 'bench-a', help: 'node name of the client' },
  },
);
if (!values['ca-dir'] || !values['ids-file']) {
  process.stderr.write(
    'bench peer-server: --ca-dir and --ids-file are required (run node dist/bench/peer-server.js --help for usage)\n',
  );
  process.exit(2);
}
const dir = values['ca-dir'];
const ca = await DevCa.load({ caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key') });
const ids = readFileSync(values['ids-file'], 'utf8').split('\n').filter(Boolean);
const svids = new Map<string, Svid>();
for (const id of ids) svids.set(id, await ca.issue(id));
const clientNode = values['client-node'];
let entries = 0;
const server = new HandshakeServer({
  identity: { svid: (id) => svids.get(id), bundles: () => ca.bundles() },
  nodeName: 'bench-b',
  localIdentities: () => ids,
  nodeForAddress: () => clientNode,
  isWorkloadOnNode: () => true,
  maxEntryTtlMs: 3_600_000,
  limits: { perPeerRatePerSec: 1_000_000, perPeerBurst: 1_000_000, maxConnections: 4096 },
  onAuthenticated: () => {
    entries++;
  },
});
const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.once('SIGTERM', () => {
  process.stderr.write(`peer-server: ${entries} reverse entries\n`);
  void server.close().then(() => process.exit(0));
});
