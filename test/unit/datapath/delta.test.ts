import { describe, expect, it } from 'vitest';
import { diffMaps, isEmptyDelta } from '../../../src/datapath/index.js';

describe('diffMaps', () => {
  const prev = {
    ipcache: [
      { cidr: '10.0.0.1/32', identity: 1, nodeId: 0 },
      { cidr: '10.0.0.2/32', identity: 2, nodeId: 1 },
    ],
    policy: [{ localId: 1, remoteId: 2, authType: 1, mode: 'enforce' as const }],
  };

  it('is empty for equal states, prefixes compared in canonical form', () => {
    const same = {
      ipcache: [
        { cidr: '10.0.0.2', identity: 2, nodeId: 1 },
        { cidr: '::ffff:10.0.0.1/128', identity: 1, nodeId: 0 },
      ],
      policy: [{ localId: 1, remoteId: 2, authType: 1 }],
    };
    expect(isEmptyDelta(diffMaps(prev, same))).toBe(true);
  });

  it('lists only changed entries: a moved address, a removed one, a mode change', () => {
    const next = {
      ipcache: [
        { cidr: '10.0.0.1/32', identity: 1, nodeId: 0 },
        { cidr: '10.0.0.3/32', identity: 2, nodeId: 1 },
      ],
      policy: [{ localId: 1, remoteId: 2, authType: 1, mode: 'permissive' as const }],
    };
    expect(diffMaps(prev, next)).toEqual({
      ipcacheUpsert: [{ cidr: '10.0.0.3/32', identity: 2, nodeId: 1 }],
      ipcacheRemove: ['10.0.0.2/32'],
      policyUpsert: [{ localId: 1, remoteId: 2, authType: 1, mode: 'permissive' }],
      policyRemove: [],
    });
  });

  it('an address reused by another identity is one upsert (replaced in place)', () => {
    const next = { ...prev, ipcache: [prev.ipcache[0]!, { cidr: '10.0.0.2/32', identity: 7, nodeId: 1 }] };
    const d = diffMaps(prev, next);
    expect(d.ipcacheUpsert).toEqual([{ cidr: '10.0.0.2/32', identity: 7, nodeId: 1 }]);
    expect(d.ipcacheRemove).toEqual([]);
  });
});
