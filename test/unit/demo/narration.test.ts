import { describe, expect, it } from 'vitest';
import { howSynPassed, synReplays, type DaemonLogs } from '../../../demo/narration.js';

/** Log lines per node and event, as the demo's Cluster collects them; `later` arrive on a sleep. */
function fakeLogs(now: Record<string, string[]>, later: Record<string, string[]> = {}) {
  const lines = new Map(Object.entries(now).map(([n, evs]) => [n, [...evs]]));
  let sleeps = 0;
  const logs: DaemonLogs & { sleeps: () => number; sleep: () => Promise<void> } = {
    logs: (node, event) => (lines.get(node) ?? []).filter((e) => event === undefined || e === event),
    sleeps: () => sleeps,
    sleep: async () => {
      sleeps++;
      for (const [n, evs] of Object.entries(later)) lines.set(n, [...(lines.get(n) ?? []), ...evs]);
      later = {};
    },
  };
  return logs;
}

describe('demo narration of the first SYN', () => {
  it('says the SYN was replayed when a daemon logged syn_replayed during the connect', async () => {
    const c = fakeLogs({ 'node-a': ['daemon_ready', 'syn_replayed'], 'node-b': ['daemon_ready'] });
    expect(await howSynPassed(c, 0, c.sleep)).toBe(
      'meshauthd re-sent the dropped SYN as soon as both entries existed (SYN replay) and it passed',
    );
    expect(c.sleeps()).toBe(0);
  });

  it('waits for a replay line still on its way, on either node', async () => {
    const c = fakeLogs({ 'node-a': ['daemon_ready'] }, { 'node-b': ['syn_replayed'] });
    expect(await howSynPassed(c, 0, c.sleep)).toMatch(/^meshauthd re-sent the dropped SYN/);
    expect(c.sleeps()).toBe(1);
  });

  it('says TCP retransmitted it when no new replay was logged, counting only replays after the start', async () => {
    const c = fakeLogs({ 'node-a': ['syn_replayed'], 'node-b': [] });
    expect(synReplays(c)).toBe(1);
    expect(await howSynPassed(c, 1, c.sleep)).toBe('TCP retransmitted the SYN and it passed');
    expect(c.sleeps()).toBe(10);
  });

  it('says why when replay is unavailable', async () => {
    const c = fakeLogs({ 'node-a': ['syn_replay_unavailable'], 'node-b': [] });
    expect(await howSynPassed(c, 0, c.sleep)).toBe(
      'TCP retransmitted the SYN (SYN replay is unavailable here) and it passed',
    );
  });
});
