import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readJson, writeFileAtomic } from './atomic.js';
import { errorMessage } from './errors.js';
import { matrixLabel } from './key.js';
import { readdirOrEmpty, type Layout, type LaneMeta } from './layout.js';
import { Lock } from './lease.js';
import { removeTree, treeSize } from './remove.js';
import { shortHash, slug } from './sanitize.js';
import { moveToTrash } from './trash.js';

/**
 * The warm slot of a lane: repository, scope, job and matrix leg. A parked lane is only ever
 * handed to a later run of the same slot (or copied to a PR run from its base branch's), so a
 * `test` job never inherits a `build` job's target or another leg's.
 */
export function warmSlot(parts: { repository: string; scope: string; job: string; matrix: string }): string {
  const readable = [
    slug(parts.repository, 40),
    slug(parts.scope, 40),
    slug(parts.job, 30),
    slug(matrixLabel(parts.matrix), 30),
  ];
  const raw = JSON.stringify([parts.repository, parts.scope, parts.job, parts.matrix.trim()]);
  return `${readable.join('.')}-${shortHash(raw, 12)}`;
}

export interface ParkedLane {
  key: string;
  slot: string;
  path: string;
  meta?: LaneMeta;
  /** ISO time it was parked. */
  parked?: string;
}

/** The parked lanes of one slot (or of every slot), newest first. */
export function listParked(layout: Layout, slot?: string): ParkedLane[] {
  const slots = slot === undefined ? readdirOrEmpty(layout.parked) : [slot];
  const lanes: ParkedLane[] = [];
  for (const each of slots) {
    for (const key of readdirOrEmpty(path.join(layout.parked, each))) {
      const meta = layout.readMeta(key);
      lanes.push({ key, slot: each, path: layout.parkedLane(each, key), meta, parked: meta?.parked });
    }
  }
  return lanes.sort((a, b) => (b.parked ?? '').localeCompare(a.parked ?? '') || b.key.localeCompare(a.key));
}

/**
 * Parks a lane for the next run of its slot: a rename, under the job's lease (its holder
 * still holds the lock). Records how long its job ran (from the lane's creation), which the
 * copy rule weighs. Returns the parked path.
 *
 * The parked time is written before the rename, so whoever lists the slot sees the lane and
 * its time together. Written after, two posts parking at once could each list the other's
 * lane without a time, sort it oldest, and trim it: both lanes gone.
 */
export function parkLane(layout: Layout, key: string, slot: string): string {
  const target = layout.parkedLane(slot, key);
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
  const meta = layout.readMeta(key);
  const now = Date.now();
  const created = Date.parse(meta?.created ?? '');
  const jobMs = Number.isNaN(created) ? 0 : now - created;
  if (meta) layout.writeMeta({ ...meta, slot, parked: new Date(now).toISOString(), jobMs });
  try {
    fs.renameSync(layout.lane(key), target);
  } catch (error) {
    if (meta) layout.writeMeta(meta);
    throw error;
  }
  return target;
}

/**
 * Trims a slot to its `keep` newest parked lanes, the rest going to the trash. Run after the
 * lease is released, and in one order every process agrees on, so two jobs parking at once
 * pick the same lanes to drop and together leave exactly `keep`.
 */
export function trimSlot(layout: Layout, slot: string, keep: number): string[] {
  const trimmed: string[] = [];
  for (const old of listParked(layout, slot).slice(keep)) if (evictParked(layout, old)) trimmed.push(old.key);
  return trimmed;
}

/**
 * Moves a parked lane to the trash under its lock (so a claim and an eviction never
 * interleave), and drops its metadata and lock. Returns where it went; undefined if someone
 * holds it (a claim) or it is gone.
 */
export function evictParked(layout: Layout, lane: ParkedLane): string | undefined {
  const lock = Lock.tryAcquire(layout.lock(lane.key));
  if (!lock) return undefined;
  try {
    if (!fs.existsSync(lane.path)) return undefined;
    const moved = moveToTrash(layout, lane.path, lane.key);
    if ('error' in moved && !removeTree(lane.path, layout.root).removed) return undefined;
    fs.rmSync(layout.metaFile(lane.key), { force: true });
    lock.unlinkWhileHeld();
    removeEmptySlot(layout, lane.slot);
    return 'trashed' in moved ? moved.trashed : lane.path;
  } finally {
    lock.release();
  }
}

function removeEmptySlot(layout: Layout, slot: string): void {
  try {
    fs.rmdirSync(path.join(layout.parked, slot));
  } catch {
    // Not empty (another lane was parked meanwhile), or gone already.
  }
}

/** How long a claim waits for a parked lane's lock before moving on to the next candidate. */
const CLAIM_WAIT_MS = 500;

export interface WarmOrigin {
  /** The parked lane's key. */
  from: string;
  slot: string;
  /** How the lane was made from it. */
  how: 'claimed' | 'reflink' | 'copy';
  /** ISO time the source was parked. */
  parked?: string;
  /** The run that parked it. */
  runId?: string;
}

/**
 * Claims the newest parked lane of `slot` by renaming it to `lanePath` (O(1)). Each candidate
 * is taken under its lock and re-checked, so of two runs starting together exactly one gets
 * it, and a sweep evicting it cannot interleave. Undefined when there is none to claim.
 */
export function claimParked(layout: Layout, slot: string, lanePath: string): WarmOrigin | undefined {
  for (const candidate of listParked(layout, slot)) {
    // Whoever else holds a parked lane's lock holds it briefly (a claimer, an evicting sweep,
    // a status probe): wait a moment rather than start cold for nothing.
    const lock = Lock.acquire(layout.lock(candidate.key), CLAIM_WAIT_MS);
    if (!lock) continue;
    try {
      if (!fs.existsSync(candidate.path)) {
        lock.unlinkWhileHeld();
        continue;
      }
      fs.renameSync(candidate.path, lanePath);
      fs.rmSync(layout.metaFile(candidate.key), { force: true });
      lock.unlinkWhileHeld();
      removeEmptySlot(layout, slot);
      return { from: candidate.key, slot, how: 'claimed', parked: candidate.parked, runId: candidate.meta?.runId };
    } finally {
      lock.release();
    }
  }
  return undefined;
}

/** Copy speed assumed on a root until a copy there has been measured. */
export const DEFAULT_COPY_BYTES_PER_SECOND = 200 * 1024 * 1024;

export type CopyDecision = { copied: WarmOrigin } | { skipped: string } | undefined;

/**
 * Starts a lane from another slot's newest parked lane without taking it away: a reflink
 * (copy-on-write) clone where the file system supports one, which costs next to nothing;
 * otherwise a plain copy, but only when its estimated time (size / the copy speed last
 * measured on this root) is under half the time the parking job ran, since a copy that costs
 * as much as the build saves nothing. The source is held under its lock while copied.
 */
export function copyParked(layout: Layout, slot: string, lanePath: string): CopyDecision {
  const [candidate] = listParked(layout, slot);
  if (!candidate) return undefined;
  const lock = Lock.acquire(layout.lock(candidate.key), CLAIM_WAIT_MS);
  if (!lock) return { skipped: `the parked lane ${candidate.key} is busy (being claimed or evicted)` };
  try {
    if (!fs.existsSync(candidate.path)) return undefined;
    const origin = { from: candidate.key, slot, parked: candidate.parked, runId: candidate.meta?.runId };
    const reflink = spawnSync('cp', ['-a', '--reflink=always', '--', candidate.path, lanePath], { encoding: 'utf8' });
    if (reflink.status === 0) return { copied: { ...origin, how: 'reflink' } };
    if (fs.existsSync(lanePath)) removeTree(lanePath, layout.root);
    const { bytes } = treeSize(candidate.path);
    const rateFile = path.join(layout.root, 'copy-rate.json');
    const rate = readJson<{ bytesPerSecond: number }>(rateFile)?.bytesPerSecond ?? DEFAULT_COPY_BYTES_PER_SECOND;
    const estimateMs = (bytes / rate) * 1000;
    const budgetMs = (candidate.meta?.jobMs ?? 0) / 2;
    if (estimateMs >= budgetMs) {
      return {
        skipped: `no reflinks here, and copying ${bytes} bytes (about ${Math.round(estimateMs)} ms at ${Math.round(rate / 1048576)} MiB/s) would cost more than half the ${candidate.meta?.jobMs ?? 0} ms its job took`,
      };
    }
    const started = Date.now();
    const copy = spawnSync('cp', ['-a', '--', candidate.path, lanePath], { encoding: 'utf8' });
    if (copy.status !== 0) {
      if (fs.existsSync(lanePath)) removeTree(lanePath, layout.root);
      return { skipped: `cp failed: ${(copy.stderr || '').trim()}` };
    }
    const took = Math.max(1, Date.now() - started);
    if (bytes > 1024 * 1024)
      writeFileAtomic(rateFile, `${JSON.stringify({ bytesPerSecond: (bytes / took) * 1000 })}\n`);
    return { copied: { ...origin, how: 'copy' } };
  } catch (error) {
    return { skipped: errorMessage(error) };
  } finally {
    lock.release();
  }
}
