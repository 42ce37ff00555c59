/**
 * What the sweep decides, as pure functions of what it found: which lanes it takes, which it
 * leaves and why, in what order space pressure evicts, and what the report counts. The sweep
 * (sweep.ts) only gathers the facts, asks these, and acts under each lane's lock.
 */
import type { RemoveFailure } from '../delete/remove.js';
import type { LaneState } from '../root/liveness.js';
import type { TrashResult } from '../root/trash.js';

/** The reason of a kept or parked lane the sweep would have removed but found locked. */
export const BUSY = 'busy: ';
/** The reason of a lane the sweep had no time left for. */
export const NOT_REACHED = 'not reached: time bound';

/** What ends a lane the sweep takes: reaped (an orphan) or evicted (kept or parked, by age or space). */
export type Taken = 'reaped' | 'evicted';

/** dry-run: change nothing; background: move to trash only; sync: move, then empty the trash. */
export type Mode = 'dry-run' | 'background' | 'sync';

/** What the sweep weighs a lane by: its state and the dates and reason it was kept for. */
export interface ScannedLane {
  key: string;
  state: LaneState;
  created?: string;
  retained?: string;
  problem?: string;
}

/** The facts a decision is taken against: now, the age bound, and whether time has run out. */
export interface Bounds {
  now: number;
  maxAgeMs: number;
  overTime: boolean;
}

export type LaneDecision =
  | { do: 'leave'; reason: string; problem?: string; timedOut?: true }
  | { do: 'take'; outcome: Taken; reason: string }
  /** Kept within max-age: it stays unless space pressure evicts it. */
  | { do: 'weigh' };

/**
 * A scanned lane: a live lane is never taken, an unknown one is reported and left; with time
 * left, an orphan is reaped and a kept lane past max-age evicted.
 */
export function decideLane(lane: ScannedLane, bounds: Bounds): LaneDecision {
  if (lane.state === 'live') return { do: 'leave', reason: 'live: its lease is held' };
  if (lane.state === 'unknown')
    return {
      do: 'leave',
      reason: `unknown: ${lane.problem}`,
      problem: `the lane ${lane.key} was left alone: ${lane.problem}`,
    };
  if (bounds.overTime) return { do: 'leave', reason: NOT_REACHED, timedOut: true };
  if (lane.state === 'orphan') return { do: 'take', outcome: 'reaped', reason: 'orphan: no job holds its lease' };
  if (age(lane.created, bounds.now) > bounds.maxAgeMs)
    return { do: 'take', outcome: 'evicted', reason: `kept longer than max-age (${lane.retained})` };
  return { do: 'weigh' };
}

export type ParkedDecision = { do: 'leave'; reason: string } | { do: 'evict'; reason: string } | { do: 'weigh' };

/** A parked lane: one being claimed (its lock held) stays; past max-age, with time left, it goes. */
export function decideParked(parked: string | undefined, busy: boolean, bounds: Bounds): ParkedDecision {
  if (busy) return { do: 'leave', reason: `${BUSY}being claimed, or its lock is unusable` };
  if (age(parked, bounds.now) > bounds.maxAgeMs && !bounds.overTime)
    return { do: 'evict', reason: 'parked longer than max-age' };
  return { do: 'weigh' };
}

/**
 * The order space pressure evicts in: parked lanes before kept ones (a parked lane is only a
 * head start; a kept one was kept on purpose), each oldest first; a lane without a date first.
 */
export function evictionOrder<P extends { key: string; parked?: string }, K extends { key: string; created?: string }>(
  parked: readonly P[],
  kept: readonly K[],
): ({ parked: P } | { kept: K })[] {
  const oldestFirst = (a: string | undefined, b: string | undefined) => (a ?? '').localeCompare(b ?? '');
  return [
    ...[...parked]
      .sort((a, b) => oldestFirst(a.parked, b.parked) || a.key.localeCompare(b.key))
      .map((lane) => ({ parked: lane })),
    ...[...kept].sort((a, b) => oldestFirst(a.created, b.created)).map((lane) => ({ kept: lane })),
  ];
}

/** Milliseconds since `since`; a missing or unreadable date is infinitely old. */
export function age(since: string | undefined, now: number): number {
  const created = Date.parse(since ?? '');
  return Number.isNaN(created) ? Infinity : now - created;
}

/** Bytes of what was (or would be) removed. */
export function removedBytes(items: readonly { outcome: string; bytes?: number }[]): number {
  return items
    .filter((item) => ['reaped', 'evicted', 'deleted', 'would delete'].includes(item.outcome))
    .reduce((total, item) => total + (item.bytes ?? 0), 0);
}

interface Outcome {
  outcome: string;
  bytes?: number;
  trashed?: string;
}

/**
 * What the sweep freed: a dry run, what it would remove; otherwise the trash entries it
 * deleted plus what it deleted in place (a lane moved to the trash is counted there, once).
 */
export function freedBytes(
  mode: Mode,
  entries: readonly Outcome[],
  trash: readonly { outcome: string; bytes?: number }[],
): number {
  return mode === 'dry-run'
    ? removedBytes(entries) + removedBytes(trash)
    : removedBytes(trash) + removedBytes(entries.filter((entry) => !entry.trashed));
}

/** Keys of the lanes still under lanes/ after the sweep: the ones tidying need not look at. */
export function remainingKeys(entries: readonly { key: string; outcome: string; state: string }[]): Set<string> {
  return new Set(
    entries
      .filter((entry) => entry.outcome !== 'reaped' && entry.outcome !== 'evicted' && entry.state !== 'parked')
      .map((entry) => entry.key),
  );
}

export interface SweepEntry {
  key: string;
  path: string;
  state: 'live' | 'orphan' | 'kept' | 'parked' | 'unknown';
  /** reaped / evicted (or would be, on a dry run), left in place, or failed. */
  outcome: 'reaped' | 'evicted' | 'left' | 'failed';
  reason: string;
  /**
   * Bytes freed (the file system's change); for a lane left in place, its size as measured
   * when it was kept or parked, if it was.
   */
  bytes?: number;
  created?: string;
  failures?: RemoveFailure[];
  /** Where the lane went in the trash. */
  trashed?: string;
}

export interface SweepReport {
  root: string;
  dryRun: boolean;
  /** Lanes looked at under lanes/ (live, orphan, kept, unknown). */
  scanned: number;
  /** Parked lanes looked at. */
  scannedParked: number;
  entries: SweepEntry[];
  /** Trash entries deleted (or found busy, or failed) by this sweep. */
  trash: TrashResult[];
  freedBytes: number;
  tidied: number;
  /** What the sweep found wrong and skipped (a refused layout directory, an unusable lock file). */
  problems: string[];
  /** The keep-free target against the free space the sweep left, when a target was set. */
  keepFree?: { wantedBytes: number; freeBytes: number; reached: boolean };
  timedOut: boolean;
  seconds: number;
}
