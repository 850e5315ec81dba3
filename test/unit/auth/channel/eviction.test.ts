import { describe, expect, it } from 'vitest';
import { channelsToEvict, type EvictionCandidate } from '../../../../src/auth/channel/index.js';
import { FakeClock } from '../../../helpers/fake-clock.js';

/** Channels used in turn, one clock step apart (the first is the least recently used). */
function usedInTurn(clock: FakeClock, nodes: string[], busy: string[] = []): EvictionCandidate[] {
  return nodes.map((node) => {
    clock.advance(1000);
    return { node, lastUsedMs: clock.now(), busy: busy.includes(node) };
  });
}

describe('channelsToEvict', () => {
  it('closes nothing below the cap, and the least recently used channel at it', () => {
    const clock = new FakeClock(0);
    const open = usedInTurn(clock, ['n1', 'n2', 'n3']);
    expect(channelsToEvict(open, 4)).toEqual([]);
    expect(channelsToEvict(open, 3)).toEqual(['n1']);
    // Using n1 again makes n2 the oldest.
    clock.advance(1000);
    open[0]!.lastUsedMs = clock.now();
    expect(channelsToEvict(open, 3)).toEqual(['n2']);
  });

  it('closes as many as the cap needs, oldest first (a lowered cap, dials in progress)', () => {
    const clock = new FakeClock(0);
    const open = usedInTurn(clock, ['n1', 'n2', 'n3', 'n4']);
    expect(channelsToEvict(open, 2)).toEqual(['n1', 'n2', 'n3']);
    // Two dials in progress hold two of the four places and cannot be closed.
    expect(channelsToEvict(open, 4, 2)).toEqual(['n1', 'n2', 'n3']);
    // Never more than the open channels, even when dials alone fill the cap.
    expect(channelsToEvict(open, 2, 5)).toEqual(['n1', 'n2', 'n3', 'n4']);
  });

  it('spares channels with a proof exchange in flight while an idle one can go', () => {
    const clock = new FakeClock(0);
    const open = usedInTurn(clock, ['n1', 'n2', 'n3'], ['n1', 'n2']);
    expect(channelsToEvict(open, 3)).toEqual(['n3']);
    expect(channelsToEvict(open, 2)).toEqual(['n3', 'n1']);
    // All busy: the least recently used goes.
    open[2]!.busy = true;
    expect(channelsToEvict(open, 3)).toEqual(['n1']);
  });

  it('breaks ties by node name, and refuses a cap below one', () => {
    const open: EvictionCandidate[] = [
      { node: 'b', lastUsedMs: 5, busy: false },
      { node: 'a', lastUsedMs: 5, busy: false },
    ];
    expect(channelsToEvict(open, 2)).toEqual(['a']);
    expect(() => channelsToEvict(open, 0)).toThrow(RangeError);
    expect(() => channelsToEvict(open, 1.5)).toThrow(/maxChannels/);
  });
});
