import { statSync } from 'node:fs';
import { ConfigError } from '../config/index.js';
import { fileErrorReason } from '../errors.js';
import { readInputFileSync } from '../read-file.js';
import { parseSpiffeId } from '../spiffe/index.js';
import type { RelayNode } from './node-api.js';

/**
 * Parse a node list: one node per line or comma-separated item, `name=host:port` or
 * `name=host:port=spiffe://...` (the SPIFFE ID its API must present); `#` starts a comment.
 * Throws with the offending item.
 */
export function parseNodeList(text: string): RelayNode[] {
  const out: RelayNode[] = [];
  const seen = new Set<string>();
  for (const raw of text.split(/[\n,]/)) {
    const item = raw.replace(/#.*/, '').trim();
    if (!item) continue;
    const m =
      /^([A-Za-z0-9][A-Za-z0-9._-]{0,252})=((?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})(?:=(spiffe:\/\/\S+))?$/.exec(
        item,
      );
    if (!m) throw new Error(`node list: "${item}" is not name=host:port[=spiffe://id]`);
    const port = Number(m[2]!.slice(m[2]!.lastIndexOf(':') + 1));
    if (port < 1 || port > 65535)
      throw new Error(`node list: "${item}": the port must be between 1 and 65535 (got ${port})`);
    if (m[3]) {
      try {
        parseSpiffeId(m[3]);
      } catch (err) {
        throw new Error(`node list: "${item}": ${(err as Error).message}`, { cause: err });
      }
    }
    if (seen.has(m[1]!)) throw new Error(`node list: node ${m[1]} appears twice`);
    seen.add(m[1]!);
    out.push({ name: m[1]!, address: m[2]!, ...(m[3] ? { spiffeId: m[3] } : {}) });
  }
  return out;
}

/** Largest --nodes-file read, bytes (about 10,000 nodes with their SPIFFE IDs). */
const MAX_NODE_LIST_BYTES = 1024 * 1024;

/**
 * Nodes from flags plus, when given, a file re-read whenever it changes (nodes joining and leaving
 * are picked up without a restart). The file is read once here: when it is missing, unreadable or
 * not a node list, this throws ConfigError naming `--nodes-file`, the path and the reason (a relay
 * serving with no nodes would answer every query with an empty, complete-looking result). Later
 * reads that fail keep the last good list and call `onError`.
 */
export function staticNodes(
  flagNodes: readonly RelayNode[],
  file?: string,
  onError?: (err: Error) => void,
): () => RelayNode[] {
  let mtime = -1;
  let fromFile: RelayNode[] = [];
  const read = (): void => {
    const m = statSync(file!).mtimeMs;
    if (m !== mtime) {
      // never blocks on a FIFO nor reads a device without end: the relay serves from this thread
      fromFile = parseNodeList(readInputFileSync(file!, MAX_NODE_LIST_BYTES).toString('utf8'));
      mtime = m;
    }
  };
  if (file) {
    try {
      read();
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ? fileErrorReason(err) : (err as Error).message;
      throw new ConfigError([`--nodes-file ${file}: ${reason}`], { cause: err });
    }
  }
  return () => {
    if (file) {
      try {
        read();
      } catch (err) {
        onError?.(err as Error);
      }
    }
    const names = new Set(flagNodes.map((n) => n.name));
    return [...flagNodes, ...fromFile.filter((n) => !names.has(n.name))];
  };
}
