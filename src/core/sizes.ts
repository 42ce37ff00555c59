import { Lock } from './lease.js';
import type { Layout, LaneMeta } from './layout.js';
import { treeSizeIn, type Dir, type TreeSize } from './remove.js';

/**
 * The size a kept or parked lane's metadata records, if it was measured: what `status`,
 * `metrics` and the sweep's report show without walking the tree.
 */
export function recordedSize(meta: Pick<LaneMeta, 'bytes' | 'files' | 'measured'> | undefined): TreeSize | undefined {
  return meta?.bytes !== undefined && meta.files !== undefined && meta.measured !== undefined
    ? { bytes: meta.bytes, files: meta.files }
    : undefined;
}

/**
 * Measures a kept or parked lane and records the size in its metadata, so reports read it in
 * O(lanes) instead of walking every lane's files. Post starts this in the background after it
 * kept or parked the lane (post itself stays O(1)).
 *
 * The walk runs without the lane's lock: a claim of a parked lane must never wait for a
 * measurement. The result is written under the lock, and only if the lane is still the same
 * directory in the same place and still kept or parked as it was; otherwise nothing is written.
 * Returns the size recorded, or undefined.
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
    const lock = Lock.tryAcquireExisting(layout.lock(key));
    if (!lock) return undefined;
    try {
      const now = layout.readMeta(key);
      const after = dir.lstat(key);
      const same =
        now !== undefined &&
        after?.ino === before.ino &&
        after.dev === before.dev &&
        now.parked === meta.parked &&
        now.slot === meta.slot &&
        now.retained === meta.retained;
      if (!same) return undefined;
      layout.writeMeta({ ...now, ...size, measured: new Date().toISOString() });
      return size;
    } finally {
      lock.release();
    }
  } finally {
    slot?.close();
  }
}
