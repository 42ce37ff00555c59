/**
 * Deleting a tree: the one place runlane deletes, renames or changes permissions, always
 * through directories opened by dir.ts (never a path a job can swap). The delete folder is the
 * audited room: dir.ts (the opened directory), walk.ts (the read-only walker), remove.ts
 * (the delete), parallel.ts (the same delete on worker threads), mounts.ts, open-regular.ts
 * and trash.ts (the root's trash, where lanes go by rename to be deleted later). All but
 * trash.ts import only src/core/common.
 */
import fs from 'node:fs';
import { checkName, Dir, MAX_DEPTH, nameText, type ChmodGuard, type EntryName } from './dir.js';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { errorCode, errorMessage } from '../common/errors.js';
import { currentMounts, describeMount, mountsUnder, type Mount } from './mounts.js';

/** A path that could not be removed, and why (EACCES: another owner; EPERM: immutable; EBUSY: a mount). */
export interface RemoveFailure {
  path: string;
  code: string;
  message: string;
  /** What it takes to remove it, for the human reading the report. */
  hint: string;
}

/** `sudo`: retry what the runner user cannot remove through passwordless `sudo -n`. */
export type Privileged = '' | 'sudo';

export interface RemoveReport {
  removed: boolean;
  failures: RemoveFailure[];
}

/** Renames `name` in `from` to `newName` in `to` (rename(2) never follows either final component). */
export function renameIn(from: Dir, name: string, to: Dir, newName: string): void {
  fs.renameSync(from.at(name), to.at(newName));
}

/** Unlinks a file (never following it); nothing when it is not there. */
export function unlinkIfAny(target: string): void {
  try {
    fs.unlinkSync(target);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

/** The mounts at or below the entry `name` of `dir`, from this process's mount table. */
export function mountsBelow(dir: Dir, name: string): Mount[] {
  return mountsUnder(path.join(dir.realPath(), checkName(name) as string));
}

interface Walk {
  dev: number;
  mountId: number;
  uid: number;
  failures: RemoveFailure[];
  mounts?: Mount[];
  /** Called with 1 for every entry removed (progress). */
  tick?: (entries: number) => void;
  /** The tree's own top directory, while it is being emptied: where too-deep directories are moved up to. */
  top?: Dir;
  /** Names in `top` of directories moved up from MAX_DEPTH, still to remove. */
  hoisted: string[];
}

/**
 * Removes the entry `name` of `parent` and everything below it, never following a symlink,
 * never leaving the parent's mount, and without stopping at the first thing it cannot remove:
 * what resists (a root-owned file, an immutable one, a mount) is recorded with the reason and
 * what it takes, and the rest is removed. A mount is never entered, only reported.
 */
export function removeIn(
  parent: Dir,
  name: string,
  privileged: Privileged = '',
  tick?: (entries: number) => void,
): RemoveReport {
  const walk: Walk = {
    dev: parent.stat.dev,
    mountId: parent.mountId,
    uid: process.getuid?.() ?? -1,
    failures: [],
    tick,
    hoisted: [],
  };
  removeEntry(parent, name, undefined, walk, 0);
  if (walk.failures.length > 0 && privileged === 'sudo' && existsOrUnknown(parent, name)) {
    const note = removeWithSudo(parent, name);
    const notes = new Map(walk.failures.map((failure) => [failure.path, note]));
    walk.failures = [];
    removeEntry(parent, name, undefined, walk, 0);
    for (const failure of walk.failures) {
      const why = notes.get(failure.path);
      if (why) failure.hint = `${why}; ${failure.hint}`;
    }
  }
  let removed = false;
  try {
    removed = !parent.exists(name);
  } catch (error) {
    // Cannot even be looked at (its directory lost its search permission meanwhile).
    if (walk.failures.length === 0) record(walk, path.join(parent.path, name), error, parent.stat.uid);
  }
  return { removed, failures: walk.failures };
}

/** The owner of an entry, for a hint; undefined when it cannot be looked at. */
function ownerOf(parent: Dir, name: EntryName): number | undefined {
  try {
    return parent.lstat(name)?.uid;
  } catch {
    return undefined;
  }
}

/** Whether an entry exists; true when it cannot even be looked at. */
function existsOrUnknown(parent: Dir, name: string): boolean {
  try {
    return parent.exists(name);
  } catch {
    return true;
  }
}

/**
 * One `sudo -n rm -rf --one-file-system` of what the runner user could not remove, given the
 * entry through our own descriptor (/proc/<our pid>/fd/N/name), so no path a job can swap is
 * followed to reach it; rm's own walk never follows symlinks. Never run across a mount.
 * Returns why it did not help, or undefined.
 */
function removeWithSudo(parent: Dir, name: string): string | undefined {
  const mounts = mountsBelow(parent, name);
  if (mounts.length > 0) return `sudo was not tried: ${mounts.length} file systems are mounted inside`;
  const result = spawnSync('sudo', ['-n', 'rm', '-rf', '--one-file-system', '--', parent.atForChild(name)], {
    encoding: 'utf8',
  });
  if (result.error) return `sudo is not available (${errorCode(result.error) ?? result.error.message})`;
  if (result.status !== 0) return `sudo -n rm failed: ${(result.stderr || '').trim() || `exit ${result.status}`}`;
  return undefined;
}

function record(walk: Walk, shown: string, error: unknown, owner?: number): void {
  const code = errorCode(error) ?? 'ERROR';
  walk.failures.push({ path: shown, code, message: errorMessage(error), hint: hintFor(code, owner) });
}

/** Records a mount found at `name` in `parent`, by its mount id or, failing that, its place. */
function mountFailure(walk: Walk, parent: Dir, name: EntryName, mountId?: number): void {
  const shown = path.join(parent.path, nameText(name));
  walk.mounts ??= currentMounts();
  let mount = mountId === undefined ? undefined : walk.mounts.find((each) => each.id === mountId);
  if (!mount) {
    try {
      const real = path.join(parent.realPath(), nameText(name));
      mount = [...walk.mounts].reverse().find((each) => each.mountPoint === real);
    } catch {
      // Described as "another mount".
    }
  }
  walk.failures.push({
    path: shown,
    code: 'EBUSY',
    message: `a file system is mounted here: ${describeMount(mount)}`,
    hint: `${describeMount(mount)} is mounted here and is never entered: unmount it, then the sweep removes the rest`,
  });
}

/** What an administrator needs to know to remove a path that resisted. */
function hintFor(code: string, owner?: number): string {
  if (code === 'EACCES') {
    const whose = owner === undefined ? 'another user' : `uid ${owner}`;
    return `its directory belongs to ${whose}, not to the runner user (uid ${process.getuid?.() ?? '?'}); files a 'docker run' left as root look like this: an administrator must remove it, or set privileged-cleanup: sudo`;
  }
  if (code === 'EPERM') {
    return 'immutable or append-only (chattr +i / +a): an administrator must run chattr -i on it; the sweep retries it every time';
  }
  if (code === 'EBUSY' || code === 'EXDEV')
    return 'a file system is mounted here and is never entered: unmount it, then the sweep removes the rest';
  if (code === 'ETOODEEP') return `nested deeper than ${MAX_DEPTH} directories: an administrator must remove it`;
  if (code === 'ENOTEMPTY')
    return 'something was still writing into it while it was deleted; the sweep retries it every time';
  return 'the sweep retries it every time';
}

/** Moves the directory `name` of `parent` into `top` under a new name, queued for removal; false if it cannot be. */
function hoist(parent: Dir, name: EntryName, top: Dir, walk: Walk): boolean {
  for (let attempt = 0; attempt < 100; attempt++) {
    const moved = `.runlane-deep-${process.pid}-${walk.hoisted.length}-${attempt}`;
    if (top.exists(moved)) continue;
    try {
      fs.renameSync(parent.at(name), top.at(moved));
      walk.hoisted.push(moved);
      return true;
    } catch (error) {
      // A mount point cannot be moved: reported as the mount it is, never entered.
      if (errorCode(error) !== 'EBUSY') return false;
      mountFailure(walk, parent, name);
      return true;
    }
  }
  return false;
}

function removeEntry(parent: Dir, name: EntryName, isDir: boolean | undefined, walk: Walk, depth: number): void {
  const shown = path.join(parent.path, nameText(name));
  if (isDir !== true) {
    // unlink never follows the name: a file, a symlink, a socket are removed themselves.
    try {
      fs.unlinkSync(parent.at(name));
      walk.tick?.(1);
      return;
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return;
      // EISDIR: a directory (Linux says so for unlink of one). EBUSY: a file bind-mounted.
      if (code !== 'EISDIR') {
        if (code === 'EBUSY') mountFailure(walk, parent, name);
        else record(walk, shown, error, parent.stat.uid);
        return;
      }
    }
  }
  if (depth >= MAX_DEPTH) {
    // Too deep to hold a descriptor per level: moved up into the tree's own top (the same
    // file system, inside the tree being removed), and removed from there afterwards. A
    // nesting of any depth is removed this way, MAX_DEPTH levels at a time.
    if (walk.top && hoist(parent, name, walk.top, walk)) return;
    walk.failures.push({ path: shown, code: 'ETOODEEP', message: 'too deeply nested', hint: hintFor('ETOODEEP') });
    return;
  }
  let dir: Dir;
  try {
    dir = parent.openChild(name, { chmod: chmodGuard(walk) });
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return;
    // Swapped for a symlink or a file since it was listed: it is removed as what it is now.
    if ((code === 'ELOOP' || code === 'ENOTDIR') && isDir === true)
      return removeEntry(parent, name, false, walk, depth);
    if (code === 'EBUSY') mountFailure(walk, parent, name, (error as { mountId?: number }).mountId);
    else record(walk, shown, error, ownerOf(parent, name));
    return;
  }
  const failuresBefore = walk.failures.length;
  try {
    if (dir.stat.dev !== walk.dev || dir.mountId !== walk.mountId) {
      mountFailure(walk, parent, name, dir.mountId);
      return;
    }
    makeOwnWritable(dir, walk);
    let entries: fs.Dirent<string>[] | fs.Dirent<Buffer>[];
    try {
      entries = dir.entries();
    } catch (error) {
      record(walk, shown, error, dir.stat.uid);
      return;
    }
    if (depth === 0) walk.top = dir;
    for (const entry of entries) removeEntry(dir, entry.name, entry.isDirectory(), walk, depth + 1);
    if (depth === 0) {
      for (let next = walk.hoisted.shift(); next !== undefined; next = walk.hoisted.shift())
        removeEntry(dir, next, true, walk, 1);
      walk.top = undefined;
    }
  } finally {
    dir.close();
  }
  try {
    fs.rmdirSync(parent.at(name));
    walk.tick?.(1);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return;
    // ENOTEMPTY after failures below only repeats them; without any, something was added
    // meanwhile (a process still writing): that is a failure of its own, retried by the sweep.
    if (code === 'ENOTEMPTY' && walk.failures.length > failuresBefore) return;
    if (code === 'EBUSY') mountFailure(walk, parent, name);
    else record(walk, shown, error, parent.stat.uid);
  }
}

/** What openChild may fix the mode of (see openDirFd): nothing as root, who needs no fixing. */
function chmodGuard(walk: Walk): ChmodGuard | undefined {
  return walk.uid === 0 ? undefined : { dev: walk.dev, mountId: walk.mountId, uid: walk.uid };
}

/** A directory we own but may not write (a read-only Go module tree): fixed on the descriptor. */
function makeOwnWritable(dir: Dir, walk: Walk): void {
  if (walk.uid === 0 || dir.stat.uid !== walk.uid || (dir.stat.mode & 0o700) === 0o700) return;
  try {
    fs.fchmodSync(dir.fd, (dir.stat.mode & 0o7777) | 0o700);
  } catch {
    // The failures that matter are reported by the removals that follow.
  }
}

/**
 * Unlinks of one thread's first pass in flight at once through libuv's thread pool (shared by
 * every thread of the process), besides the one the thread makes itself. An unlink of a file
 * can wait for the disk rather than the CPU: ext4 without a journal, mounted with `discard`
 * (this project's CI machine), discards the freed block inside the unlink, one at a time.
 */
const IN_FLIGHT = 4;

/** Lets the event loop take the completions in (a pending unlink frees its slot). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Unlinks the entries `names` of `dir` (never following them): up to IN_FLIGHT at once in the
 * thread pool and, whenever that many are in flight, one more on this thread, so the waits
 * overlap instead of adding up. It never throws, and returns only when nothing it started
 * is still in flight (the caller then closes `dir`: a descriptor closed earlier could be
 * reused for another directory while an unlink still resolves a name through its number).
 * What fails is left for the final pass; names that are directories (EISDIR) are returned.
 */
async function unlinkMany(dir: Dir, names: EntryName[], count: (entries: number) => void): Promise<EntryName[]> {
  const directories: EntryName[] = [];
  const settle = (name: EntryName, error?: unknown) => {
    if (error === undefined) count(1);
    else if (errorCode(error) === 'EISDIR') directories.push(name);
  };
  const pending = new Set<Promise<void>>();
  try {
    for (const name of names) {
      if (pending.size < IN_FLIGHT) {
        const unlink: Promise<void> = fs.promises
          .unlink(dir.at(name))
          .then(
            () => settle(name),
            (error: unknown) => settle(name, error),
          )
          .finally(() => pending.delete(unlink));
        pending.add(unlink);
        continue;
      }
      try {
        fs.unlinkSync(dir.at(name));
        settle(name);
      } catch (error) {
        settle(name, error);
      }
      await turn();
    }
  } finally {
    await Promise.allSettled(pending);
  }
  return directories;
}

/**
 * The first pass of a threaded delete (see removeInParallel), in a worker thread: the entries
 * `files` and `directories` of `parent` (as readdir typed them) and everything below them,
 * walked as removeEntry walks (opened without following symlinks, never leaving the parent's
 * mount, modes fixed only through descriptors), with each directory's unlinks overlapped by
 * unlinkMany. It reports nothing and never throws: what it leaves, the final single-threaded
 * pass removes or reports.
 */
export async function clearIn(
  parent: Dir,
  files: EntryName[],
  directories: EntryName[],
  count: (entries: number) => void,
): Promise<void> {
  const walk: Walk = {
    dev: parent.stat.dev,
    mountId: parent.mountId,
    uid: process.getuid?.() ?? -1,
    failures: [],
    hoisted: [],
  };
  const more = await unlinkMany(parent, files, count);
  for (const name of [...directories, ...more]) await clearDir(parent, name, walk, 0, count);
}

async function clearDir(
  parent: Dir,
  name: EntryName,
  walk: Walk,
  depth: number,
  count: (entries: number) => void,
): Promise<void> {
  if (depth >= MAX_DEPTH) return;
  let dir: Dir;
  try {
    dir = parent.openChild(name, { chmod: chmodGuard(walk) });
  } catch {
    return;
  }
  try {
    if (dir.stat.dev !== walk.dev || dir.mountId !== walk.mountId) return;
    makeOwnWritable(dir, walk);
    let entries: fs.Dirent<string>[] | fs.Dirent<Buffer>[];
    try {
      entries = dir.entries();
    } catch {
      return;
    }
    const subdirs: EntryName[] = [];
    const files: EntryName[] = [];
    for (const entry of entries) (entry.isDirectory() ? subdirs : files).push(entry.name);
    subdirs.push(...(await unlinkMany(dir, files, count)));
    for (const subdir of subdirs) await clearDir(dir, subdir, walk, depth + 1, count);
  } finally {
    dir.close();
  }
  try {
    fs.rmdirSync(parent.at(name));
    count(1);
  } catch {
    // Left for the final pass.
  }
}
