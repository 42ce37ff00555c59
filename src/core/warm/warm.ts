/**
 * src/core/warm: warm start: the slot a lane parks in (warm.ts: slots, park, claim, copy,
 * eviction), the user's warm key (key.ts), which parked lane a job starts from (start.ts), and
 * trimming a lane before it is parked (trim.ts). It may import everything below it:
 * src/core/common, delete, lease, lane and root.
 */
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { writeFileAtomic } from '../common/atomic.js';
import { errorCode, errorMessage } from '../common/errors.js';
import { matrixLabel, scopeOf } from '../lane/key.js';
import { isLaneName, type Layout, type LaneMeta } from '../root/layout.js';
import { readJsonNoFollow } from '../delete/open-regular.js';
import { journal } from '../root/journal.js';
import { Lock } from '../lease/lock.js';
import { mountsBelow, removeIn, renameIn, unlinkIfAny } from '../delete/remove.js';
import { treeSizeIn } from '../delete/walk.js';
import { type Dir } from '../delete/dir.js';
import { shortHash, slug } from '../lane/sanitize.js';
import { moveToTrash } from '../root/trash.js';
import { SlotParts, TrustClass } from '../lane/ci-identity.js';

/**
 * The warm slot of a lane. A parked lane is only ever handed to a later run of the same slot
 * (or copied to a run from a trusted branch's slot), so a `test` job never inherits a `build`
 * job's target, nor another leg's, nor a fork's. The hash covers every raw value: the
 * readable part (lower-cased, shortened) is decoration and never decides a match.
 */
export function warmSlot(parts: SlotParts): string {
  const readable = [
    slug(parts.repository, 40),
    slug(scopeLabel(parts.scopeId), 40),
    slug(parts.job, 30),
    slug(matrixLabel(parts.matrix), 30),
  ];
  const raw = JSON.stringify([
    parts.repository,
    parts.scopeId,
    parts.trust,
    parts.workflow,
    parts.job,
    parts.step,
    parts.matrix.trim(),
    // Appended only when set, so the slots of runs without a warm-key stay what they were.
    ...(parts.warmKey ? [parts.warmKey] : []),
  ]);
  return `${readable.join('.')}-${parts.trust === 'trusted' ? '' : `${parts.trust}-`}${shortHash(raw, 16)}`;
}

function scopeLabel(scopeId: string): string {
  const pr = /^pr:(\d+)$/.exec(scopeId);
  return pr ? `pr-${pr[1]}` : scopeOf(scopeId);
}

export interface ParkedLane {
  key: string;
  slot: string;
  path: string;
  meta?: LaneMeta;
  /** ISO time it was parked. */
  parked?: string;
}

/** The parked lanes of one slot (or of every slot), newest first. A bad slot is skipped, never followed. */
export function listParked(layout: Layout, slot?: string): ParkedLane[] {
  const slots = slot === undefined ? layout.names('parked') : [slot];
  const lanes: ParkedLane[] = [];
  // Only names runlane makes: anything else a job put there is never a candidate.
  for (const each of slots.filter(isLaneName)) {
    let dir: Dir | undefined;
    try {
      dir = layout.slotDir(each);
    } catch {
      continue;
    }
    if (!dir) continue;
    try {
      for (const key of dir.names().filter(isLaneName)) {
        const meta = layout.readMeta(key);
        lanes.push({ key, slot: each, path: layout.parkedLane(each, key), meta, parked: meta?.parked });
      }
    } finally {
      dir.close();
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
  const slotDir = layout.slotDir(slot, true) as Dir;
  try {
    const meta = layout.readMeta(key);
    const now = Date.now();
    const created = Date.parse(meta?.created ?? '');
    const jobMs = Number.isNaN(created) ? 0 : now - created;
    if (meta) layout.writeMeta({ ...meta, slot, parked: new Date(now).toISOString(), jobMs });
    try {
      const mounts = mountsBelow(layout.dir('lanes'), key);
      if (mounts.length > 0)
        throw new Error(`file systems are mounted in it (${mounts.map((m) => m.mountPoint).join(', ')})`);
      renameIn(layout.dir('lanes'), key, slotDir, key);
    } catch (error) {
      if (meta) layout.writeMeta(meta);
      throw error;
    }
    journal(layout, { action: 'parked', key, detail: slot, reason: 'job succeeded (warm)' });
    return layout.parkedLane(slot, key);
  } finally {
    slotDir.close();
  }
}

/**
 * Trims a slot to its `keep` newest parked lanes, the rest going to the trash. Run after the
 * lease is released, and in one order every process agrees on, so two jobs parking at once
 * pick the same lanes to drop and together leave exactly `keep`.
 */
export function trimSlot(layout: Layout, slot: string, keep: number): string[] {
  const trimmed: string[] = [];
  // A lock held a moment (a background measurement writing its result, a claim) is waited
  // for, a moment in all (post stays quick whatever locks a job holds on purpose); a lane
  // still busy then is dropped by the next trim of its slot, or the sweep.
  const deadline = Date.now() + CLAIM_WAIT_MS;
  for (const old of listParked(layout, slot).slice(keep)) {
    if (evictParked(layout, old, `warm-keep ${keep}: a newer lane was parked`, deadline - Date.now()))
      trimmed.push(old.key);
  }
  return trimmed;
}

/**
 * Moves a parked lane to the trash under its lock (so a claim and an eviction never
 * interleave), and drops its metadata and lock. Returns where it went; undefined if someone
 * holds it (a claim) for longer than `waitMs`, or it is gone.
 */
export function evictParked(
  layout: Layout,
  lane: ParkedLane,
  why = 'parked lane made way',
  waitMs = 0,
): string | undefined {
  const lock = Lock.acquire(layout.lock(lane.key), waitMs); // tried once at least
  if (!lock) return undefined;
  let slotDir: Dir | undefined;
  try {
    slotDir = layout.slotDir(lane.slot);
    if (!slotDir?.exists(lane.key)) return undefined;
    const moved = moveToTrash(layout, slotDir, lane.key, lane.key);
    if ('error' in moved && !removeIn(slotDir, lane.key).removed) return undefined;
    unlinkIfAny(layout.metaFile(lane.key));
    lock.unlinkWhileHeld();
    removeEmptySlot(layout, lane.slot);
    journal(layout, {
      action: 'evicted',
      key: lane.key,
      reason: why,
      detail: 'trashed' in moved ? moved.trashed : 'deleted in place',
    });
    return 'trashed' in moved ? moved.trashed : lane.path;
  } finally {
    slotDir?.close();
    lock.release();
  }
}

function removeEmptySlot(layout: Layout, slot: string): void {
  try {
    fs.rmdirSync(layout.dir('parked').at(slot));
  } catch {
    // Not empty (another lane was parked meanwhile), or gone already.
  }
}

/**
 * How long a claim waits for a parked lane's lock before moving on to the next candidate. Only
 * runlane's own work holds it (another claim, a copy, a size being recorded, an eviction), so
 * this is long enough for a loaded host and short against any build a warm start saves.
 */
const CLAIM_WAIT_MS = 2000;
/** The same for each source a copy is made from (warm-from may name several). */
const COPY_WAIT_MS = 500;

export interface WarmOrigin {
  /** The parked lane's key. */
  from: string;
  slot: string;
  /** How the lane was made from it. */
  how: 'claimed' | 'reflink' | 'copy';
  /** Which warm-from entry gave it: this scope's own slot (`same`), the PR's base branch, or a named branch. */
  source?: 'same' | 'base' | 'branch';
  /** ISO time the source was parked. */
  parked?: string;
  /** The run that parked it. */
  runId?: string;
}

/**
 * Claims the newest parked lane of `slot` by renaming it to the lane `key` (O(1)). Each
 * candidate is taken under its lock and re-checked, so of two runs starting together exactly
 * one gets it, and a sweep evicting it cannot interleave. Undefined when there is none to claim.
 */
export function claimParked(layout: Layout, slot: string, key: string, trust: TrustClass): WarmOrigin | undefined {
  // Whoever else holds a parked lane's lock holds it briefly (a claimer, an evicting sweep, a
  // size being recorded): wait a moment rather than start cold for nothing; a moment in all,
  // so locks a job holds on purpose on every parked lane of a slot cost a job that much only.
  const deadline = Date.now() + CLAIM_WAIT_MS;
  for (const candidate of listParked(layout, slot)) {
    const lock = Lock.acquire(layout.lock(candidate.key), deadline - Date.now());
    if (!lock) continue;
    let slotDir: Dir | undefined;
    try {
      slotDir = layout.slotDir(slot);
      if (!slotDir?.lstat(candidate.key)?.isDirectory()) {
        lock.unlinkWhileHeld();
        continue;
      }
      // Only a lane parked from this very slot and trust class (defence in depth: see the README).
      if (candidate.meta?.slot !== slot || candidate.meta?.trust !== trust) continue;
      if (mountsBelow(slotDir, candidate.key).length > 0) continue;
      renameIn(slotDir, candidate.key, layout.dir('lanes'), key);
      unlinkIfAny(layout.metaFile(candidate.key));
      lock.unlinkWhileHeld();
      removeEmptySlot(layout, slot);
      journal(layout, { action: 'claimed', key: candidate.key, detail: key, reason: `warm start of ${key}` });
      return { from: candidate.key, slot, how: 'claimed', parked: candidate.parked, runId: candidate.meta?.runId };
    } catch {
      // A slot that is not what runlane made: no claim from it.
    } finally {
      slotDir?.close();
      lock.release();
    }
  }
  return undefined;
}

/** Copy speed assumed on a root until a copy there has been measured. */
export const DEFAULT_COPY_BYTES_PER_SECOND = 200 * 1024 * 1024;

export type CopyDecision = { copied: WarmOrigin } | { skipped: string } | undefined;

/**
 * Starts the lane `key` from another slot's newest parked lane without taking it away: a
 * reflink (copy-on-write) clone where the file system supports one, which costs next to
 * nothing; otherwise a plain copy, but only when its estimated time (size / the copy speed
 * last measured on this root) is under half the time the parking job ran, since a copy that
 * costs as much as the build saves nothing. The source is held under its lock while copied,
 * and both ends are given to cp through our opened directories (cp -a never follows symlinks
 * inside the tree).
 */
export function copyParked(layout: Layout, slot: string, key: string): CopyDecision {
  const [candidate] = listParked(layout, slot).filter(
    (lane) => lane.meta?.slot === slot && lane.meta?.trust === 'trusted',
  );
  if (!candidate) return undefined;
  const lock = Lock.acquire(layout.lock(candidate.key), COPY_WAIT_MS);
  if (!lock) return { skipped: `the parked lane ${candidate.key} is busy (being claimed or evicted)` };
  try {
    return copyLocked(layout, slot, candidate, key);
  } finally {
    lock.release();
  }
}

/** copyParked's work under the parked lane's lock; what it made is removed again when it fails. */
function copyLocked(layout: Layout, slot: string, candidate: ParkedLane, key: string): CopyDecision {
  const opened: Dir[] = [];
  const lanes = layout.dir('lanes');
  let made = false;
  const undo = () => {
    if (made && lanes.exists(key)) removeIn(lanes, key);
    made = false;
  };
  try {
    const slotDir = layout.slotDir(slot);
    if (!slotDir) return undefined;
    opened.push(slotDir);
    if (!slotDir.lstat(candidate.key)?.isDirectory()) return undefined;
    let source: Dir;
    try {
      source = slotDir.openChild(candidate.key);
    } catch (error) {
      if (errorCode(error) === 'EBUSY') return { skipped: `the parked lane ${candidate.key} is a mount` };
      throw error;
    }
    opened.push(source);
    const origin = { from: candidate.key, slot, parked: candidate.parked, runId: candidate.meta?.runId };
    // Both ends through our own descriptors: cp never meets a name a job could swap, and
    // -a never follows a symlink inside the tree.
    fs.mkdirSync(lanes.at(key), { mode: 0o755 });
    made = true;
    const target = lanes.openChild(key);
    opened.push(target);
    const cp = (...flags: string[]) => copyTree(source, target, flags);
    if (cp('--reflink=always').status === 0) {
      journal(layout, { action: 'copied', key: candidate.key, detail: key, reason: 'warm start (reflink)' });
      return { copied: { ...origin, how: 'reflink' } };
    }
    const { bytes } = treeSizeIn(slotDir, candidate.key);
    const rateFile = layout.rootHandle().at('copy-rate.json');
    const tooDear = copyTooDear(rateFile, bytes, candidate.meta?.jobMs ?? 0);
    if (tooDear) {
      undo();
      return { skipped: tooDear };
    }
    const started = Date.now();
    const copy = cp();
    if (copy.status !== 0) {
      undo();
      return { skipped: `cp failed: ${(copy.stderr || '').trim()}` };
    }
    const took = Math.max(1, Date.now() - started);
    if (bytes > 1024 * 1024)
      writeFileAtomic(rateFile, `${JSON.stringify({ bytesPerSecond: (bytes / took) * 1000 })}\n`);
    journal(layout, { action: 'copied', key: candidate.key, detail: key, bytes, reason: 'warm start (copy)' });
    return { copied: { ...origin, how: 'copy' } };
  } catch (error) {
    undo();
    return { skipped: errorMessage(error) };
  } finally {
    for (const dir of opened.reverse()) dir.close();
  }
}

/** `cp -a` of one opened directory's contents into another's, by descriptor (no name a job can swap). */
function copyTree(source: Dir, target: Dir, flags: string[]) {
  return spawnSync('cp', ['-a', '-T', ...flags, '--', `${source.selfForChild()}/.`, `${target.selfForChild()}/.`], {
    encoding: 'utf8',
  });
}

/**
 * Why a plain copy of `bytes` would not pay, if it would not: its estimated time (at the copy
 * speed last measured on this root) is at least half the time the parking job ran.
 */
function copyTooDear(rateFile: string, bytes: number, jobMs: number): string | undefined {
  const recorded = readJsonNoFollow(rateFile) as { bytesPerSecond?: unknown } | undefined;
  const rate =
    typeof recorded?.bytesPerSecond === 'number' && recorded.bytesPerSecond > 0
      ? recorded.bytesPerSecond
      : DEFAULT_COPY_BYTES_PER_SECOND;
  const estimateMs = (bytes / rate) * 1000;
  if (estimateMs < jobMs / 2) return undefined;
  return `no reflinks here, and copying ${bytes} bytes (about ${Math.round(estimateMs)} ms at ${Math.round(rate / 1048576)} MiB/s) would cost more than half the ${jobMs} ms its job took`;
}
