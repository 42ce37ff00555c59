import { freeBytes } from '../common/space.js';
import type { Meters } from '../common/progress.js';
import { removeIn, unlinkIfAny, type Privileged } from '../delete/remove.js';
import { Lock } from '../lease/lock.js';
import { journal } from '../root/journal.js';
import type { Layout } from '../root/layout.js';
import { moveToTrash } from '../root/trash.js';
import { BUSY, SweepEntry, type Mode, type ScannedLane, type Taken } from './sweep-decisions.js';

import { LaneEntry } from '../root/liveness.js';
import { recordedSize } from '../root/sizes.js';

/**
 * What the sweep keeps of a scanned lane: what it decides by and reports, no more (its path
 * is the layout's, computed when reported). 100,000 lanes' full metadata is never held.
 */
export interface Scanned extends ScannedLane {
  key: string;
  state: LaneEntry['state'];
  created?: string;
  retained?: string;
  /** Its recorded size, if it was measured. */
  bytes?: number;
  problem?: string;
}

/** `retained` says why a lane was kept: a few distinct texts, shared rather than held per lane. */
export function scanned(lane: LaneEntry, texts: Map<string, string>): Scanned {
  const retained = lane.meta?.retained;
  const shared =
    retained === undefined ? undefined : (texts.get(retained) ?? texts.set(retained, retained).get(retained));
  return {
    key: lane.key,
    state: lane.state,
    created: lane.created,
    retained: shared,
    bytes: recordedSize(lane.meta)?.bytes,
    problem: lane.problem,
  };
}
/** A lane's lock taken beforehand: the lock, null when it was held, an error; undefined: take it now. */
export type Taking = Lock | Error | null | undefined;
/** What reaping needs of the sweep it serves. */
export interface ReapContext {
  layout: Layout;
  mode: Mode;
  privileged: Privileged;
  meters: Meters;
  /** What is left of the sweep's budget for waiting on busy kept lanes. */
  keptWait: { ms: number; deadline?: number };
}

type Base = Omit<SweepEntry, 'outcome'>;

/**
 * Takes the lane's lease and re-checks under it; then moves the lane to the trash (or, where
 * a rename is impossible, deletes it in place) and drops its metadata and lock, still holding it.
 */
export function reap(run: ReapContext, lane: Scanned, outcome: Taken, reason: string, taken?: Taking): SweepEntry {
  const { layout } = run;
  const base: Base = { key: lane.key, path: layout.lane(lane.key), state: lane.state, reason, created: lane.created };
  // A dry run changes nothing, not even a lock file: the state listLanes found is its answer.
  if (run.mode === 'dry-run')
    return { ...base, outcome, bytes: lane.bytes ?? layout.sizeOf('lanes', [lane.key]).bytes };
  if (taken instanceof Error) throw taken;
  const lock = lockToReap(run, lane, taken);
  if (!lock) {
    const busy =
      lane.state === 'kept' ? `${BUSY}another process holds its lock` : 'live: its lease was taken meanwhile';
    return { ...base, outcome: 'left', reason: busy };
  }
  try {
    return reapLocked(run, lane, outcome, base, lock);
  } finally {
    lock.release();
  }
}

/**
 * The lane's lock: the one taken beforehand, else tried now. A kept lane is never leased
 * again: its lock is runlane's own short work (its size being recorded), worth a wait. An
 * orphan's was taken by a job or another sweep: no wait.
 */
function lockToReap(run: ReapContext, lane: Scanned, taken: Lock | null | undefined): Lock | undefined {
  let lock = taken === undefined ? Lock.tryAcquire(run.layout.lock(lane.key)) : (taken ?? undefined);
  const started = Date.now();
  const waitMs = Math.min(KEPT_WAIT_MS, run.keptWait.ms, (run.keptWait.deadline ?? Infinity) - started);
  if (!lock && lane.state === 'kept' && waitMs > 0) {
    lock = Lock.acquireExisting(run.layout.lock(lane.key), waitMs);
    run.keptWait.ms -= Date.now() - started;
  }
  return lock;
}

/** Under the lane's lock: into the trash, or deleted in place where the rename fails. */
function reapLocked(run: ReapContext, lane: Scanned, outcome: Taken, base: Base, lock: Lock): SweepEntry {
  const { layout } = run;
  const lanes = layout.dir('lanes');
  if (!lanes.exists(lane.key)) {
    // Taking the lock made its file again after the other sweep removed it: it goes too.
    lock.unlinkWhileHeld();
    return { ...base, outcome: 'left', reason: 'gone: another sweep reaped it' };
  }
  const moved = moveToTrash(layout, lanes, lane.key, lane.key);
  let bytes: number | undefined;
  if ('error' in moved) {
    const before = freeBytes(layout.root);
    const meter = run.meters(`deleting ${lane.key} in place`, { bytes: () => freeBytes(layout.root) - before });
    const removal = removeIn(lanes, lane.key, run.privileged, meter.tick);
    meter.done();
    bytes = Math.max(0, freeBytes(layout.root) - before);
    const fallback = `${base.reason}; the rename to trash failed (${moved.error}), so it was deleted in place`;
    if (!removal.removed) return { ...base, outcome: 'failed', reason: fallback, bytes, failures: removal.failures };
    base.reason = fallback;
  }
  unlinkIfAny(layout.metaFile(lane.key));
  lock.unlinkWhileHeld();
  const trashed = 'trashed' in moved ? moved.trashed : undefined;
  journal(layout, {
    action: outcome,
    key: lane.key,
    reason: base.reason,
    bytes,
    detail: trashed ?? 'deleted in place',
  });
  return { ...base, outcome, bytes, trashed };
}

/**
 * How long a sweep waits for the lock of a kept lane it is about to evict (a size being
 * recorded holds it for a rename), and in all.
 */
const KEPT_WAIT_MS = 1000;
export const KEPT_WAIT_BUDGET_MS = 3000;
