/**
 * Assertions the fault tests end with. Kept apart from harness.ts, which bench/load.ts also runs
 * outside vitest.
 */
import { expect } from 'vitest';
import type { Cluster } from '../../demo/cluster.js';
import { readAudit, unearnedEntries } from './harness.js';

/**
 * The record of `node` is whole: every kernel auth entry has its `entry-written` audit event
 * (polled for up to 5 s, the writer commits in batches) and the audit hash chain verifies.
 */
export async function expectEarnedAndVerified(cluster: Cluster, node: string): Promise<void> {
  await expect.poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 }).toEqual([]);
  expect(readAudit(cluster, node).verified, node).toBe(true);
}
