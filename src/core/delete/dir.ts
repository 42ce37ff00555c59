/**
 * Directories opened without following symlinks, and everything done inside them (deletes,
 * renames, mode changes, walks) relative to the opened descriptor, in the manner of GNU rm's fts and
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
import { errorCode, errorMessage } from '../common/errors.js';
import { O_PATH } from './open-regular.js';

const C = fs.constants;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** A directory as selfForChild names it for a child process. */
const HANDED = /^\/proc\/\d+\/fd\/\d+$/;
/** Deeper than this, a tree is reported rather than walked (each level holds a descriptor open). */
export const MAX_DEPTH = 400;

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

export function checkName(name: EntryName): EntryName {
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
export interface ChmodGuard {
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
