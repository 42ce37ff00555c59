import fs from 'node:fs';
import { errorCode, SettingError } from './errors.js';
import { Dir, humanBytes, MAX_DEPTH, type EntryName } from './remove.js';
import { Layout } from './layout.js';
import { parseSpace } from './units.js';

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
}

/** `warm-max-size`: a size (`20G`, G = GiB), or `off` for no limit (undefined). */
export function parseWarmMaxSize(setting: string, value: string): number | undefined {
  const text = value.trim() || '20G';
  const target = parseSpace(setting, text);
  if (!('bytes' in target)) throw new SettingError(setting, value, 'a size like 20G or 500M (G = GiB), or off');
  return target.bytes === 0 ? undefined : target.bytes;
}

interface Candidate {
  /** Each name of the file in the lane: its directory (an index into the walk's list) and name. */
  names: { dir: number; name: EntryName }[];
  ino: number;
  bytes: number;
  /** Latest of access and modification time, in ms. */
  time: number;
  used: boolean;
}

/**
 * Trims the lane `key` (a directory inside `lanes`) to `maxBytes`, removing files not used
 * since `stamp` (ms) first. Walked like a delete: through opened directories, never following
 * a symlink, never entering another mount; only regular files are removed, each by name
 * inside its opened directory. The caller holds the lane's lease.
 */
export function trimLane(lanes: Dir, key: string, maxBytes: number, stamp: number): TrimResult {
  const lane = lanes.openChild(key);
  try {
    return trimIn(lane, maxBytes, stamp);
  } finally {
    lane.close();
  }
}

function trimIn(lane: Dir, maxBytes: number, stamp: number): TrimResult {
  // Directories as paths of names from the lane, so a file is found again without holding
  // thousands of descriptors open.
  const dirs: EntryName[][] = [[]];
  const candidates: Candidate[] = [];
  const byInode = new Map<string, Candidate>();
  const seen = new Set<string>();
  // The lane directory itself counts, as du counts it.
  let before = lane.stat.blocks * 512;
  const visit = (dir: Dir, dirIndex: number, depth: number) => {
    for (const entry of dir.entries()) {
      const stat = dir.lstat(entry.name);
      if (!stat) continue;
      const inode = `${stat.dev}:${stat.ino}`;
      if (stat.nlink > 1 && !stat.isDirectory()) {
        // Hard links (cargo uplifts binaries this way): the inode counts once, and is freed
        // only when every name of it in the lane is removed.
        const known = byInode.get(inode);
        if (known) {
          known.names.push({ dir: dirIndex, name: entry.name });
          continue;
        }
      }
      if (!seen.has(inode)) before += stat.blocks * 512;
      if (stat.isFile()) {
        const time = Math.max(stat.atimeMs, stat.mtimeMs);
        const candidate: Candidate = {
          names: [{ dir: dirIndex, name: entry.name }],
          ino: stat.ino,
          bytes: stat.blocks * 512,
          time,
          used: time >= stamp,
        };
        candidates.push(candidate);
        if (stat.nlink > 1) byInode.set(inode, candidate);
        continue;
      }
      if (!stat.isDirectory() || depth >= MAX_DEPTH) continue;
      let child: Dir;
      try {
        child = dir.openChild(entry.name);
      } catch {
        continue;
      }
      try {
        if (!lane.sameMount(child)) continue;
        seen.add(inode);
        dirs.push([...dirs[dirIndex], entry.name]);
        visit(child, dirs.length - 1, depth + 1);
      } catch {
        // An unreadable directory keeps what it holds.
      } finally {
        child.close();
      }
    }
  };
  visit(lane, 0, 0);
  const result: TrimResult = { before, after: before, removed: 0, removedBytes: 0, removedUsed: 0, failed: 0 };
  if (before <= maxBytes) return result;

  candidates.sort((a, b) => Number(a.used) - Number(b.used) || a.time - b.time);
  const victims: Candidate[] = [];
  let over = before - maxBytes;
  for (const candidate of candidates) {
    if (over <= 0) break;
    victims.push(candidate);
    over -= candidate.bytes;
  }
  // Every name of every victim, directory by directory: each directory is opened once.
  const names = victims.flatMap((victim) => victim.names.map((name) => ({ victim, ...name })));
  names.sort((a, b) => a.dir - b.dir);
  const failed = new Set<Candidate>();
  for (let i = 0; i < names.length;) {
    const dirIndex = names[i].dir;
    let end = i;
    while (end < names.length && names[end].dir === dirIndex) end++;
    const dir = dirIndex === 0 ? lane : openPath(lane, dirs[dirIndex]);
    try {
      for (; i < end; i++) {
        const { victim, name } = names[i];
        if (!dir || !removeName(dir, name, victim.ino)) failed.add(victim);
      }
    } finally {
      if (dir && dir !== lane) dir.close();
    }
  }
  for (const victim of victims) {
    if (failed.has(victim)) {
      result.failed++;
      continue;
    }
    result.removed++;
    result.removedBytes += victim.bytes;
    result.after -= victim.bytes;
    if (victim.used) result.removedUsed++;
  }
  return result;
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

/** Opens a directory of the lane by its names, refusing symlinks and other mounts on the way. */
function openPath(lane: Dir, names: readonly EntryName[]): Dir | undefined {
  let current: Dir | undefined;
  try {
    for (const name of names) {
      const next = (current ?? lane).openChild(name);
      current?.close();
      current = next;
      if (!lane.sameMount(current)) {
        current.close();
        return undefined;
      }
    }
    return current;
  } catch {
    current?.close();
    return undefined;
  }
}

/** How a trim reads in a log. */
export function describeTrim(result: TrimResult, maxBytes: number): string {
  const limit = `warm-max-size ${humanBytes(maxBytes)}`;
  if (result.removed === 0 && result.failed === 0) return `${humanBytes(result.before)}, within ${limit}`;
  const used =
    result.removedUsed > 0
      ? `; ${result.removedUsed} of them used by this job (one run needs more than ${limit}: raise it)`
      : '';
  const failed = result.failed > 0 ? `; ${result.failed} could not be removed` : '';
  return `trimmed from ${humanBytes(result.before)} to ${humanBytes(result.after)} (${limit}): removed ${result.removed} file${result.removed === 1 ? '' : 's'} (${humanBytes(result.removedBytes)}), least recently used first${used}${failed}`;
}

/**
 * Trims the lane `key` under `root` before it is parked or uploaded: "used" means since the
 * lane was opened (its metadata's creation time, written by main under the lease; a second
 * of slack for clocks that round). Without that time every file counts as unused.
 */
export function trimForPark(root: string, key: string, maxBytes: number): TrimResult {
  const layout = new Layout(root);
  try {
    const created = Date.parse(layout.readMeta(key)?.created ?? '');
    const stamp = Number.isFinite(created) ? created - 1000 : Number.POSITIVE_INFINITY;
    return trimLane(layout.dir('lanes'), key, maxBytes, stamp);
  } finally {
    layout.close();
  }
}
