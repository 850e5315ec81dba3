/**
 * datapath.maps against the real kernel: the sizes reach the created maps, a full auth map
 * refuses a new key with E2BIG (what AuthManager turns into auth-map-full), and maps pinned with
 * other sizes do not match (the daemon then recreates the pins).
 */
import { constants } from 'node:os';
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BpfObject,
  Datapath,
  DatapathInputError,
  PinMismatchError,
  mapMaxEntries,
  wire,
} from '../../../src/datapath/index.js';
import { isPrivileged } from '../../helpers/netns.js';
import { OBJECT_PATH, randomPinDir } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) {
    Datapath.removePins(d);
    rmSync(d, { recursive: true, force: true });
  }
});

describe.skipIf(!isPrivileged())('datapath map sizes', () => {
  it('creates the maps with the configured sizes and refuses a new key in a full auth map', () => {
    const pinDir = randomPinDir();
    dirs.push(pinDir);
    const dp = Datapath.open({
      objectPath: OBJECT_PATH,
      pinDir,
      mapSizes: { auth: 16, ipcache: 32, policy: 64, throttle: 128, signalRingBytes: 8192 },
    });
    const obj = BpfObject.load(OBJECT_PATH, {
      pinDir,
      maxEntries: mapMaxEntries({ auth: 16, ipcache: 32, policy: 64, throttle: 128, signalRingBytes: 8192 }),
    });
    try {
      expect(obj.mapInfo(wire.MAPS.auth.name).maxEntries).toBe(16);
      expect(obj.mapInfo(wire.MAPS.ipcache.name).maxEntries).toBe(32);
      expect(obj.mapInfo(wire.MAPS.hosts.name).maxEntries).toBe(32);
      expect(obj.mapInfo(wire.MAPS.policy.name).maxEntries).toBe(64);
      expect(obj.mapInfo(wire.MAPS.throttle.name).maxEntries).toBe(128);
      expect(obj.mapInfo(wire.MAPS.signals.name).maxEntries).toBe(8192);
    } finally {
      obj.close();
    }
    const key = (i: number) => ({ localId: i, remoteId: 1000, remoteNode: 2, authType: 1 });
    for (let i = 1; i <= 16; i++) dp.auth.update(key(i), { expiresAtMs: Date.now() + 60_000 });
    expect(() => dp.auth.update(key(17), { expiresAtMs: Date.now() + 60_000 })).toThrow(
      expect.objectContaining({ errno: constants.errno.E2BIG }),
    );
    // A key already present is replaced in place even in a full map.
    dp.auth.update(key(3), { expiresAtMs: Date.now() + 120_000 });
    dp.close();
  });

  it('does not reuse maps pinned with another size, and names an unknown map', () => {
    const pinDir = randomPinDir();
    dirs.push(pinDir);
    Datapath.open({ objectPath: OBJECT_PATH, pinDir, mapSizes: { auth: 16 } }).close();
    expect(() => Datapath.open({ objectPath: OBJECT_PATH, pinDir, mapSizes: { auth: 32 } })).toThrow(
      PinMismatchError,
    );
    Datapath.open({ objectPath: OBJECT_PATH, pinDir, mapSizes: { auth: 16 } }).close();
    expect(() => BpfObject.load(OBJECT_PATH, { maxEntries: { ma_nope: 1 } })).toThrow(DatapathInputError);
  });
});
