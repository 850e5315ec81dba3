/**
 * Worker-thread entry of AuditWriter's threaded mode: owns a second write connection to the audit
 * database and appends the batches the main thread posts, one transaction each, so hashing, index
 * maintenance and WAL checkpoints never run on the daemon's event loop. Replies after each commit.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore } from './store.js';
import type { AuditEventInput } from './sink.js';

export interface WriterThreadData {
  path: string;
}

export type ToWriterThread = { op: 'append'; id: number; events: AuditEventInput[] } | { op: 'close' };

export type FromWriterThread =
  | { op: 'ready'; lastSeq: number }
  | { op: 'appended'; id: number; count: number; lastSeq: number }
  | { op: 'failed'; id: number; count: number; message: string; code?: string }
  | { op: 'open-failed'; message: string }
  | { op: 'closed' };

function main(): void {
  const port = parentPort;
  if (!port) return;
  const send = (m: FromWriterThread) => port.postMessage(m);
  const data = workerData as WriterThreadData;
  let store: AuditStore;
  try {
    store = AuditStore.open({ path: data.path });
  } catch (err) {
    send({ op: 'open-failed', message: (err as Error).message });
    return;
  }
  send({ op: 'ready', lastSeq: store.lastSeq() });
  // Messages that arrive together are written in one transaction (up to MAX_GROUP events), so the
  // main thread can post small batches (short clones) without making transactions small.
  let pending: { id: number; events: AuditEventInput[] }[] = [];
  let scheduled = false;
  const writePending = (): void => {
    scheduled = false;
    while (pending.length > 0) {
      let n = 0;
      let k = 0;
      while (k < pending.length && (k === 0 || n + pending[k]!.events.length <= MAX_GROUP)) {
        n += pending[k]!.events.length;
        k++;
      }
      const group = pending.slice(0, k);
      pending = pending.slice(k);
      try {
        const lastSeq = store.appendQuiet(
          group.length === 1 ? group[0]!.events : group.flatMap((g) => g.events),
        );
        for (const g of group) send({ op: 'appended', id: g.id, count: g.events.length, lastSeq });
      } catch (err) {
        for (const g of group) {
          const code = (err as { code?: unknown }).code;
          send({
            op: 'failed',
            id: g.id,
            count: g.events.length,
            message: (err as Error).message,
            ...(typeof code === 'string' ? { code } : {}),
          });
        }
      }
    }
  };
  port.on('message', (m: ToWriterThread) => {
    if (m.op === 'close') {
      writePending();
      store.close();
      send({ op: 'closed' });
      port.close();
      return;
    }
    pending.push({ id: m.id, events: m.events });
    if (!scheduled) {
      scheduled = true;
      setImmediate(writePending);
    }
  });
}

const MAX_GROUP = 20_000;

main();
