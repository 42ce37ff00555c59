import fs from 'node:fs';
import path from 'node:path';
import { errorCode } from './errors.js';
import { Layout, type LaneMeta } from './layout.js';
import { Lock, heldFlocks } from './lease.js';
import { leaseHeld, listLanes } from './lane.js';
import { humanBytes, removeTree, treeSize, type RemoveFailure } from './remove.js';
import { requireMarkedRoot } from './root.js';
import type { SpaceTarget } from './units.js';

export interface SweepOptions {
  root: string;
  dryRun: boolean;
  /** Kept lanes older than this are removed; orphans are reaped whatever their age. */
  maxAgeMs: number;
  /** Free space to keep on the root's file system: kept lanes go, oldest first, until it holds. */
  keepFree?: SpaceTarget;
  /** Epoch ms after which no new lane is started (pre's time bound). */
  deadline?: number;
  onProgress?: (done: number, total: number) => void;
  now?: number;
}

export interface SweepEntry {
  key: string;
  path: string;
  state: 'live' | 'orphan' | 'kept';
  /** reaped / evicted (or would be, on a dry run), kept, or failed. */
  outcome: 'reaped' | 'evicted' | 'kept' | 'failed';
  reason: string;
  /** Bytes freed (measured as the file system's change), or the tree's size on a dry run or when kept. */
  bytes?: number;
  created?: string;
  failures?: RemoveFailure[];
}

export interface SweepReport {
  root: string;
  dryRun: boolean;
  scanned: number;
  entries: SweepEntry[];
  freedBytes: number;
  tidied: number;
  timedOut: boolean;
  seconds: number;
}

/**
 * Reaps what dead jobs left: every lane whose lease nobody holds (taken for real, and
 * re-checked under the lock), kept lanes past `maxAgeMs`, then kept lanes oldest first while
 * the file system has less free space than `keepFree`. A live lane is never touched. Also
 * tidies lock files and metadata whose lane is gone. Two sweeps racing arbitrate on the
 * lane's lock: each lane is reaped once.
 */
export function sweep(options: SweepOptions): SweepReport {
  const started = Date.now();
  const now = options.now ?? started;
  requireMarkedRoot(options.root);
  const layout = new Layout(options.root);
  // A lost locks/ or meta/ (a reboot that wiped them, a human) is recreated, not fatal.
  layout.ensure();
  const lanes = listLanes(options.root);
  const entries: SweepEntry[] = [];
  let freedBytes = 0;
  let timedOut = false;
  const expired = (meta?: LaneMeta) => age(meta, now) > options.maxAgeMs;

  const take = (key: string, outcome: 'reaped' | 'evicted', reason: string, state: SweepEntry['state']) => {
    const entry = reap(layout, key, outcome, reason, state, options.dryRun);
    if (entry.outcome !== 'failed' && entry.outcome !== 'kept') freedBytes += entry.bytes ?? 0;
    entries.push(entry);
    return entry;
  };

  const kept: typeof lanes = [];
  lanes.forEach((lane, index) => {
    options.onProgress?.(index, lanes.length);
    if (lane.state === 'live') {
      entries.push({
        key: lane.key,
        path: lane.path,
        state: 'live',
        outcome: 'kept',
        reason: 'live: its lease is held',
        created: lane.created,
      });
      return;
    }
    if (options.deadline !== undefined && Date.now() >= options.deadline) {
      timedOut = true;
      entries.push({
        key: lane.key,
        path: lane.path,
        state: lane.state,
        outcome: 'kept',
        reason: 'not reached: time bound',
        created: lane.created,
      });
      return;
    }
    if (lane.state === 'orphan') take(lane.key, 'reaped', 'orphan: no job holds its lease', 'orphan');
    else if (expired(lane.meta)) take(lane.key, 'evicted', `kept longer than max-age (${lane.meta?.retained})`, 'kept');
    else kept.push(lane);
  });
  options.onProgress?.(lanes.length, lanes.length);

  // Space pressure: oldest kept lanes first, until the target holds.
  const pressure = options.keepFree;
  let simulatedFree = freeBytes(options.root) + (options.dryRun ? freedBytes : 0);
  kept.sort((a, b) => (a.created ?? '').localeCompare(b.created ?? ''));
  for (const lane of kept) {
    const needed = pressure ? requiredFree(options.root, pressure) : 0;
    if (pressure && simulatedFree < needed && !timedOut) {
      const entry = take(
        lane.key,
        'evicted',
        `keep-free: ${formatSpace(pressure)} wanted on the root's file system`,
        'kept',
      );
      simulatedFree = options.dryRun ? simulatedFree + (entry.bytes ?? 0) : freeBytes(options.root);
    } else {
      entries.push({
        key: lane.key,
        path: lane.path,
        state: 'kept',
        outcome: 'kept',
        reason: lane.meta?.retained ?? 'kept',
        created: lane.created,
        bytes: treeSize(lane.path).bytes,
      });
    }
  }
  const tidied = options.dryRun ? 0 : tidyStale(layout);
  return {
    root: options.root,
    dryRun: options.dryRun,
    scanned: lanes.length,
    entries,
    freedBytes,
    tidied,
    timedOut,
    seconds: (Date.now() - started) / 1000,
  };
}

function age(meta: LaneMeta | undefined, now: number): number {
  const created = meta ? Date.parse(meta.created) : NaN;
  return Number.isNaN(created) ? Infinity : now - created;
}

/** Takes the lane's lease, re-checks under it, then removes the lane, its metadata and its lock. */
function reap(
  layout: Layout,
  key: string,
  outcome: 'reaped' | 'evicted',
  reason: string,
  state: SweepEntry['state'],
  dryRun: boolean,
): SweepEntry {
  const lanePath = layout.lane(key);
  const base = { key, path: lanePath, state, reason };
  const lock = Lock.tryAcquire(layout.lock(key));
  if (!lock) return { ...base, outcome: 'kept', reason: 'live: its lease was taken meanwhile' };
  try {
    const meta = layout.readMeta(key);
    if (!fs.existsSync(lanePath)) return { ...base, outcome: 'kept', reason: 'gone: another sweep reaped it' };
    if (dryRun) return { ...base, outcome, created: meta?.created, bytes: treeSize(lanePath).bytes };
    const before = freeBytes(layout.root);
    const result = removeTree(lanePath, layout.root);
    const bytes = Math.max(0, freeBytes(layout.root) - before);
    if (!result.removed)
      return { ...base, outcome: 'failed', created: meta?.created, bytes, failures: result.failures };
    fs.rmSync(layout.metaFile(key), { force: true });
    lock.unlinkWhileHeld();
    return { ...base, outcome, created: meta?.created, bytes };
  } finally {
    lock.release();
  }
}

/**
 * Lock files and metadata whose lane is gone, and temporary files of interrupted metadata
 * writes. Every metadata write happens under the lane's lease, so a temporary file whose
 * lease is free has no writer left: no clock decides.
 */
function tidyStale(layout: Layout): number {
  let tidied = 0;
  const keys = new Set<string>();
  for (const name of readdirOrEmpty(layout.locks)) if (name.endsWith('.lock')) keys.add(name.slice(0, -'.lock'.length));
  const temps = new Map<string, string[]>();
  for (const name of readdirOrEmpty(layout.meta)) {
    const temp = /^\.tmp-(.+)\.json-[0-9a-f]+$/.exec(name);
    if (temp) temps.set(temp[1], [...(temps.get(temp[1]) ?? []), path.join(layout.meta, name)]);
    else if (name.endsWith('.json')) keys.add(name.slice(0, -'.json'.length));
  }
  const held = heldFlocks();
  for (const [key, files] of temps) {
    if (leaseHeld(layout.lock(key), held)) continue;
    for (const file of files) fs.rmSync(file, { force: true });
    tidied += files.length;
  }
  for (const key of keys) {
    if (fs.existsSync(layout.lane(key)) || leaseHeld(layout.lock(key), held)) continue;
    const lock = Lock.tryAcquire(layout.lock(key));
    if (!lock) continue;
    try {
      if (fs.existsSync(layout.lane(key))) continue;
      fs.rmSync(layout.metaFile(key), { force: true });
      lock.unlinkWhileHeld();
      tidied++;
    } finally {
      lock.release();
    }
  }
  return tidied;
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

export function freeBytes(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

function requiredFree(dir: string, target: SpaceTarget): number {
  if ('bytes' in target) return target.bytes;
  const stats = fs.statfsSync(dir);
  return (stats.blocks * stats.bsize * target.percent) / 100;
}

export function formatSpace(target: SpaceTarget): string {
  return 'bytes' in target ? humanBytes(target.bytes) : `${target.percent}%`;
}
