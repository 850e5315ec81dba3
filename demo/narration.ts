/** Sentences of the demo's narration that depend on what the daemons did, read from their logs. */

/** The daemons' JSON log lines by event name (Cluster.logs). */
export interface DaemonLogs {
  logs(node: string, event?: string): readonly unknown[];
}

const NODE_NAMES = ['node-a', 'node-b'];

/** syn_replayed log lines of both daemons so far. */
export function synReplays(cluster: DaemonLogs): number {
  return NODE_NAMES.reduce((n, node) => n + cluster.logs(node, 'syn_replayed').length, 0);
}

/**
 * How the dropped first SYN of a cold pair got through, from the daemons' own logs: meshauthd
 * re-sent it once both entries existed (datapath.synReplay, logged as syn_replayed), or TCP
 * retransmitted it. A replay is logged before the SYN can reach the server, so once the connection
 * is up its line is at most in flight on the log pipe: up to 10 waits of `waitMs` for it to arrive.
 */
export async function howSynPassed(
  cluster: DaemonLogs,
  replaysBefore: number,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  waitMs = 30,
): Promise<string> {
  for (let i = 0; i < 10 && synReplays(cluster) === replaysBefore; i++) await sleep(waitMs);
  if (synReplays(cluster) > replaysBefore)
    return 'meshauthd re-sent the dropped SYN as soon as both entries existed (SYN replay) and it passed';
  const off = NODE_NAMES.some((n) => cluster.logs(n, 'syn_replay_unavailable').length > 0);
  return `TCP retransmitted the SYN${off ? ' (SYN replay is unavailable here)' : ''} and it passed`;
}
