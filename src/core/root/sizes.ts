import path from 'node:path';
import { fsyncDir } from '../common/atomic.js';
import { errorCode } from '../common/errors.js';
import { Lock } from '../lease/lock.js';
import type { Layout, LaneMeta } from './layout.js';
import { treeSizeIn, type TreeSize } from '../delete/walk.js';
import { type Dir } from '../delete/dir.js';

/**
 * The size a kept or parked lane's metadata records, if it was measured: what `status`,
 * `metrics` and the sweep's report show without walking the tree.
 */
export function recordedSize(meta: Pick<LaneMeta, 'bytes' | 'files' | 'measured'> | undefined): TreeSize | undefined {
  return meta?.bytes !== undefined && meta.files !== undefined && meta.measured !== undefined
    ? { bytes: meta.bytes, files: meta.files }
    : undefined;
}

/** How long the measurement waits for the lane's lock (runlane's own short work holds it). */
const LOCK_WAIT_MS = 2000;

/**
 * Measures a kept or parked lane and records the size in its metadata, so reports read it in
 * O(lanes) instead of walking every lane's files. Post starts this in the background after it
 * kept or parked the lane (post itself stays O(1)).
 *
 * It never makes anybody wait long: a claim of a parked lane or a sweep evicting a kept one
 * must not stall behind a measurement running at low priority. The walk takes no lock; the new
 * metadata is written and synced beside the old first; the lane's lock is then held only to
 * check that nothing changed (the same directory in the same place, the metadata exactly as
 * read) and to rename it into place. Otherwise nothing is written. Returns the size recorded,
 * or undefined.
 */
export function recordSize(layout: Layout, key: string): TreeSize | undefined {
  const meta = layout.readMeta(key);
  if (!meta || (!meta.retained && !meta.parked)) return undefined;
  // A slot directory is ours to close; the layout's own `lanes` is the layout's.
  const slot = meta.parked && meta.slot ? layout.slotDir(meta.slot) : undefined;
  const dir: Dir | undefined = meta.parked ? slot : layout.dirIfAny('lanes');
  try {
    const before = dir?.lstat(key);
    if (!dir || !before?.isDirectory()) return undefined;
    const size = treeSizeIn(dir, key);
    const prepared = layout.prepareMeta({ ...meta, ...size, measured: new Date().toISOString() });
    let committed = false;
    try {
      const lock = Lock.acquireExisting(layout.lock(key), LOCK_WAIT_MS);
      if (!lock) return undefined;
      try {
        const after = dir.lstat(key);
        const same =
          after?.ino === before.ino &&
          after.dev === before.dev &&
          JSON.stringify(layout.readMeta(key)) === JSON.stringify(meta);
        if (!same) return undefined;
        try {
          prepared.commit();
        } catch (error) {
          // A sweep tidied the prepared file away (it looks like a crashed write): nothing recorded.
          if (errorCode(error) === 'ENOENT') return undefined;
          throw error;
        }
        committed = true;
      } finally {
        lock.release();
      }
    } finally {
      if (!committed) prepared.discard();
    }
    fsyncDir(path.dirname(layout.metaFile(key)));
    return size;
  } finally {
    slot?.close();
  }
}
