/**
 * The sweep: the phases of one pass over a root. It gathers the facts (scan), asks
 * sweep-decisions.ts what to do with each lane, and acts under each lane's lock (sweep-reap.ts);
 * then the trash is emptied, space pressure evicts, and stale files are tidied (tidy.ts).
 * src/core/ops is the top of the core: it may import every concept below it.
 */
import { errorMessage } from '../common/errors.js';
import { silentMeters, type Meter, type Meters } from '../common/progress.js';
import { formatSpace, freeBytes, requiredFree } from '../common/space.js';
import type { SpaceTarget } from '../common/units.js';
import type { Parallel } from '../delete/parallel.js';
import type { Privileged } from '../delete/remove.js';
import { LOCK_BATCH, Lock } from '../lease/lock.js';
import { journal } from '../root/journal.js';
import { AREAS, Layout } from '../root/layout.js';
import { forEachLane, heldLocks, leaseHeld } from '../root/liveness.js';
import { plural, requireMarkedRoot } from '../root/root.js';
import { recordedSize } from '../root/sizes.js';
import { emptyTrash, type TrashResult } from '../root/trash.js';
import { evictParked, listParked, type ParkedLane } from '../warm/warm.js';
import {
  NOT_REACHED,
  SweepEntry,
  SweepReport,
  decideLane,
  decideParked,
  evictionOrder,
  freedBytes,
  remainingKeys,
  type Mode,
  type Taken,
} from './sweep-decisions.js';
import { KEPT_WAIT_BUDGET_MS, reap, scanned, type Scanned, type Taking } from './sweep-reap.js';
import { tidyStale } from './tidy.js';

export { BUSY, type SweepEntry, type SweepReport } from './sweep-decisions.js';

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

/** One sweep's facts and findings as its phases fill them in. */
class SweepRun {
  readonly started = Date.now();
  readonly now: number;
  readonly mode: Mode;
  readonly meters: Meters;
  readonly privileged: Privileged;
  readonly problems: string[] = [];
  readonly entries: SweepEntry[] = [];
  readonly trash: TrashResult[] = [];
  timedOut = false;
  /**
   * What this sweep may spend in all waiting for busy kept lanes, within its own time bound:
   * locks a job holds on purpose (any job can open a file in locks/) must not stall it lane
   * after lane. A background sweep (pre) does not wait: the next sweep gets the lane.
   */
  readonly keptWait: { ms: number; deadline?: number };

  constructor(
    readonly layout: Layout,
    readonly options: SweepOptions,
  ) {
    this.now = options.now ?? this.started;
    this.mode = options.dryRun ? 'dry-run' : options.background ? 'background' : 'sync';
    this.meters = options.meters ?? silentMeters;
    this.privileged = options.privileged ?? '';
    this.keptWait = { ms: this.mode === 'background' ? 0 : KEPT_WAIT_BUDGET_MS, deadline: options.deadline };
  }

  overTime(): boolean {
    return this.options.deadline !== undefined && Date.now() >= this.options.deadline;
  }

  bounds() {
    return { now: this.now, maxAgeMs: this.options.maxAgeMs, overTime: this.overTime() };
  }

  /** Runs `body`; what it throws is a problem to report, and `fallback` stands for its result. */
  attempt<T>(what: string, body: () => T, fallback: T): T {
    try {
      return body();
    } catch (error) {
      this.problems.push(`${what}: ${errorMessage(error)}`);
      return fallback;
    }
  }

  /** An entry for a lane under lanes/ that the sweep leaves where it is. */
  leave(lane: Scanned, reason: string, bytes?: number): SweepEntry {
    const entry: SweepEntry = {
      key: lane.key,
      path: this.layout.lane(lane.key),
      state: lane.state,
      outcome: 'left',
      reason,
      created: lane.created,
    };
    if (bytes !== undefined) entry.bytes = bytes;
    this.entries.push(entry);
    return entry;
  }

  /** Takes a lane under lanes/ (see reap); a failure is a problem, and the lane's entry says so. */
  take(lane: Scanned, outcome: Taken, reason: string, lock?: Taking): SweepEntry {
    const entry = this.attempt(`reaping ${lane.key}`, () => reap(this, lane, outcome, reason, lock), {
      key: lane.key,
      path: this.layout.lane(lane.key),
      state: lane.state,
      reason: `${reason}; it could not be taken (see the problems)`,
      created: lane.created,
      outcome: 'failed' as const,
    });
    this.entries.push(entry);
    return entry;
  }

  /** Evicts a parked lane into the trash (a dry run only says it would, with its size). */
  evict(lane: ParkedLane, reason: string): SweepEntry {
    const base = { key: lane.key, path: lane.path, state: 'parked' as const, reason, created: lane.parked };
    let entry: SweepEntry;
    if (this.mode === 'dry-run') {
      const bytes = (recordedSize(lane.meta) ?? this.layout.sizeOf('parked', [lane.slot, lane.key])).bytes;
      entry = { ...base, outcome: 'evicted', bytes };
    } else {
      const moved = this.attempt(`evicting ${lane.key}`, () => evictParked(this.layout, lane, reason), undefined);
      entry = moved
        ? { ...base, outcome: 'evicted', trashed: moved }
        : { ...base, outcome: 'left', reason: 'parked: claimed meanwhile, or could not be taken' };
    }
    this.entries.push(entry);
    return entry;
  }

  /** A parked lane that stays, with the size measured when it was parked. */
  keepParked(lane: ParkedLane): void {
    const bytes = recordedSize(lane.meta)?.bytes;
    this.entries.push({
      key: lane.key,
      path: lane.path,
      state: 'parked',
      outcome: 'left',
      reason: 'parked for the next run of its scope',
      created: lane.parked,
      bytes,
    });
  }

  /** Empties the trash here (a background sweep leaves that to its caller). */
  emptyTrash(): void {
    if (this.mode === 'background') return;
    const options = this.options;
    const emptied = this.attempt(
      'emptying the trash',
      () =>
        emptyTrash(this.layout, {
          dryRun: this.mode === 'dry-run',
          privileged: options.privileged,
          deadline: options.deadline,
          meters: this.meters,
          parallel: options.parallel,
        }),
      [] as TrashResult[],
    );
    this.trash.push(...emptied);
  }
}

function sweepIn(layout: Layout, options: SweepOptions): SweepReport {
  const run = new SweepRun(layout, options);
  checkLayout(layout, run.mode, run.problems);
  const scan = run.meters('scan', { item: ['lane', 'lanes'] });
  const lanes = scanLanes(run, scan);
  takeLanes(run, lanes.toTake);
  const parked = scanParked(run, scan);
  scan.done();
  run.emptyTrash();
  const keepFree = evictForSpace(run, parked.weighed, lanes.weighed);
  attribute(run.entries, run.trash);
  return finish(run, lanes.count, parked.count, keepFree);
}

/**
 * Phase 1, the lanes: each is decided as it is scanned, and only the lanes to take or to
 * weigh against keep-free are kept, with only what decides them (100,000 lanes' full
 * metadata is never held).
 */
function scanLanes(run: SweepRun, scan: Meter) {
  const toTake: { lane: Scanned; outcome: Taken; reason: string }[] = [];
  const weighed: Scanned[] = [];
  const texts = new Map<string, string>();
  let count = 0;
  const each = (lane: Scanned) => {
    const decision = decideLane(lane, run.bounds());
    if (decision.do === 'take') toTake.push({ lane, outcome: decision.outcome, reason: decision.reason });
    else if (decision.do === 'weigh') weighed.push(lane);
    else {
      if (decision.problem) run.problems.push(decision.problem);
      if (decision.timedOut) run.timedOut = true;
      run.leave(lane, decision.reason);
    }
  };
  run.attempt(
    'listing lanes',
    () =>
      forEachLane(run.layout, (lane) => {
        scan.item();
        count++;
        each(scanned(lane, texts));
      }),
    undefined,
  );
  return { toTake, weighed, count };
}

/**
 * Phase 2, reaping: the real locks of the lanes to take, by one process a batch (a dry run
 * takes none); a batch at a time, so a reboot's thousands of orphans never hold thousands of
 * descriptors. Each lane is then re-checked and moved to the trash under its lock.
 */
function takeLanes(run: SweepRun, toTake: readonly { lane: Scanned; outcome: Taken; reason: string }[]): void {
  for (let start = 0; start < toTake.length; start += LOCK_BATCH) {
    const batch = toTake.slice(start, start + LOCK_BATCH);
    const locks: Taking[] =
      run.mode === 'dry-run'
        ? []
        : run.attempt(
            'locking lanes',
            () => Lock.tryAcquireMany(batch.map(({ lane }) => run.layout.lock(lane.key))),
            [],
          );
    try {
      batch.forEach(({ lane, outcome, reason }, index) => {
        const lock = index < locks.length ? (locks[index] ?? null) : undefined;
        if (run.overTime()) {
          run.timedOut = true;
          run.leave(lane, NOT_REACHED);
        } else run.take(lane, outcome, reason, lock);
      });
    } finally {
      for (const lock of locks) if (lock instanceof Lock) lock.release();
    }
  }
}

/** Phase 1 again, the parked lanes (warm starts): evicted past max-age, the rest weighed. */
function scanParked(run: SweepRun, scan: Meter) {
  const weighed: ParkedLane[] = [];
  const held = heldLocks(run.layout);
  const parkedLanes = run.attempt('listing parked lanes', () => listParked(run.layout), [] as ParkedLane[]);
  for (const lane of parkedLanes) {
    scan.item();
    const busy = run.attempt(`probing ${lane.key}`, () => leaseHeld(run.layout.lock(lane.key), held), true);
    const decision = decideParked(lane.parked, busy, run.bounds());
    if (decision.do === 'evict') run.evict(lane, decision.reason);
    else if (decision.do === 'weigh') weighed.push(lane);
    else
      run.entries.push({
        key: lane.key,
        path: lane.path,
        state: 'parked',
        outcome: 'left',
        reason: decision.reason,
        created: lane.parked,
      });
  }
  return { weighed, count: parkedLanes.length };
}

/**
 * Phase 4, space pressure: parked lanes go first, then kept ones, oldest first, until the
 * keep-free target holds; what stays is reported with the size measured when it was kept or
 * parked (the sweep never walks a tree it leaves alone, so it stays O(lanes)). A background
 * sweep (pre) frees nothing before it returns: it leaves this to full sweeps.
 */
function evictForSpace(
  run: SweepRun,
  parked: readonly ParkedLane[],
  kept: readonly Scanned[],
): SweepReport['keepFree'] {
  const root = run.options.root;
  const pressure = run.mode === 'background' ? undefined : run.options.keepFree;
  const dryRun = run.mode === 'dry-run';
  let free = freeBytes(root) + (dryRun ? freedBytes(run.mode, run.entries, run.trash) : 0);
  for (const candidate of evictionOrder(parked, kept)) {
    if (pressure && free < requiredFree(root, pressure) && !run.overTime()) {
      const why = `keep-free: ${formatSpace(pressure)} wanted on the root's file system`;
      const entry = 'parked' in candidate ? run.evict(candidate.parked, why) : run.take(candidate.kept, 'evicted', why);
      if (dryRun) free += entry.bytes ?? 0;
      else {
        run.emptyTrash();
        free = freeBytes(root);
      }
    } else if ('parked' in candidate) run.keepParked(candidate.parked);
    else run.leave(candidate.kept, candidate.kept.retained ?? 'kept', candidate.kept.bytes);
  }
  if (!pressure) return undefined;
  const wanted = requiredFree(root, pressure);
  return { wantedBytes: wanted, freeBytes: free, reached: free >= wanted };
}

/** Last: stale files tidied, the sweep journalled, the report. */
function finish(
  run: SweepRun,
  scannedCount: number,
  scannedParked: number,
  keepFree: SweepReport['keepFree'],
): SweepReport {
  const dryRun = run.mode === 'dry-run';
  const tidied = dryRun ? 0 : run.attempt('tidying', () => tidyStale(run.layout, remainingKeys(run.entries)), 0);
  if (!dryRun) {
    journal(run.layout, {
      action: 'swept',
      key: '',
      seconds: (Date.now() - run.started) / 1000,
      reason: `${plural(scannedCount, 'lane')} and ${plural(scannedParked, 'parked lane')} scanned; ${plural(run.problems.length, 'problem')}`,
    });
  }
  return {
    root: run.options.root,
    dryRun: run.options.dryRun,
    scanned: scannedCount,
    scannedParked,
    entries: run.entries,
    trash: run.trash,
    freedBytes: freedBytes(run.mode, run.entries, run.trash),
    tidied,
    problems: [...new Set(run.problems)],
    keepFree,
    timedOut: run.timedOut,
    seconds: (Date.now() - run.started) / 1000,
  };
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
