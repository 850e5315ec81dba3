import type { DaemonView, EntryView, FlushRequest, StatusView } from '../../../src/api/index.js';

/** A DaemonView over an in-memory entry list (the real one lives in the daemon). */
export class FakeDaemon implements DaemonView {
  entries: EntryView[] = [
    {
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
      remoteNode: 'node-2',
      localIdentity: 1,
      remoteIdentity: 2,
      remoteNodeId: 2,
      authType: 1,
      expiresAtMs: 1_900_000_000_000,
    },
    {
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://a.test/ns/x/sa/cache',
      remoteNode: '',
      localIdentity: 1,
      remoteIdentity: 3,
      remoteNodeId: 0,
      authType: 1,
      expiresAtMs: 1_900_000_100_000,
    },
  ];
  flushes: FlushRequest[] = [];

  listEntries(): EntryView[] {
    return this.entries;
  }

  status(): StatusView {
    return {
      version: '0.1.0',
      node: 'node-1',
      startedAtMs: 1_800_000_000_000,
      datapath: { attached: true, mode: 'tc', detail: 'eth0,veth1' },
      identitySource: { kind: 'dev-ca', connected: true },
      identities: [{ spiffeId: 'spiffe://a.test/ns/x/sa/web', notAfterMs: 1_900_000_000_000 }],
      counters: { pass: 10, drop_auth_required: 3 },
      entries: this.entries.length,
      versions: { node: process.version },
    };
  }

  flush(req: FlushRequest): number {
    this.flushes.push(req);
    const before = this.entries.length;
    this.entries =
      'all' in req
        ? []
        : this.entries.filter((e) => !(e.localId === req.localId && e.remoteId === req.remoteId));
    return before - this.entries.length;
  }
}
