import { errorMessage } from '../common/errors.js';
import { AREAS, Layout } from '../root/layout.js';
import { silentMeters, type Meters } from '../common/progress.js';
import type { Parallel } from '../delete/parallel.js';
import { recordedSize } from '../root/sizes.js';
import { journal } from '../root/journal.js';
import { LOCK_BATCH, Lock } from '../lease/lock.js';
import { heldFlocks } from '../lease/held.js';
import { dropUnder } from '../lease/lock.js';
import { forEachLane, heldLocks, leaseHeld, type LaneEntry } from '../root/liveness.js';
import { removeIn, unlinkIfAny, type Privileged, type RemoveFailure } from '../delete/remove.js';
import { plural, requireMarkedRoot } from '../root/root.js';
import { formatSpace, freeBytes, requiredFree } from '../common/space.js';
import { emptyTrash, moveToTrash, type TrashResult } from '../root/trash.js';
import { evictParked, listParked, type ParkedLane } from '../warm/warm.js';
import type { SpaceTarget } from '../common/units.js';

export interface SweepOptions {
  root: string;
  dryRun: boolean;
  /** Kept lanes older than this are removed; orphans are reaped whatever their age. */
  maxAgeMs: number;
  /** Free space to keep on the root's file system: kept lanes go, oldest first, until it holds. */
  keepFree?: SpaceTarget;
  /** Epoch ms after which no new lane is started (pre's time bound). */
  deadline?: number;
  privileged?: Privileged;
  /** Only move lanes into the trash; the caller has the trash emptied in the background. */
  background?: boolean;
  /** Progress and a summary line for each phase (scan, trash); silent when absent. */
  meters?: Meters;
  /** Threads for each trash entry's delete; one when absent. */
  parallel?: Parallel;
  now?: number;
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

type Taken = 'reaped' | 'evicted';
/**
 * What the sweep keeps of a scanned lane: what it decides by and reports, no more (its path
 * is the layout's, computed when reported). 100,000 lanes' full metadata is never held.
 */
interface Scanned {
  key: string;
  state: LaneEntry['state'];
  created?: string;
  retained?: string;
  /** Its recorded size, if it was measured. */
  bytes?: number;
  problem?: string;
}

/** `retained` says why a lane was kept: a few distinct texts, shared rather than held per lane. */
function scanned(lane: LaneEntry, texts: Map<string, string>): Scanned {
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
type Taking = Lock | Error | null | undefined;
/** dry-run: change nothing; background: move to trash only; sync: move, then empty the trash. */
type Mode = 'dry-run' | 'background' | 'sync';

/**
 * Reaps what dead jobs left: every lane whose lease nobody holds (taken for real, and
 * re-checked under the lock), kept lanes past `maxAgeMs`, then kept lanes oldest first while
 * the file system has less free space than `keepFree`. Each goes to the trash by rename, under
 * its lease; the trash is then emptied here, or in the background. A live lane is never
 * touched. Two sweeps racing arbitrate on each lane's lock: each lane is reaped once.
 */
export function sweep(options: SweepOptions): SweepReport {
  requireMarkedRoot(options.root);
  const layout = new Layout(options.root);
  try {
    return sweepIn(layout, options);
  } finally {
    layout.close();
  }
}

/**
 * Opens and verifies each of the root's directories; a lost one (a reboot that wiped it, a
 * human) is recreated. One that is not what runlane made (a symlink, another mount, another
 * owner) is a problem to report: the sweep goes on without it, never through it.
 */
function checkLayout(layout: Layout, mode: Mode, problems: string[]): void {
  if (mode !== 'dry-run') {
    try {
      layout.ensure();
      return;
    } catch {
      // Reported area by area below.
    }
  }
  for (const area of AREAS) {
    try {
      layout.dirIfAny(area);
    } catch (error) {
      problems.push(errorMessage(error));
    }
  }
}

function sweepIn(layout: Layout, options: SweepOptions): SweepReport {
  const started = Date.now();
  const now = options.now ?? started;
  const mode: Mode = options.dryRun ? 'dry-run' : options.background ? 'background' : 'sync';
  const problems: string[] = [];
  checkLayout(layout, mode, problems);
  const attempt = <T>(what: string, body: () => T, fallback: T): T => {
    try {
      return body();
    } catch (error) {
      problems.push(`${what}: ${errorMessage(error)}`);
      return fallback;
    }
  };
  const meters = options.meters ?? silentMeters;
  const scan = meters('scan', { item: ['lane', 'lanes'] });
  const entries: SweepEntry[] = [];
  const trash: TrashResult[] = [];
  let timedOut = false;
  const overTime = () => options.deadline !== undefined && Date.now() >= options.deadline;
  // What this sweep may spend in all waiting for busy kept lanes, within its own time bound:
  // locks a job holds on purpose (any job can open a file in locks/) must not stall it lane
  // after lane. A background sweep (pre) does not wait: the next sweep gets the lane.
  const keptWait = { ms: mode === 'background' ? 0 : KEPT_WAIT_BUDGET_MS, deadline: options.deadline };
  const take = (lane: Scanned, outcome: Taken, reason: string, lock?: Taking) => {
    const base = { key: lane.key, path: layout.lane(lane.key), state: lane.state, reason, created: lane.created };
    const entry = attempt(
      `reaping ${lane.key}`,
      () => reap(layout, lane, outcome, reason, mode, options.privileged ?? '', meters, keptWait, lock),
      { ...base, outcome: 'failed' as const, reason: `${reason}; it could not be taken (see the problems)` },
    );
    entries.push(entry);
    return entry;
  };
  const evict = (lane: ParkedLane, reason: string): SweepEntry => {
    const base = { key: lane.key, path: lane.path, state: 'parked' as const, reason, created: lane.parked };
    if (mode === 'dry-run')
      return {
        ...base,
        outcome: 'evicted',
        bytes: (recordedSize(lane.meta) ?? layout.sizeOf('parked', [lane.slot, lane.key])).bytes,
      };
    const moved = attempt(`evicting ${lane.key}`, () => evictParked(layout, lane, reason), undefined);
    return moved
      ? { ...base, outcome: 'evicted', trashed: moved }
      : { ...base, outcome: 'left', reason: 'parked: claimed meanwhile, or could not be taken' };
  };
  // What stays is reported with the size measured when it was kept or parked: the scan never
  // walks a tree it leaves alone, so it stays O(lanes) however many files they hold.
  const leftEntry = (
    lane: { key: string; path: string; state: 'kept' | 'parked'; bytes?: number },
    reason: string,
    created?: string,
  ): SweepEntry => ({
    key: lane.key,
    path: lane.path,
    state: lane.state,
    outcome: 'left' as const,
    reason,
    created,
    bytes: lane.bytes,
  });
  const empty = () => {
    if (mode === 'background') return;
    const emptied = attempt(
      'emptying the trash',
      () =>
        emptyTrash(layout, {
          dryRun: mode === 'dry-run',
          privileged: options.privileged,
          deadline: options.deadline,
          meters,
          parallel: options.parallel,
        }),
      [] as TrashResult[],
    );
    trash.push(...emptied);
  };

  // Each lane is decided as it is scanned: only the lanes to take or to weigh against
  // keep-free are kept, and only what decides them.
  const kept: Scanned[] = [];
  const toTake: { lane: Scanned; outcome: Taken; reason: string }[] = [];
  const texts = new Map<string, string>();
  let scannedCount = 0;
  const classify = (lane: Scanned) => {
    const base = { key: lane.key, path: layout.lane(lane.key), state: lane.state, created: lane.created };
    if (lane.state === 'live') {
      entries.push({ ...base, outcome: 'left', reason: 'live: its lease is held' });
    } else if (lane.state === 'unknown') {
      problems.push(`the lane ${lane.key} was left alone: ${lane.problem}`);
      entries.push({ ...base, outcome: 'left', reason: `unknown: ${lane.problem}` });
    } else if (overTime()) {
      timedOut = true;
      entries.push({ ...base, outcome: 'left', reason: 'not reached: time bound' });
    } else if (lane.state === 'orphan') {
      toTake.push({ lane, outcome: 'reaped', reason: 'orphan: no job holds its lease' });
    } else if (age(lane.created, now) > options.maxAgeMs) {
      toTake.push({ lane, outcome: 'evicted', reason: `kept longer than max-age (${lane.retained})` });
    } else {
      kept.push(lane);
    }
  };
  attempt(
    'listing lanes',
    () =>
      forEachLane(layout, (lane) => {
        scan.item();
        scannedCount++;
        classify(scanned(lane, texts));
      }),
    undefined,
  );
  // The real locks of the lanes to take, by one process a batch (a dry run takes none); a
  // batch at a time, so a reboot's thousands of orphans never hold thousands of descriptors.
  for (let start = 0; start < toTake.length; start += LOCK_BATCH) {
    const batch = toTake.slice(start, start + LOCK_BATCH);
    const locks: Taking[] =
      mode === 'dry-run'
        ? []
        : attempt('locking lanes', () => Lock.tryAcquireMany(batch.map(({ lane }) => layout.lock(lane.key))), []);
    try {
      batch.forEach(({ lane, outcome, reason }, index) => {
        const lock = index < locks.length ? (locks[index] ?? null) : undefined;
        if (overTime()) {
          timedOut = true;
          const base = { key: lane.key, path: layout.lane(lane.key), state: lane.state, created: lane.created };
          entries.push({ ...base, outcome: 'left', reason: 'not reached: time bound' });
        } else take(lane, outcome, reason, lock);
      });
    } finally {
      for (const lock of locks) if (lock instanceof Lock) lock.release();
    }
  }

  // Parked lanes (warm starts): evicted past max-age, and first under space pressure.
  const parked: ParkedLane[] = [];
  const held = heldLocks(layout);
  const parkedLanes = attempt('listing parked lanes', () => listParked(layout), [] as ParkedLane[]);
  for (const lane of parkedLanes) {
    scan.item();
    const base = { key: lane.key, path: lane.path, state: 'parked' as const, created: lane.parked };
    const busy = attempt(`probing ${lane.key}`, () => leaseHeld(layout.lock(lane.key), held), true);
    if (busy) entries.push({ ...base, outcome: 'left', reason: `${BUSY}being claimed, or its lock is unusable` });
    else if (age(lane.parked, now) > options.maxAgeMs && !overTime())
      entries.push(evict(lane, 'parked longer than max-age'));
    else parked.push(lane);
  }
  scan.done();
  empty();

  // Space pressure: parked lanes go first, then kept ones, oldest first, until the target
  // holds. A background sweep (pre) frees nothing before it returns: it leaves this to full sweeps.
  const pressure = mode === 'background' ? undefined : options.keepFree;
  let free = freeBytes(options.root) + (mode === 'dry-run' ? sumBytes(entries) + sumBytes(trash) : 0);
  kept.sort((a, b) => (a.created ?? '').localeCompare(b.created ?? ''));
  parked.reverse();
  const candidates = [...parked.map((lane) => ({ parked: lane })), ...kept.map((lane) => ({ kept: lane }))];
  for (const candidate of candidates) {
    if (pressure && free < requiredFree(options.root, pressure) && !overTime()) {
      const why = `keep-free: ${formatSpace(pressure)} wanted on the root's file system`;
      const entry = 'parked' in candidate ? evict(candidate.parked, why) : take(candidate.kept, 'evicted', why);
      if ('parked' in candidate) entries.push(entry);
      if (mode === 'dry-run') free += entry.bytes ?? 0;
      else {
        empty();
        free = freeBytes(options.root);
      }
    } else if ('parked' in candidate) {
      const lane = candidate.parked;
      const bytes = recordedSize(lane.meta)?.bytes;
      entries.push(leftEntry({ ...lane, state: 'parked', bytes }, 'parked for the next run of its scope', lane.parked));
    } else {
      const lane = candidate.kept;
      const path = layout.lane(lane.key);
      entries.push(
        leftEntry({ key: lane.key, path, state: 'kept', bytes: lane.bytes }, lane.retained ?? 'kept', lane.created),
      );
    }
  }
  const wanted = pressure ? requiredFree(options.root, pressure) : undefined;
  attribute(entries, trash);
  // Lanes still there after this sweep: the keys tidying need not look at.
  const remaining = new Set(
    entries
      .filter((entry) => entry.outcome !== 'reaped' && entry.outcome !== 'evicted' && entry.state !== 'parked')
      .map((entry) => entry.key),
  );
  const tidied = mode === 'dry-run' ? 0 : attempt('tidying', () => tidyStale(layout, remaining), 0);
  if (mode !== 'dry-run') {
    journal(layout, {
      action: 'swept',
      key: '',
      seconds: (Date.now() - started) / 1000,
      reason: `${plural(scannedCount, 'lane')} and ${plural(parkedLanes.length, 'parked lane')} scanned; ${plural(problems.length, 'problem')}`,
    });
  }
  const freed =
    mode === 'dry-run'
      ? sumBytes(entries) + sumBytes(trash)
      : sumBytes(trash) + sumBytes(entries.filter((e) => !e.trashed));
  return {
    root: options.root,
    dryRun: options.dryRun,
    scanned: scannedCount,
    scannedParked: parkedLanes.length,
    entries,
    trash,
    freedBytes: freed,
    tidied,
    problems: [...new Set(problems)],
    keepFree: wanted === undefined ? undefined : { wantedBytes: wanted, freeBytes: free, reached: free >= wanted },
    timedOut,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Bytes of what was (or would be) removed. */
function sumBytes(items: readonly { outcome: string; bytes?: number; trashed?: string }[]): number {
  return items
    .filter((item) => ['reaped', 'evicted', 'deleted', 'would delete'].includes(item.outcome))
    .reduce((total, item) => total + (item.bytes ?? 0), 0);
}

function age(since: string | undefined, now: number): number {
  const created = Date.parse(since ?? '');
  return Number.isNaN(created) ? Infinity : now - created;
}

/** Gives each reaped lane the bytes and failures of its trash entry's deletion. */
function attribute(entries: SweepEntry[], trash: TrashResult[]): void {
  const byPath = new Map(trash.map((result) => [result.path, result]));
  for (const entry of entries) {
    const result = entry.trashed ? byPath.get(entry.trashed) : undefined;
    if (!result) continue;
    entry.bytes = result.bytes;
    if (result.outcome === 'failed') {
      entry.outcome = 'failed';
      entry.failures = result.failures;
    }
  }
}

/**
 * Takes the lane's lease and re-checks under it; then moves the lane to the trash (or, where
 * a rename is impossible, deletes it in place) and drops its metadata and lock, still holding it.
 */
function reap(
  layout: Layout,
  lane: Scanned,
  outcome: Taken,
  reason: string,
  mode: Mode,
  privileged: Privileged,
  meters: Meters,
  keptWait: { ms: number; deadline?: number },
  taken?: Taking,
): SweepEntry {
  const base = { key: lane.key, path: layout.lane(lane.key), state: lane.state, reason, created: lane.created };
  // A dry run changes nothing, not even a lock file: the state listLanes found is its answer.
  if (mode === 'dry-run') return { ...base, outcome, bytes: lane.bytes ?? layout.sizeOf('lanes', [lane.key]).bytes };
  if (taken instanceof Error) throw taken;
  let lock = taken === undefined ? Lock.tryAcquire(layout.lock(lane.key)) : (taken ?? undefined);
  // A kept lane is never leased again: its lock is runlane's own short work (its size being
  // recorded), worth a wait. An orphan's was taken by a job or another sweep: no wait.
  const started = Date.now();
  const waitMs = Math.min(KEPT_WAIT_MS, keptWait.ms, (keptWait.deadline ?? Infinity) - started);
  if (!lock && lane.state === 'kept' && waitMs > 0) {
    lock = Lock.acquireExisting(layout.lock(lane.key), waitMs);
    keptWait.ms -= Date.now() - started;
  }
  if (!lock) {
    const busy =
      lane.state === 'kept' ? `${BUSY}another process holds its lock` : 'live: its lease was taken meanwhile';
    return { ...base, outcome: 'left', reason: busy };
  }
  try {
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
      const meter = meters(`deleting ${lane.key} in place`, { bytes: () => freeBytes(layout.root) - before });
      const removal = removeIn(lanes, lane.key, privileged, meter.tick);
      meter.done();
      bytes = Math.max(0, freeBytes(layout.root) - before);
      const fallback = `${reason}; the rename to trash failed (${moved.error}), so it was deleted in place`;
      if (!removal.removed) return { ...base, outcome: 'failed', reason: fallback, bytes, failures: removal.failures };
      base.reason = fallback;
    }
    unlinkIfAny(layout.metaFile(lane.key));
    lock.unlinkWhileHeld();
    journal(layout, {
      action: outcome,
      key: lane.key,
      reason: base.reason,
      bytes,
      detail: 'trashed' in moved ? moved.trashed : 'deleted in place',
    });
    return { ...base, outcome, bytes, trashed: 'trashed' in moved ? moved.trashed : undefined };
  } finally {
    lock.release();
  }
}

/** The reason of a kept or parked lane the sweep would have removed but found locked. */
export const BUSY = 'busy: ';

/**
 * How long a sweep waits for the lock of a kept lane it is about to evict (a size being
 * recorded holds it for a rename), and in all.
 */
const KEPT_WAIT_MS = 1000;
const KEPT_WAIT_BUDGET_MS = 3000;

/**
 * Lock files and metadata whose lane is gone, trash locks and failure records whose entry is
 * gone, and temporary files of interrupted metadata writes. Every metadata write happens under
 * the lane's lease, so a temporary file whose lease is free has no writer left (or is a size
 * measurement's, prepared ahead of its lock: that one then records nothing): no clock decides.
 */
function tidyStale(layout: Layout, scanned: ReadonlySet<string>): number {
  let tidied = 0;
  // Keys the scan saw with a lane are not candidates: on a root of 100,000 lanes, only the few
  // without one are collected and looked at (a lane made since is found by laneExists below).
  const keys = new Set<string>();
  const candidate = (key: string) => {
    if (!scanned.has(key)) keys.add(key);
  };
  layout.dirIfAny('locks')?.eachName((name) => {
    if (name.endsWith('.lock')) candidate(name.slice(0, -'.lock'.length));
  });
  const temps = new Map<string, string[]>();
  layout.dirIfAny('meta')?.eachName((name) => {
    const temp = /^\.tmp-(.+)\.json-[0-9a-f]+$/.exec(name);
    if (temp) temps.set(temp[1], [...(temps.get(temp[1]) ?? []), layout.dir('meta').at(name)]);
    else if (name.endsWith('.json')) candidate(name.slice(0, -'.json'.length));
  });
  // Files are deleted here on "not held" alone, with no lock taken first: always probed for real.
  const held = { ...heldFlocks(), complete: false };
  const heldOrBad = (key: string) => {
    try {
      return leaseHeld(layout.lock(key), held);
    } catch {
      return true;
    }
  };
  for (const [key, files] of temps) {
    if (heldOrBad(key)) continue;
    for (const file of files) unlinkIfAny(file);
    tidied += files.length;
  }
  for (const key of keys) {
    if (layout.laneExists(key) || heldOrBad(key)) continue;
    if (dropUnder(layout.lock(key), () => !layout.laneExists(key), [layout.metaFile(key)])) tidied++;
  }
  const trash = layout.dirIfAny('trash');
  for (const name of trash?.names() ?? []) {
    const entry = /^(.+)\.(lock|failed\.json)$/.exec(name);
    if (!entry || !trash || trash.exists(entry[1])) continue;
    const gone = () => !trash.exists(entry[1]);
    try {
      if (dropUnder(layout.trashLock(entry[1]), gone, [trash.at(`${entry[1]}.failed.json`)])) tidied++;
    } catch {
      // An unusable lock file beside a gone entry: reported by status, left for a human.
    }
  }
  return tidied;
}
