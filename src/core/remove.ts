/**
 * Everything runlane does that deletes, renames or changes permissions lives here, and works
 * relative to directories opened without following symlinks, in the manner of GNU rm's fts and
 * of Rust's remove_dir_all after CVE-2022-21658.
 *
 * Node has no openat(2) or unlinkat(2). Linux gives the same thing through procfs: the path
 * `/proc/self/fd/N/name` is resolved from the directory that descriptor N has open (a "magic
 * link" to the object itself, not a path that is looked up again), so `unlink`, `rmdir`,
 * `rename` and `open(O_NOFOLLOW)` on it act on the entry `name` inside that very directory,
 * wherever it has been moved and whatever a job has put at its old path since. Every directory
 * is entered by opening it that way with O_NOFOLLOW | O_DIRECTORY, then checked on the opened
 * descriptor: a directory, on the same device, and on the same mount (the mount id from
 * /proc/self/fdinfo, which tells a same-device bind mount apart where st_dev cannot). Modes
 * are changed only through the descriptor. No path a job can swap is ever followed.
 *
 * Why this and not a native addon or a helper binary: it needs no compiled code per Node ABI
 * and CPU (the action runs on whatever node and machine a runner has), no extra runtime on the
 * runner, and the kernel does the same lookups as with openat. It needs /proc, which Linux
 * runners and containers have; without it runlane refuses to delete rather than guess.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { errorCode, errorMessage } from './errors.js';
import { currentMounts, describeMount, mountsUnder, type Mount } from './mounts.js';
import { O_PATH } from './open-regular.js';

const C = fs.constants;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** A directory as selfForChild names it for a child process. */
const HANDED = /^\/proc\/\d+\/fd\/\d+$/;
/** Deeper than this, a tree is reported rather than walked (each level holds a descriptor open). */
export const MAX_DEPTH = 400;

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

/**
 * A directory entry's name: a string, or the raw bytes readdir gave (names need not be UTF-8,
 * and a name decoded to U+FFFD and back would name another file, or none).
 */
export type EntryName = string | Buffer;

/** True for a name that is one path component: not empty, `.` or `..`, no `/` or NUL. */
export function isEntryName(name: EntryName): boolean {
  const text = typeof name === 'string' ? name : name.toString('latin1');
  return text !== '' && text !== '.' && text !== '..' && !text.includes('/') && !text.includes('\0');
}

function checkName(name: EntryName): EntryName {
  if (!isEntryName(name)) throw new Error(`refusing ${JSON.stringify(String(name))}: not a single path component`);
  return name;
}

/** `prefix/name` as a path argument: a string, or bytes when the name is bytes. */
function joinName(prefix: string, name: EntryName): string | Buffer {
  checkName(name);
  return typeof name === 'string' ? `${prefix}/${name}` : Buffer.concat([Buffer.from(`${prefix}/`), name]);
}

/** A name for humans and reports (bytes that are not UTF-8 show as U+FFFD; `shown()` escapes the rest). */
export function nameText(name: EntryName): string {
  return typeof name === 'string' ? name : name.toString('utf8');
}

/** What a directory must match before runlane changes its mode through a handle: our mount, our uid. */
interface ChmodGuard {
  dev: number;
  mountId: number;
  uid: number;
}

/** The mount id of an open descriptor, from /proc/self/fdinfo (Linux 3.15+). */
function mountIdOf(fd: number): number {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch (error) {
    throw new Error(`runlane needs /proc to check mounts before it deletes anything: ${errorMessage(error)}`);
  }
  const match = /^mnt_id:\s*(\d+)/m.exec(text);
  if (!match) throw new Error('runlane needs a kernel that reports mnt_id in /proc/self/fdinfo (Linux 3.15 or later)');
  return Number(match[1]);
}

/** A directory opened by openDirFd, with its mount id when the opening read it already. */
interface OpenedDir {
  fd: number;
  mountId?: number;
}

/**
 * Opens a directory with O_NOFOLLOW. With `mountId`, an O_PATH handle is taken first (it opens
 * nothing: no FUSE OPENDIR or GETATTR, which a job's daemon could leave unanswered and hang this
 * process uninterruptibly) and a directory on another mount is refused (EBUSY, with its
 * `mountId`) before anything in it is asked. With `guard`, a directory we cannot read is made
 * readable first, but only one on the guarded mount and device that the guarded uid owns: a
 * root-owned directory keeps its EACCES, and a mount is never touched.
 */
function openDirFd(target: string | Buffer, guard: ChmodGuard | undefined, mountId?: number): OpenedDir {
  if (mountId === undefined) {
    try {
      return { fd: fs.openSync(target, DIR_FLAGS) };
    } catch (error) {
      if (errorCode(error) !== 'EACCES' || !guard) throw error;
    }
  }
  const handle = fs.openSync(target, O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW);
  try {
    const found = mountIdOf(handle);
    if (mountId !== undefined && found !== mountId) {
      throw Object.assign(new Error('a file system is mounted here'), { code: 'EBUSY', mountId: found });
    }
    // The handle names the very directory: opened through it, nothing can be swapped in between.
    const self = `/proc/self/fd/${handle}`;
    let denied: unknown;
    try {
      return { fd: fs.openSync(self, C.O_RDONLY | C.O_DIRECTORY), mountId: found };
    } catch (error) {
      if (errorCode(error) !== 'EACCES' || !guard) throw error;
      denied = error;
    }
    // A directory we own with no read or search permission (chmod 000, a read-only module
    // cache): checked on the handle, which needs none, its mode fixed through it, then opened.
    const stat = fs.fstatSync(handle);
    if (stat.dev !== guard.dev || found !== guard.mountId) {
      throw Object.assign(new Error('a file system is mounted here'), { code: 'EBUSY', mountId: found });
    }
    if (stat.uid !== guard.uid) throw denied;
    fs.chmodSync(self, (stat.mode & 0o7777) | 0o700);
    return { fd: fs.openSync(self, C.O_RDONLY | C.O_DIRECTORY), mountId: found };
  } finally {
    fs.closeSync(handle);
  }
}

/**
 * An open directory, entered without following symlinks, with what it was checked against:
 * its device, inode, owner and mount id as the descriptor reports them.
 */
export class Dir {
  private open = true;

  private constructor(
    readonly fd: number,
    /** Its path, for humans and reports only: operations go through `at()`. */
    readonly path: string,
    readonly stat: fs.Stats,
    readonly mountId: number,
    /** A descriptor another thread of this process owns: never closed through this object. */
    private readonly borrowed = false,
  ) {
    if (!borrowed) unclosed.register(this, fd, this);
  }

  /**
   * A directory another thread of this process opened (descriptors are shared by all
   * threads), checked again here: the same device, inode and mount as its owner recorded.
   */
  static borrow(fd: number, shown: string, expected: DirIdentity): Dir {
    const stat = fs.fstatSync(fd);
    const mountId = mountIdOf(fd);
    if (!stat.isDirectory() || stat.dev !== expected.dev || stat.ino !== expected.ino || mountId !== expected.mountId) {
      throw new Error(`descriptor ${fd} is no longer ${shown}`);
    }
    return new Dir(fd, shown, stat, mountId, true);
  }

  /** What `borrow` checks a shared descriptor against. */
  get identity(): DirIdentity {
    return { dev: this.stat.dev, ino: this.stat.ino, mountId: this.mountId };
  }

  /** Opens an absolute path whose last component must not be a symlink. */
  static open(target: string): Dir {
    const { fd } = openDirFd(target, undefined);
    return Dir.wrap(fd, target);
  }

  /**
   * Opens a directory another process of ours handed over as `/proc/<pid>/fd/<n>`
   * (selfForChild): that names the very directory it holds open, wherever it is now, so the
   * link is followed (only such a name is accepted); any other path opens as `open` does.
   */
  static openHanded(target: string): Dir {
    if (!HANDED.test(target)) return Dir.open(target);
    return Dir.wrap(fs.openSync(target, C.O_RDONLY | C.O_DIRECTORY), target);
  }

  private static wrap(fd: number, shown: string, mountId?: number): Dir {
    try {
      return new Dir(fd, shown, fs.fstatSync(fd), mountId ?? mountIdOf(fd));
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /**
   * Opens the directory `name` inside this one; a symlink there fails (ELOOP / ENOTDIR), and
   * a directory on another mount (EBUSY, with its `mountId`) is never opened, only named by a
   * handle (see openDirFd). `acrossMounts` opens it anyway, for callers that check and say so.
   */
  openChild(name: EntryName, options: { chmod?: ChmodGuard; acrossMounts?: boolean } = {}): Dir {
    const { fd, mountId } = openDirFd(this.at(name), options.chmod, options.acrossMounts ? undefined : this.mountId);
    return Dir.wrap(fd, path.join(this.path, nameText(name)), mountId);
  }

  /** Whether `other` lies on the same file system and the same mount as this directory. */
  sameMount(other: Dir): boolean {
    return other.stat.dev === this.stat.dev && other.mountId === this.mountId;
  }

  /** The entry `name` inside this directory, as a path for this process's system calls. */
  at(name: string): string;
  at(name: EntryName): string | Buffer;
  at(name: EntryName): string | Buffer {
    if (!this.open) throw new Error(`${this.path} is closed`);
    return joinName(`/proc/self/fd/${this.fd}`, name);
  }

  /** The same, for a child process of ours (its /proc/self is its own). */
  atForChild(name: string): string {
    return joinName(`/proc/${process.pid}/fd/${this.fd}`, name) as string;
  }

  /** This directory itself, for a child process of ours (cp, sudo rm). */
  selfForChild(): string {
    return `/proc/${process.pid}/fd/${this.fd}`;
  }

  /**
   * Runs `body` with this directory as the current directory (entered through its descriptor,
   * so it is the directory opened, wherever it is now): relative names then resolve in it as
   * they would from the descriptor, without a /proc path per call. The previous directory is
   * restored. Where the process cannot change directory (a worker thread), `body` is not run
   * and undefined is returned: callers then use `at()`.
   */
  within<T>(body: () => T): T | undefined {
    // The way back is a descriptor, not a path: a directory removed or swapped meanwhile is
    // never followed, and the process never stays inside this one.
    let back: number;
    try {
      back = fs.openSync('.', C.O_RDONLY | C.O_DIRECTORY);
    } catch {
      return undefined;
    }
    try {
      try {
        process.chdir(`/proc/self/fd/${this.fd}`);
      } catch {
        return undefined;
      }
      try {
        return body();
      } finally {
        try {
          process.chdir(`/proc/self/fd/${back}`);
        } catch {
          process.chdir('/');
        }
      }
    } finally {
      fs.closeSync(back);
    }
  }

  /** Where the directory is now (it may have been moved since it was opened). */
  realPath(): string {
    return fs.readlinkSync(`/proc/self/fd/${this.fd}`).replace(/ \(deleted\)$/, '');
  }

  /**
   * The entries, named as strings; when a name is not valid UTF-8 (it decodes with U+FFFD, and
   * that string would name another file, or none), all of them with their raw bytes instead.
   */
  entries(): fs.Dirent<string>[] | fs.Dirent<Buffer>[] {
    const self = `/proc/self/fd/${this.fd}`;
    const entries = fs.readdirSync(self, { withFileTypes: true });
    if (!entries.some((entry) => entry.name.includes('\uFFFD'))) return entries;
    return fs.readdirSync(self, { withFileTypes: true, encoding: 'buffer' });
  }

  names(): string[] {
    return fs.readdirSync(`/proc/self/fd/${this.fd}`);
  }

  /** Each entry's name, read a few hundred at a time: a directory of 100,000 is never one array. */
  eachName(each: (name: string) => void): void {
    const dir = fs.opendirSync(`/proc/self/fd/${this.fd}`, { bufferSize: 256 });
    try {
      for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) each(entry.name);
    } finally {
      dir.closeSync();
    }
  }

  /** lstat of an entry (never follows it), or undefined when there is none. */
  lstat(name: EntryName): fs.Stats | undefined {
    return fs.lstatSync(this.at(name), { throwIfNoEntry: false });
  }

  exists(name: EntryName): boolean {
    return this.lstat(name) !== undefined;
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    if (this.borrowed) return;
    unclosed.unregister(this);
    fs.closeSync(this.fd);
  }
}

/** A directory's identity as its descriptor reports it. */
export interface DirIdentity {
  dev: number;
  ino: number;
  mountId: number;
}

/** A safety net for long-lived processes (tests): the descriptor of a Dir dropped unclosed. */
const unclosed = new FinalizationRegistry<number>((fd) => {
  try {
    fs.closeSync(fd);
  } catch {
    // Closed already.
  }
});

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

export interface TreeSize {
  bytes: number;
  files: number;
}

/**
 * Disk usage of the entry `name` of `parent` (allocated blocks, as `du` counts), walked like a
 * delete (see walkTree). Read-only; what cannot be read counts as itself.
 */
export function treeSizeIn(parent: Dir, name: EntryName, tick?: (entries: number, bytes: number) => void): TreeSize {
  const total: TreeSize = { bytes: 0, files: 0 };
  const count = (stat: fs.Stats) => {
    total.bytes += stat.blocks * 512;
    tick?.(1, stat.blocks * 512);
    if (!stat.isDirectory()) total.files++;
  };
  const stat = parent.lstat(name);
  if (!stat) return total;
  count(stat);
  if (!stat.isDirectory()) return total;
  let top: Dir;
  try {
    top = parent.openChild(name);
  } catch {
    return total;
  }
  try {
    if (parent.sameMount(top) && top.stat.ino === stat.ino) walkTree(top, (_dir, _name, each) => count(each));
  } catch {
    // An unreadable directory counts as its own size only.
  } finally {
    top.close();
  }
  return total;
}

/** What walkTree does where a plain walk would skip something. */
export interface WalkOptions {
  /**
   * Below the top: a directory that cannot be opened or read, an entry that cannot be looked
   * at, a directory that is not the one its entry showed (a swap) or is met twice: skipped,
   * or with `strict`, the walk stops with an error. The top's own listing always throws.
   */
  strict?: boolean;
  /** A directory on another mount (never entered): told here, then skipped. */
  onMount?: (dir: Dir, name: EntryName) => void;
  /**
   * Without `strict`: what the walk could not see into, told here, then skipped: a directory
   * that cannot be opened or listed (`name` undefined: `dir` itself), an entry that cannot be
   * looked at, a directory at MAX_DEPTH. A measure that must not take these for empty counts them.
   */
  onHidden?: (dir: Dir, name: EntryName | undefined, why: string) => void;
}

/**
 * Walks the tree below the opened directory `top`, depth first, calling `each` for every
 * entry with its lstat (a directory before what it holds; `depth` 0 for the top's own
 * entries): through opened directories (names resolve inside them, as openat would), never
 * following a symlink, never entering another mount, each directory once (one moved by a
 * racing process and met again is skipped), and no directory at depth MAX_DEPTH or more
 * (as the delete walker). `each` returns false to keep the walk out of a directory, and may
 * throw to stop it. Entries gone meanwhile are not reported.
 */
export function walkTree(
  top: Dir,
  each: (dir: Dir, name: EntryName, stat: fs.Stats, depth: number) => boolean | void,
  options: WalkOptions = {},
): void {
  const seen = new Set<number>([top.stat.ino]);
  // The mount points below the top, from the mount table (no file system is asked): their
  // names are never looked at, since an lstat of a FUSE mount's root asks its daemon, which
  // a job may have left never answering. A mount made during the walk is caught by openChild.
  const mountPoints = mountPointsBelow(top);
  const visit = (dir: Dir, depth: number) => {
    let entries: fs.Dirent<string>[] | fs.Dirent<Buffer>[];
    try {
      entries = dir.entries();
    } catch (error) {
      if (options.strict || dir === top) throw error;
      options.onHidden?.(dir, undefined, `cannot be listed (${errorCode(error) ?? errorMessage(error)})`);
      return;
    }
    if (mountPoints.size > 0) {
      let here: string | undefined;
      try {
        here = dir.realPath();
      } catch {
        // Unknown: every entry is looked at as usual.
      }
      const kept: (fs.Dirent<string> | fs.Dirent<Buffer>)[] = [];
      for (const entry of entries) {
        if (here !== undefined && mountPoints.has(path.join(here, nameText(entry.name))))
          options.onMount?.(dir, entry.name);
        else kept.push(entry);
      }
      entries = kept as fs.Dirent<string>[];
    }
    // An entry that cannot be looked at (a directory without search permission): unknown.
    const lstat = (look: () => fs.Stats | undefined, name: EntryName): fs.Stats | undefined => {
      try {
        return look();
      } catch (error) {
        if (options.strict) throw error;
        options.onHidden?.(dir, name, `cannot be looked at (${errorCode(error) ?? errorMessage(error)})`);
        return undefined;
      }
    };
    // A directory's names looked up from inside it at once; one by one where the process
    // cannot change directory (a worker thread, a directory it may not enter).
    const stats =
      dir.within(() =>
        entries.map((entry) => lstat(() => fs.lstatSync(entry.name, { throwIfNoEntry: false }), entry.name)),
      ) ?? entries.map((entry) => lstat(() => dir.lstat(entry.name), entry.name));
    for (let i = 0; i < entries.length; i++) {
      const { name } = entries[i];
      const stat = stats[i];
      if (!stat) continue;
      if (each(dir, name, stat, depth) === false || !stat.isDirectory()) continue;
      if (depth >= MAX_DEPTH) {
        options.onHidden?.(dir, name, `nested ${MAX_DEPTH} directories deep`);
        continue;
      }
      let child: Dir;
      try {
        child = dir.openChild(name);
      } catch (error) {
        // Another mount: refused by its handle, before anything in it was asked.
        const code = errorCode(error);
        if (code === 'EBUSY') options.onMount?.(dir, name);
        else if (options.strict && code !== 'ENOENT') throw error;
        else if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR')
          options.onHidden?.(dir, name, `cannot be opened (${code ?? errorMessage(error)})`);
        continue;
      }
      try {
        // A mount first: a bind mount of a directory already walked is still a mount.
        if (!top.sameMount(child)) {
          options.onMount?.(dir, name);
          continue;
        }
        // The directory opened must be the one measured, and new to this walk.
        if (child.stat.ino !== stat.ino || seen.has(child.stat.ino)) {
          if (options.strict) throw new Error(`${child.path} changed while it was walked`);
          continue;
        }
        seen.add(child.stat.ino);
        visit(child, depth + 1);
      } finally {
        child.close();
      }
    }
  };
  visit(top, 0);
}

/** The mount table, read at most once a second (a status --sizes walks every lane). */
let mountTable: { at: number; mounts: Mount[] } | undefined;

/** The mount points strictly below an opened directory, as this process sees them. */
function mountPointsBelow(top: Dir): Set<string> {
  try {
    if (!mountTable || Date.now() - mountTable.at > 1000) mountTable = { at: Date.now(), mounts: currentMounts() };
    const real = top.realPath();
    return new Set(
      mountsUnder(real, mountTable.mounts)
        .map((mount) => mount.mountPoint)
        .filter((point) => point !== real),
    );
  } catch {
    return new Set();
  }
}

/** Human-readable bytes: 0 B, 512 B, 1.5 KiB, 20.0 GiB. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
