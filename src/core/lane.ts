import fs from 'node:fs';
import os from 'node:os';
import { errorCode } from './errors.js';
import { Layout, readdirOrEmpty, type LaneMeta } from './layout.js';
import { Lock, heldFlocks, flockIdentity, startHolder, stopHolder } from './lease.js';
import { removeTree, type Privileged, type RemoveFailure } from './remove.js';
import { ensureRoot } from './root.js';
import { moveToTrash } from './trash.js';
import { parkLane, trimSlot, type WarmOrigin } from './warm.js';

/** How long main waits for a lane's lock that a sweep may be holding briefly. */
const LOCK_WAIT_MS = 10_000;

export interface OpenLaneOptions {
  root: string;
  key: string;
  meta: Omit<LaneMeta, 'version' | 'key' | 'created' | 'host' | 'holderPid'>;
  holderScript: string;
  workerPid: number;
  leaseMs: number;
  /** Directories to create inside the lane (absolute, inside it). */
  dirs: readonly string[];
  /**
   * Makes the lane directory from a parked one (claim or copy), under the new lane's lease.
   * Returns where it came from, or undefined to start cold (then the lane is made empty).
   */
  populate?: (lanePath: string) => WarmOrigin | undefined;
}

export interface OpenedLane {
  path: string;
  lockPath: string;
  holderPid: number;
  warm?: WarmOrigin;
}

/**
 * Creates a lane and leases it. The lease comes first, so a sweep can never see the new lane
 * without its lease; creation is exclusive, so an existing lane is never reused.
 */
export function openLane(options: OpenLaneOptions): OpenedLane {
  ensureRoot(options.root);
  const layout = new Layout(options.root);
  layout.ensure();
  const lockPath = layout.lock(options.key);
  const lock = Lock.acquire(lockPath, LOCK_WAIT_MS);
  if (!lock) {
    throw new Error(`the lane ${options.key} is leased by another job (its lock ${lockPath} is held)`);
  }
  const lanePath = layout.lane(options.key);
  let warm: WarmOrigin | undefined;
  try {
    if (fs.existsSync(lanePath)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    warm = options.populate?.(lanePath);
    if (!warm) fs.mkdirSync(lanePath, { mode: 0o755 });
  } catch (error) {
    lock.release();
    if (errorCode(error) === 'EEXIST') {
      throw new Error(`the lane ${lanePath} exists already: lanes are never reused (is the key template too coarse?)`);
    }
    throw error;
  }
  try {
    for (const dir of options.dirs) fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const holderPid = startHolder({
      script: options.holderScript,
      lock,
      workerPid: options.workerPid,
      deadline: Date.now() + options.leaseMs,
    });
    layout.writeMeta({
      version: 1,
      key: options.key,
      created: new Date().toISOString(),
      host: os.hostname(),
      holderPid,
      ...options.meta,
      ...(warm ? { warmFrom: `${warm.from} (${warm.how})` } : {}),
    });
    return { path: lanePath, lockPath, holderPid, warm };
  } catch (error) {
    lock.release();
    removeTree(lanePath, options.root);
    throw error;
  }
}

export type CloseAction = 'remove' | 'retain' | 'defer' | 'park';

export interface CloseResult {
  action: CloseAction;
  /** The lane's path is free (moved to trash, or deleted in place). */
  removed: boolean;
  /** The lane was not there any more (a step removed it): nothing was done to it. */
  gone: boolean;
  /** Where in the trash the lane went, for the background delete. */
  trashed?: string;
  /** Why the lane had to be deleted in place instead of renamed (another file system, permissions). */
  fallback?: string;
  failures: RemoveFailure[];
  /** False when the holder did not go in time (the lease then ends with the job or deadline). */
  released: boolean;
  /** Where the lane was parked, and the older parked lanes of its slot that made way. */
  parked?: { path: string; trimmed: string[] };
}

/**
 * Ends a lane according to `action`, acting under the job's own lease (the holder still
 * holds it) so no sweep interleaves: `remove` renames it into the trash (O(1); deleted
 * later in the background or by the sweep) or, if a rename is impossible, deletes it in
 * place; `retain` marks it kept for a human (the sweep's age and space policy still
 * applies); `defer` leaves it to the sweep. Then it releases the lease and, if the lane is
 * gone, tidies its lock and metadata.
 */
export function closeLane(
  root: string,
  key: string,
  holderPid: number,
  action: CloseAction,
  reason = '',
  privileged: Privileged = '',
  park?: { slot: string; keep: number },
): CloseResult {
  const layout = new Layout(root);
  const lockPath = layout.lock(key);
  const gone = !fs.existsSync(layout.lane(key));
  const result: CloseResult = { action, removed: gone, gone, failures: [], released: false };
  if (gone) {
    // A step removed the lane itself: there is nothing to move, park or keep.
  } else if (action === 'remove') {
    const moved = moveToTrash(layout, layout.lane(key), key);
    if ('trashed' in moved) {
      result.removed = true;
      result.trashed = moved.trashed;
    } else {
      result.fallback = moved.error;
      ({ removed: result.removed, failures: result.failures } = removeTree(layout.lane(key), root, privileged));
    }
  } else if (action === 'retain') {
    const meta = layout.readMeta(key);
    if (meta) layout.writeMeta({ ...meta, retained: reason || 'retained' });
  } else if (action === 'park' && park) {
    result.parked = { path: parkLane(layout, key, park.slot), trimmed: [] };
  }
  result.released = stopHolder(holderPid, lockPath);
  if (result.parked && park) result.parked.trimmed = trimSlot(layout, park.slot, park.keep);
  if (result.removed && result.released) tidy(layout, key);
  return result;
}

/** Drops the lock file and metadata of a lane that no longer exists, under its lock. */
export function tidy(layout: Layout, key: string): boolean {
  return dropUnder(layout.lock(key), () => !layout.laneExists(key), [layout.metaFile(key)], false);
}

/**
 * Under the lock at `lockPath`, if `stillStale()` holds there, removes `files` and then the
 * lock file itself, still holding it. `create: false` never makes a lock file that is missing.
 */
export function dropUnder(
  lockPath: string,
  stillStale: () => boolean,
  files: readonly string[],
  create = true,
): boolean {
  const lock = create ? Lock.tryAcquire(lockPath) : Lock.tryAcquireExisting(lockPath);
  if (!lock) return false;
  try {
    if (!stillStale()) return false;
    for (const file of files) fs.rmSync(file, { force: true });
    lock.unlinkWhileHeld();
    return true;
  } finally {
    lock.release();
  }
}

export type LaneState = 'live' | 'orphan' | 'kept';

export interface LaneEntry {
  key: string;
  path: string;
  state: LaneState;
  meta?: LaneMeta;
  created?: string;
}

/** Every lane under the root with its state; liveness is the lease's alone. */
export function listLanes(root: string): LaneEntry[] {
  const layout = new Layout(root);
  const keys = readdirOrEmpty(layout.lanes);
  const held = heldFlocks();
  return keys.sort().map((key) => {
    const meta = layout.readMeta(key);
    const live = leaseHeld(layout.lock(key), held);
    const state: LaneState = live ? 'live' : meta?.retained ? 'kept' : 'orphan';
    return { key, path: layout.lane(key), state, meta, created: meta?.created };
  });
}

/** Is the lease held? /proc/locks answers fast; a lock not listed there is tried for real. */
export function leaseHeld(lockPath: string, held: Set<string>): boolean {
  let stat: fs.BigIntStats;
  try {
    stat = fs.lstatSync(lockPath, { bigint: true });
  } catch {
    return false;
  }
  if (held.has(flockIdentity(stat))) return true;
  const probe = Lock.tryAcquireExisting(lockPath);
  if (!probe) return true;
  probe.release();
  return false;
}

/**
 * What post does with a lane, from the `cleanup` setting, the job's status and `warm`: a
 * successful job's lane is parked for the next run when warm is on; a failed or cancelled
 * job's never is.
 */
export function closeActionFor(
  cleanup: string,
  jobStatus: string,
  warm = false,
): { action: CloseAction; reason: string } {
  if (warm && jobStatus === 'success') return { action: 'park', reason: 'warm: job succeeded' };
  switch (cleanup) {
    case 'always':
      return { action: 'remove', reason: 'cleanup: always' };
    case 'on-success':
      return jobStatus === 'success'
        ? { action: 'remove', reason: 'cleanup: on-success, job succeeded' }
        : { action: 'retain', reason: `cleanup: on-success, job status '${jobStatus || 'unknown'}'` };
    case 'never':
      return { action: 'retain', reason: 'cleanup: never' };
    default:
      return { action: 'defer', reason: 'cleanup: defer' };
  }
}
