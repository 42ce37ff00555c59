import fs from 'node:fs';
import path from 'node:path';
import { errorCode, SettingError } from '../common/errors.js';
import { Dir, nameText, type EntryName } from '../delete/dir.js';
import { humanBytes } from '../common/units.js';
import { walkTree } from '../delete/walk.js';
import { Layout } from '../root/layout.js';
import { parseSpace } from '../common/units.js';

/**
 * Keeping a warm lane within `warm-max-size`. A parked lane is reused run after run, and
 * what its tools wrote for old dependency versions, old toolchains or deleted crates is
 * never removed by them: warm `target/` dirs of hundreds of gigabytes are what users of
 * other caches report. Before a lane is parked (and before it is uploaded), files this job
 * did not use are removed, oldest first, until the lane fits.
 *
 * "Used by this job" is read from the file system: a file whose access or modification time
 * is at or after the job's start (the lane's creation, in main) was read or written by it.
 * Under `strictatime` every read counts; under Linux's default `relatime` a read updates the
 * access time only when it is older than the modification time or a day old, so a file this
 * job read that an earlier job read less than a day before counts as unused, but sorts with
 * the recently used (its access time is at most a day old), after everything older. Under
 * `noatime` only writes count. Unused files go first, oldest (latest of access and
 * modification) first; if what this job used alone is over the limit, used files follow,
 * oldest first, and the caller says so.
 */
export interface TrimResult {
  /** Disk usage before and after (allocated blocks, as `du` counts, each inode once). */
  before: number;
  after: number;
  removed: number;
  removedBytes: number;
  /** Of what was removed, files this job used: the limit is below what one run needs. */
  removedUsed: number;
  /** Files that could not be removed (a mount on them, a changed entry, no permission). */
  failed: number;
  /** The trim ran out of its time budget: what it had removed by then stays removed. */
  timedOut?: boolean;
  /**
   * What the walk could not see into (an unreadable directory, one nested MAX_DEPTH deep):
   * its size is unknown, so the lane counts as over the limit and is not parked.
   */
  hidden?: { count: number; first: string };
}

/** `warm-max-size`: a size (`20G`, G = GiB), or `off` for no limit (undefined). */
export function parseWarmMaxSize(setting: string, value: string): number | undefined {
  const text = value.trim() || '20G';
  const target = parseSpace(setting, text);
  if (!('bytes' in target)) throw new SettingError(setting, value, 'a size like 20G or 500M (G = GiB), or off');
  return target.bytes === 0 ? undefined : target.bytes;
}

/** A file found by the walk: what is known of its inode (one per inode, whatever its names). */
interface Candidate {
  ino: number;
  bytes: number;
  /** Latest of access and modification time, in ms. */
  time: number;
  used: boolean;
}

/** How long a trim may take before it stops and reports, so post never hangs on a huge lane. */
export const TRIM_BUDGET_MS = 120_000;

class OutOfTime extends Error {}

/**
 * Trims the lane `key` (a directory inside `lanes`) to `maxBytes`, removing files not used
 * since `stamp` (ms) first. Walked like a delete: through opened directories, never following
 * a symlink, never entering another mount (a mount on the lane itself is refused), never
 * entering a directory twice; only regular files are removed, each by name inside its opened
 * directory, and only if it is still the inode the first walk measured. The caller holds the
 * lane's lease. Past `budgetMs` it stops where it is and says so.
 */
export function trimLane(
  lanes: Dir,
  key: string,
  maxBytes: number,
  stamp: number,
  budgetMs = TRIM_BUDGET_MS,
): TrimResult {
  let lane: Dir;
  try {
    lane = lanes.openChild(key);
  } catch (error) {
    if (errorCode(error) !== 'EBUSY') throw error;
    throw Object.assign(
      new Error(`${path.join(lanes.path, key)} is a mount point: a lane on another mount is not trimmed`),
      { code: 'EBUSY' },
    );
  }
  try {
    return trimIn(lane, maxBytes, stamp, Date.now() + budgetMs);
  } finally {
    lane.close();
  }
}

/**
 * Walks the lane (see walkTree: once per directory, never across a mount or a symlink), calling
 * `each` for every entry; past `deadline` it stops with OutOfTime, checked at each directory.
 */
function walk(
  lane: Dir,
  deadline: number,
  each: (dir: Dir, name: EntryName, stat: fs.Stats) => void,
  onHidden?: (dir: Dir, name: EntryName | undefined, why: string) => void,
): void {
  if (Date.now() > deadline) throw new OutOfTime();
  walkTree(
    lane,
    (dir, name, stat) => {
      if (stat.isDirectory() && Date.now() > deadline) throw new OutOfTime();
      each(dir, name, stat);
    },
    { onHidden },
  );
}

function trimIn(lane: Dir, maxBytes: number, stamp: number, deadline: number): TrimResult {
  const { before, byInode, hidden, timedOut } = measureLane(lane, stamp, deadline);
  if (timedOut) return { ...emptyResult(before), timedOut };
  const result = emptyResult(before);
  // Unknown is not small: a tree the walk cannot see into is never parked as within the limit.
  if (hidden) return { ...result, hidden };
  if (before <= maxBytes) return result;
  const victims = chooseVictims(byInode, before - maxBytes);
  byInode.clear();
  removeVictims(lane, deadline, victims, result);
  return result;
}

/**
 * The first walk: the lane's size as du counts it (the lane directory itself, each inode
 * once), every regular file as a candidate, and the first part the walk could not see into.
 */
function measureLane(
  lane: Dir,
  stamp: number,
  deadline: number,
): { before: number; byInode: Map<number, Candidate>; hidden: TrimResult['hidden']; timedOut?: true } {
  let before = lane.stat.blocks * 512;
  const byInode = new Map<number, Candidate>();
  let hidden: TrimResult['hidden'];
  const onHidden = (dir: Dir, name: EntryName | undefined, why: string) => {
    const where = path.relative(lane.path, name === undefined ? dir.path : path.join(dir.path, nameText(name)));
    hidden ??= { count: 0, first: `${JSON.stringify(where)} ${why}` };
    hidden.count++;
  };
  try {
    walk(
      lane,
      deadline,
      (_dir, _name, stat) => {
        // Hard links (cargo uplifts binaries this way): the inode counts once, and is freed
        // only when every name of it in the lane is removed.
        if (stat.nlink > 1 && byInode.has(stat.ino)) return;
        before += stat.blocks * 512;
        if (!stat.isFile()) return;
        const time = Math.max(stat.atimeMs, stat.mtimeMs);
        byInode.set(stat.ino, { ino: stat.ino, bytes: stat.blocks * 512, time, used: time >= stamp });
      },
      onHidden,
    );
  } catch (error) {
    if (error instanceof OutOfTime) return { before, byInode, hidden, timedOut: true };
    throw error;
  }
  return { before, byInode, hidden };
}

/** The files to remove for `over` bytes: those this job did not use first, then the oldest. */
function chooseVictims(byInode: ReadonlyMap<number, Candidate>, over: number): Map<number, Candidate> {
  const candidates = [...byInode.values()].sort((a, b) => Number(a.used) - Number(b.used) || a.time - b.time);
  const victims = new Map<number, Candidate>();
  for (const candidate of candidates) {
    if (over <= 0) break;
    victims.set(candidate.ino, candidate);
    over -= candidate.bytes;
  }
  return victims;
}

/**
 * The second walk removes every name of each victim where it finds it: a directory is opened
 * once, through its parent, never again from the top. Counts what went into `result`.
 */
function removeVictims(lane: Dir, deadline: number, victims: Map<number, Candidate>, result: TrimResult): void {
  const failed = new Set<number>();
  const unlinked = new Set<number>();
  try {
    walk(lane, deadline, (dir, name, stat) => {
      if (!stat.isFile() || !victims.has(stat.ino)) return;
      if (removeName(dir, name, stat.ino)) unlinked.add(stat.ino);
      else failed.add(stat.ino);
    });
  } catch (error) {
    if (!(error instanceof OutOfTime)) throw error;
    result.timedOut = true;
  }
  for (const victim of victims.values()) {
    // A victim not met again is gone already; after a walk cut short, only what it unlinked counts.
    const gone = !failed.has(victim.ino) && (unlinked.has(victim.ino) || !result.timedOut);
    if (!gone) {
      result.failed++;
      continue;
    }
    result.removed++;
    result.removedBytes += victim.bytes;
    result.after -= victim.bytes;
    if (victim.used) result.removedUsed++;
  }
}

function emptyResult(before: number): TrimResult {
  return { before, after: before, removed: 0, removedBytes: 0, removedUsed: 0, failed: 0 };
}

/**
 * Removes the file `name` of `dir` if it is still the regular file measured (inode `ino`): a
 * name swapped meanwhile (a directory, a symlink, another file) is left alone. Gone already
 * counts as removed.
 */
function removeName(dir: Dir, name: EntryName, ino: number): boolean {
  const stat = dir.lstat(name);
  if (!stat) return true;
  if (!stat.isFile() || stat.ino !== ino) return false;
  try {
    fs.unlinkSync(dir.at(name));
    return true;
  } catch (error) {
    // EBUSY: a file bind-mounted over it; the mount and what it shows stay as they are.
    return errorCode(error) === 'ENOENT';
  }
}

/** How a trim reads in a log. */
export function describeTrim(result: TrimResult, maxBytes: number): string {
  const limit = `warm-max-size ${humanBytes(maxBytes)}`;
  if (result.hidden) {
    const more = result.hidden.count > 1 ? ` and ${result.hidden.count - 1} more` : '';
    return `not measured: ${result.hidden.first}${more}; what runlane cannot see into counts as over ${limit}, so the lane is not parked`;
  }
  if (result.timedOut && result.removed === 0)
    return `not trimmed: measuring it took longer than ${TRIM_BUDGET_MS / 1000} s (${humanBytes(result.before)} counted by then)`;
  if (result.removed === 0 && result.failed === 0) return `${humanBytes(result.before)}, within ${limit}`;
  const used =
    result.removedUsed > 0
      ? `; ${result.removedUsed} of them used by this job (one run needs more than ${limit}: raise it)`
      : '';
  const failed = result.failed > 0 ? `; ${result.failed} could not be removed` : '';
  const cut = result.timedOut ? `; stopped after ${TRIM_BUDGET_MS / 1000} s` : '';
  return `trimmed from ${humanBytes(result.before)} to ${humanBytes(result.after)} (${limit}): removed ${result.removed} file${result.removed === 1 ? '' : 's'} (${humanBytes(result.removedBytes)}), least recently used first${used}${failed}${cut}`;
}

/**
 * Trims the lane `key` under `root` before it is parked or uploaded (undefined when there is
 * no such lane any more): "used" means since the lane was opened (its metadata's creation time, written by main under the lease; a second
 * of slack for clocks that round). Without that time every file counts as unused.
 */
export function trimForPark(root: string, key: string, maxBytes: number): TrimResult | undefined {
  const layout = new Layout(root);
  try {
    // Gone already (a step removed it): post says so; there is nothing to trim.
    if (!layout.dir('lanes').exists(key)) return undefined;
    const created = Date.parse(layout.readMeta(key)?.created ?? '');
    const stamp = Number.isFinite(created) ? created - 1000 : Number.POSITIVE_INFINITY;
    return trimLane(layout.dir('lanes'), key, maxBytes, stamp);
  } finally {
    layout.close();
  }
}
