/** A node channel as the eviction choice sees it. */
export interface EvictionCandidate {
  node: string;
  /** Last pair asked for or received over the channel (clock ms). */
  lastUsedMs: number;
  /** A proof exchange or a pair is in flight on it: evicted only when nothing else can go. */
  busy: boolean;
}

/** Default of `auth.channel.maxChannels`: channels a node keeps open at once. */
export const DEFAULT_MAX_CHANNELS = 1000;

/**
 * Which channels to close so that one more fits under `max`: the least recently used first,
 * idle channels before busy ones (a busy channel is closed only when every idle one is already
 * chosen), ties by node name so both the order and the tests are deterministic.
 *
 * `open` are the channels that may be closed, without the one that needs room; `pinned` counts
 * channels held against the cap that cannot be closed (dials in progress). Returns the nodes to
 * close, in closing order: empty when `open.length + pinned < max`, at most all of `open`.
 */
export function channelsToEvict(open: readonly EvictionCandidate[], max: number, pinned = 0): string[] {
  if (!(Number.isInteger(max) && max >= 1))
    throw new RangeError(`node channels: maxChannels must be an integer >= 1 (got ${max})`);
  const excess = Math.min(open.length, open.length + pinned - max + 1);
  if (excess <= 0) return [];
  return [...open]
    .sort(
      (x, y) =>
        Number(x.busy) - Number(y.busy) ||
        x.lastUsedMs - y.lastUsedMs ||
        (x.node < y.node ? -1 : x.node > y.node ? 1 : 0),
    )
    .slice(0, excess)
    .map((c) => c.node);
}
