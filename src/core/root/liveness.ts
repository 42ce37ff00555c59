import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { Dir } from '../delete/dir.js';
import { Layout, type LaneMeta } from './layout.js';
import { Lock, checkLockFile, lstatExact, type AnyStats, type LockFile } from '../lease/lock.js';
import { flockIdentity, heldFlocks, type HeldLocks } from '../lease/held.js';

/**
 * Liveness, decided by the lease alone: each lane's state (live, orphan, kept, unknown) from
 * its lock and its metadata, for a whole root in a few system calls a lane.
 */

/** `unknown`: its lock file cannot be used, so nobody can tell; it is reported and left alone. */
export type LaneState = 'live' | 'orphan' | 'kept' | 'unknown';

export interface LaneEntry {
  key: string;
  path: string;
  state: LaneState;
  meta?: LaneMeta;
  created?: string;
  /** Why the state is `unknown`. */
  problem?: string;
  /**
   * The lease is held now (the kernel's word, not a record's): true for every `live` lane and
   * for a `kept` one whose lock someone holds (runlane's own short work, or a job that wrote
   * a `retained` marker into its live lane's metadata). What decides alerts counts this.
   */
  leased?: boolean;
}

/** Every lane under the root with its state; liveness is the lease's alone. */
export function listLanes(root: string, layout?: Layout, onLane?: () => void): LaneEntry[] {
  const own = layout ?? new Layout(root);
  try {
    const lanes: LaneEntry[] = [];
    forEachLane(own, (lane) => {
      onLane?.();
      lanes.push(lane);
    });
    return lanes;
  } finally {
    if (!layout) own.close();
  }
}

/** Every lane under the root with its state, in key order, one at a time (nothing kept). */
export function forEachLane(layout: Layout, each: (lane: LaneEntry) => void): void {
  const keys = layout.names('lanes').sort();
  const held = heldLocks(layout);
  // A refused metadata directory (a job planted a symlink there) does not stop the listing:
  // without metadata a kept lane cannot be told from an orphan, so an unleased lane is then
  // `unknown`, reported and left alone, and the live ones are still known to be live.
  let metaDir: Dir | undefined;
  let metaRefused: string | undefined;
  try {
    metaDir = layout.dirIfAny('meta');
  } catch (error) {
    metaRefused = errorMessage(error);
  }
  const locksDir = layout.dirIfAny('locks');
  // In chunks: each chunk's metadata is read, then its lock files are looked at, from inside
  // their directories (names resolve from the opened directory, as through its descriptor,
  // at half the cost of a /proc/self/fd path): a scan of 100,000 lanes is system calls.
  for (let start = 0; start < keys.length; start += SCAN_CHUNK) {
    const chunk = keys.slice(start, start + SCAN_CHUNK);
    const metas = metaRefused
      ? chunk.map(() => undefined)
      : metaDir?.within(() => chunk.map((key) => layout.readMetaFile(`${key}.json`, key)));
    const locks = locksDir?.within(() => chunk.map((key) => lstatOrError(`${key}.lock`)));
    chunk.forEach((key, index) => {
      const entry = laneEntry(layout, key, held, metas ? { meta: metas[index], lock: locks?.[index] } : undefined);
      if (metaRefused && entry.state === 'orphan') {
        entry.state = 'unknown';
        entry.problem = `its metadata cannot be read (${metaRefused}), so a kept lane cannot be told from an orphan`;
      }
      each(entry);
    });
  }
}

const SCAN_CHUNK = 1000;

/** A lock file's lstat, or the error (a name too long, a permission): that lane alone is `unknown`. */
function lstatOrError(file: string): AnyStats | undefined | Error {
  try {
    return lstatExact(file);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/** One lane's state; a bad lock file or metadata makes it `unknown`, never stops the listing. */
function laneEntry(
  layout: Layout,
  key: string,
  held: HeldLocks,
  read?: { meta: LaneMeta | undefined; lock: AnyStats | undefined | Error },
): LaneEntry {
  const lanePath = layout.lane(key);
  try {
    const meta = read ? read.meta : layout.readMeta(key);
    const file = layout.lock(key);
    const lock = read ? read.lock : lstatExact(file.at);
    if (lock instanceof Error) throw lock;
    // A kept lane is never leased again (lanes are never reused): a lock held on it is
    // runlane's own short work (its size being recorded, a sweep evicting it, the post that
    // kept it, whose holder may outlive it if it could not be stopped), or a process of a job
    // holding a file of locks/ on purpose. It stays `kept`; whoever acts on it must still take
    // the lock, so a forged `retained` on a live lane gets it reported, never removed. (The
    // probe still runs: an unusable lock file makes any lane `unknown`.)
    const live = leaseHeld(file, held, lock);
    const state: LaneState = meta?.retained ? 'kept' : live ? 'live' : 'orphan';
    return { key, path: lanePath, state, meta, created: meta?.created, leased: live };
  } catch (error) {
    return { key, path: lanePath, state: 'unknown', problem: errorMessage(error) };
  }
}

/** Per root: whether /proc/locks was seen to list a lock taken there (see heldLocks). */
const listsEveryLock = new Map<string, boolean>();

/**
 * File systems whose flocks live in this kernel alone (no lock server, no other host), so
 * /proc/locks can list them all: ext2/3/4, XFS, Btrfs, tmpfs, F2FS, ZFS, overlayfs, bcachefs.
 * NFS, CIFS, Ceph, GlusterFS, FUSE and the like keep locks elsewhere, or share them with other hosts.
 */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, 0x58465342, 0x9123683e, 0x01021994, 0xf2f52010, 0x2fc12fc1, 0x794c7630, 0xca451a4e,
]);

/**
 * The held flocks, and whether "not listed" may be believed for locks under this root. That
 * takes three things, checked once per root and process: the initial pid namespace (see
 * heldFlocks), a file system whose locks are all local, and a canary: a lock this process
 * takes there (through a short-lived flock child, as every lease is taken) must show up in
 * /proc/locks under the identity runlane computes from a stat. That catches what a rule
 * cannot: a device number /proc/locks prints differently (a Btrfs subvolume, an overlay of
 * other file systems), or a kernel that hides locks of dead pids. Otherwise every lock not
 * listed is tried for real.
 */
export function heldLocks(layout: Layout): HeldLocks {
  const held = heldFlocks();
  if (!held.complete) return held;
  let verdict = listsEveryLock.get(layout.root);
  if (verdict === undefined) {
    verdict = canaryListed(layout);
    listsEveryLock.set(layout.root, verdict);
  }
  return { ids: held.ids, complete: verdict };
}

const CANARY = '.runlane-canary';

function canaryListed(layout: Layout): boolean {
  try {
    if (!LOCAL_FILE_SYSTEMS.has(Number(fs.statfsSync(layout.root).type))) return false;
    const locks = layout.dirIfAny('locks');
    if (!locks) return false;
    const lock = Lock.tryAcquire({ at: locks.at(CANARY), shown: path.join(locks.path, CANARY) });
    if (!lock) return false; // Another process is checking it right now: probe this time.
    try {
      const stat = fs.fstatSync(lock.descriptor, { bigint: true });
      return heldFlocks().ids.has(flockIdentity(stat));
    } finally {
      // Nothing is left behind: the file goes while still locked.
      lock.unlinkWhileHeld();
      lock.release();
    }
  } catch {
    return false;
  }
}

/**
 * Is the lease held? /proc/locks answers, when it lists every lock (see heldFlocks); a lock
 * not listed in an incomplete list is tried for real. A lock file that exists but cannot be
 * used throws (UnusableLockError): never "free".
 */
export function leaseHeld(file: LockFile, held: HeldLocks, stat: AnyStats | undefined = lstatExact(file.at)): boolean {
  if (!stat) return false;
  if (held.ids.has(flockIdentity(stat))) return true;
  if (held.complete) {
    checkLockFile(file, stat);
    return false;
  }
  const probe = Lock.tryAcquireExisting(file);
  if (!probe) return true;
  probe.release();
  return false;
}
