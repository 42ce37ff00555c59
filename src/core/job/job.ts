/**
 * src/core/job: a job's lane from open to close: main opens it (a fresh lane or a warm one,
 * its lease handed to a holder), post closes it (removed, kept, deferred or parked), and the
 * links into it (links.ts). It may import every concept below it: src/core/common, delete,
 * lease, lane, root and warm.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorCode } from '../common/errors.js';
import { Layout, isLaneName, type LaneMeta } from '../root/layout.js';
import { journal, type JournalAction } from '../root/journal.js';
import { Lock, dropUnder } from '../lease/lock.js';
import { isHolderOf, startHolder, stopHolder } from '../lease/holder.js';
import { removeIn, type Privileged, type RemoveFailure } from '../delete/remove.js';
import { type Dir } from '../delete/dir.js';
import { ensureRoot } from '../root/root.js';
import { moveToTrash, startBackgroundEmpty } from '../root/trash.js';
import { parkLane, trimSlot, type WarmOrigin } from '../warm/warm.js';

/** How long main waits for a lane's lock that a sweep may be holding briefly. */
const LOCK_WAIT_MS = 10_000;

export interface OpenLaneOptions {
  root: string;
  /** What errors about the root name: the action's input `root`, or the CLI's `--root`. */
  rootSetting?: string;
  key: string;
  meta: Omit<LaneMeta, 'version' | 'key' | 'created' | 'host' | 'holderPid'>;
  /** The lease holder's bundle; undefined: this process holds the lease itself (`runlane run`). */
  holderScript?: string;
  workerPid: number;
  /** The lease's length on the holder's monotonic clock; null for none. */
  leaseMs: number | null;
  /** Per-job directories of the runner whose removal ends the lease. */
  watch?: readonly string[];
  /** Directories to create inside the lane (absolute, inside it). */
  dirs: readonly string[];
  /**
   * Makes the lane `key` from a parked one (claim or copy), under the new lane's lease.
   * Returns where it came from, or undefined to start cold (then the lane is made empty).
   */
  populate?: (layout: Layout, key: string) => WarmOrigin | undefined;
}

export interface OpenedLane {
  path: string;
  lockPath: string;
  /** The lease holder's pid; this process's own when it holds the lease itself. */
  holderPid: number;
  /** The lease, when this process holds it itself (`holderScript` undefined): its death ends it. */
  lock?: Lock;
  warm?: WarmOrigin;
}

/** How post ends a lane's lease: stop its holder process, or close the lock this process holds. */
export type Lease = { holderPid: number } | { lock: Lock };

/**
 * Creates a lane and leases it. The lease comes first, so a sweep can never see the new lane
 * without its lease; creation is exclusive, so an existing lane is never reused.
 */
export async function openLane(options: OpenLaneOptions): Promise<OpenedLane> {
  ensureRoot(options.root, options.rootSetting);
  const layout = new Layout(options.root);
  try {
    layout.ensure();
    return await openIn(layout, options);
  } finally {
    layout.close();
  }
}

async function openIn(layout: Layout, options: OpenLaneOptions): Promise<OpenedLane> {
  const lockFile = layout.lock(options.key);
  const lock = Lock.acquire(lockFile, LOCK_WAIT_MS);
  if (!lock) {
    throw new Error(`the lane ${options.key} is leased by another job (its lock ${lockFile.shown} is held)`);
  }
  const lanes = layout.dir('lanes');
  const lanePath = layout.lane(options.key);
  let warm: WarmOrigin | undefined;
  try {
    if (lanes.exists(options.key)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    warm = options.populate?.(layout, options.key);
    if (!warm) fs.mkdirSync(lanes.at(options.key), { mode: 0o755 });
  } catch (error) {
    lock.release();
    if (errorCode(error) === 'EEXIST') {
      throw new Error(`the lane ${lanePath} exists already: lanes are never reused (is the key template too coarse?)`);
    }
    throw error;
  }
  let holderPid: number | undefined;
  try {
    makeDirsIn(lanes, options.key, lanePath, options.dirs);
    holderPid = options.holderScript
      ? await startHolder({
          script: options.holderScript,
          lock,
          workerPid: options.workerPid,
          leaseMs: options.leaseMs,
          watch: options.watch ?? [],
        })
      : process.pid;
    const created = Date.now();
    layout.writeMeta({
      version: 1,
      key: options.key,
      created: new Date(created).toISOString(),
      host: os.hostname(),
      holderPid,
      ...(options.leaseMs === null ? {} : { leaseUntil: new Date(created + options.leaseMs).toISOString() }),
      ...options.meta,
      ...(warm ? { warmFrom: `${warm.from} (${warm.how})` } : {}),
    });
    return { path: lanePath, lockPath: lockFile.shown, holderPid, warm, lock: options.holderScript ? undefined : lock };
  } catch (error) {
    // Nothing may outlive a failed open: not the lane, not a holder keeping its lease.
    if (holderPid !== undefined && options.holderScript) stopHolder(holderPid, lockFile.shown);
    lock.release();
    removeIn(lanes, options.key);
    throw error;
  }
}

/**
 * Creates the requested directories inside a new lane, one component at a time through
 * opened directories, so a symlink a parked lane brought along is never followed out.
 */
function makeDirsIn(lanes: Dir, key: string, lanePath: string, dirs: readonly string[]): void {
  for (const dir of dirs) {
    const relative = path.relative(lanePath, dir);
    if (relative === '') continue;
    if (relative.startsWith('..') || path.isAbsolute(relative)) throw new Error(`${dir} is not inside ${lanePath}`);
    let current = lanes.openChild(key);
    try {
      for (const part of relative.split('/')) {
        try {
          fs.mkdirSync(current.at(part), { mode: 0o755 });
        } catch (error) {
          if (errorCode(error) !== 'EEXIST') throw error;
        }
        const next = current.openChild(part);
        current.close();
        current = next;
      }
    } finally {
      current.close();
    }
  }
}

export type CloseAction = 'remove' | 'retain' | 'defer' | 'park';

export interface CloseResult {
  action: CloseAction;
  /** The lane's path is free (moved to trash, or deleted in place). */
  removed: boolean;
  /** The lane was not there any more: nothing was done to it. */
  gone: boolean;
  /** Where in the trash the lane went, for the background delete. */
  trashed?: string;
  /** Why the lane had to be deleted in place instead of renamed (a mount in it, permissions). */
  fallback?: string;
  failures: RemoveFailure[];
  /** False when the holder did not go in time (the lease then ends with the job or deadline). */
  released: boolean;
  /** Whether the job's lease holder was still running when post came. */
  holderAlive: boolean;
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
  lease: Lease,
  action: CloseAction,
  reason = '',
  privileged: Privileged = '',
  park?: { slot: string; keep: number },
): CloseResult {
  if (!isLaneName(key)) throw new Error(`refusing the lane key ${JSON.stringify(key)}: not a key runlane makes`);
  if (park && !isLaneName(park.slot)) throw new Error(`refusing the slot ${JSON.stringify(park.slot)}`);
  const layout = new Layout(root);
  try {
    return closeIn(layout, key, lease, action, reason, privileged, park);
  } finally {
    layout.close();
  }
}

function closeIn(
  layout: Layout,
  key: string,
  lease: Lease,
  action: CloseAction,
  reason: string,
  privileged: Privileged,
  park?: { slot: string; keep: number },
): CloseResult {
  const lockShown = layout.lock(key).shown;
  const holderAlive = 'lock' in lease || isHolderOf(lease.holderPid, lockShown);
  const result: CloseResult = { action, removed: false, gone: false, failures: [], released: false, holderAlive };
  try {
    const lanes = layout.dir('lanes');
    result.gone = !lanes.exists(key);
    result.removed = result.gone;
    if (result.gone) {
      // Nothing to move, park or keep: a step removed it, or a sweep reaped it.
    } else if (action === 'remove') {
      const moved = moveToTrash(layout, lanes, key, key);
      if ('trashed' in moved) {
        result.removed = true;
        result.trashed = moved.trashed;
      } else {
        result.fallback = moved.error;
        ({ removed: result.removed, failures: result.failures } = removeIn(lanes, key, privileged));
      }
    } else if (action === 'retain') {
      const meta = layout.readMeta(key);
      if (meta) layout.writeMeta({ ...meta, retained: reason || 'retained' });
    } else if (action === 'park' && park) {
      result.parked = { path: parkLane(layout, key, park.slot), trimmed: [] };
    }
  } finally {
    // The lease is released whatever failed above: the lane is then an orphan the sweep reaps.
    if ('lock' in lease) {
      lease.lock.release();
      result.released = true;
    } else result.released = stopHolder(lease.holderPid, lockShown);
  }
  if (result.parked && park) result.parked.trimmed = trimSlot(layout, park.slot, park.keep);
  if (!result.gone && !result.parked) {
    const done: JournalAction = result.trashed
      ? 'trashed'
      : action === 'remove'
        ? result.removed
          ? 'deleted'
          : 'delete-failed'
        : action === 'retain'
          ? 'kept'
          : 'deferred';
    journal(layout, { action: done, key, reason, detail: result.trashed ?? result.fallback });
  }
  if (result.removed && result.released) tidy(layout, key);
  return result;
}

/**
 * What closing a lane did, in words, for post's log and summary and for `runlane run` and
 * `close`: `took` and the background delete's `pid` where the caller has them.
 */
export function describeClose(
  result: CloseResult,
  reason: string,
  known: { took?: string; holderPid?: number; pid?: number } = {},
): string {
  const took = known.took ? ` in ${known.took}` : '';
  const background = known.pid ? ` (pid ${known.pid})` : '';
  if (result.gone) {
    return result.holderAlive
      ? 'already gone: a step removed it while its lease was held'
      : `already gone: its lease holder${known.holderPid ? ` (pid ${known.holderPid})` : ''} had ended before post, so the lane counted as an orphan; a sweep reaped it, or a step removed it`;
  }
  if (result.parked) {
    const trimmed = result.parked.trimmed.length
      ? `; ${result.parked.trimmed.length} older parked lanes made way (deleting in the background${background})`
      : '';
    return `parked${took} for the next run of its scope (${result.parked.path})${trimmed}`;
  }
  if (result.trashed) return `moved to the trash${took}; deleting it in the background${background}`;
  if (result.action === 'remove') {
    return result.removed
      ? `deleted in place${took}`
      : `partly deleted: ${result.failures.length} paths resisted; the sweep retries them`;
  }
  if (result.action === 'retain') return `kept (${reason}); the sweep's max-age / keep-free policy removes it later`;
  return 'left for the sweep (cleanup: defer)';
}

/**
 * The background work a close leaves, started detached: emptying the trash (the lane moved
 * there, or older parked lanes a park trimmed) and measuring a kept or parked lane for
 * `status`. Returns its pid, or undefined when there is nothing to do.
 */
export function startAfterClose(
  cliScript: string,
  root: string,
  key: string,
  result: CloseResult,
  privileged: Privileged,
): number | undefined {
  const inTrash = result.trashed !== undefined || (result.parked?.trimmed.length ?? 0) > 0;
  const measure = !result.gone && (result.parked !== undefined || result.action === 'retain') ? key : undefined;
  if (!inTrash && !measure) return undefined;
  return startBackgroundEmpty(cliScript, root, privileged, measure);
}

/** How long closing waits for the lease it just released to be free before it tidies. */
const TIDY_WAIT_MS = 2000;

/**
 * Drops the lock file and metadata of a lane that no longer exists, under its lock; waits a
 * little for it (the holder just stopped may still be closing its descriptors).
 */
export function tidy(layout: Layout, key: string): boolean {
  return dropUnder(layout.lock(key), () => !layout.laneExists(key), [layout.metaFile(key)], false, TIDY_WAIT_MS);
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
