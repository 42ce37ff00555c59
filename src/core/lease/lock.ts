/**
 * The lease: a kernel lock (flock(2)) per lane, whose release is its holder's death. This
 * folder owns the lock (lock.ts), the machine's list of held locks and what it proves about a
 * lane (held.ts, liveness.ts), and the process that holds a job's lease (holder.ts starts it,
 * hold.ts is its life). It may import src/core/common, src/core/delete and src/core/lane.
 */
import fs from 'node:fs';
import { spawnSync, type SpawnSyncOptionsWithStringEncoding, type SpawnSyncReturns } from 'node:child_process';
import { errorCode, errorMessage } from '../common/errors.js';
import { openRegular } from '../delete/open-regular.js';
import { unlinkIfAny } from '../delete/remove.js';

/**
 * An exclusive kernel lock (flock(2)) on a lock file. Node has no flock, so a short-lived
 * `flock -n 3` child locks an open file description that this process owns: the lock is
 * then ours until we close it or die, exactly as if we had called flock ourselves. Its
 * release is its holder's death, which is what makes liveness decidable without heuristics.
 */
export class Lock {
  private constructor(
    readonly file: LockFile,
    private fd: number | undefined,
  ) {}

  /** The lock file's path, for humans and for the holder's own check. */
  get path(): string {
    return this.file.shown;
  }

  /**
   * Takes the lock without waiting, or returns undefined if someone holds it. The file is
   * created if missing, never through a symlink, and opened read-only: flock(2) needs no more,
   * so a lock file another user made (root in a container job) can still be probed. After
   * locking, checks that the path still names the locked file (a reaper may have unlinked it
   * while we waited): a lock on an unlinked file is worthless. A lock file that cannot be
   * opened (a symlink, a directory, another user's 0600 file) throws: that is never "free".
   */
  static tryAcquire(file: LockFile): Lock | undefined {
    for (let attempt = 0; attempt < 5; attempt++) {
      const fd = openLockFile(file, true);
      if (!flockNonBlocking(fd)) {
        fs.closeSync(fd);
        return undefined;
      }
      if (sameFile(fd, file.at)) return new Lock(file, fd);
      fs.closeSync(fd);
    }
    return undefined;
  }

  /**
   * tryAcquire for many lock files with one process instead of one per lock: a sweep that
   * reaps a thousand lanes spends its time deleting, not starting `flock`. Each result is the
   * lock, undefined (held by someone else, or with `existing`, missing), or the error that
   * tryAcquire would have thrown for that file.
   */
  static tryAcquireMany(files: readonly LockFile[], existing = false): (Lock | undefined | Error)[] {
    const results: (Lock | undefined | Error)[] = files.map(() => undefined);
    for (let start = 0; start < files.length; start += LOCK_BATCH) {
      const batch: { index: number; fd: number }[] = [];
      for (let index = start; index < Math.min(files.length, start + LOCK_BATCH); index++) {
        try {
          if (existing && !fs.lstatSync(files[index].at, { throwIfNoEntry: false })) continue;
          batch.push({ index, fd: openLockFile(files[index], true) });
        } catch (error) {
          results[index] = error instanceof Error ? error : new Error(String(error));
        }
      }
      if (batch.length === 0) continue;
      let locked: boolean[];
      try {
        locked = flockMany(batch.map((each) => each.fd));
      } catch (error) {
        // Nothing of this batch is held: its descriptors go, and each file reports the error.
        for (const { index, fd } of batch) {
          fs.closeSync(fd);
          results[index] = error instanceof Error ? error : new Error(String(error));
        }
        continue;
      }
      batch.forEach(({ index, fd }, position) => {
        if (locked[position] && sameFile(fd, files[index].at)) results[index] = new Lock(files[index], fd);
        else if (locked[position]) {
          // Unlinked meanwhile (a reaper finished it): worthless, and tried singly as before.
          fs.closeSync(fd);
          try {
            results[index] = existing ? Lock.tryAcquireExisting(files[index]) : Lock.tryAcquire(files[index]);
          } catch (error) {
            results[index] = error instanceof Error ? error : new Error(String(error));
          }
        } else fs.closeSync(fd);
      });
    }
    return results;
  }

  /** Like tryAcquire, but only if the lock file exists already (the sweep never creates one). */
  static tryAcquireExisting(file: LockFile): Lock | undefined {
    if (!fs.lstatSync(file.at, { throwIfNoEntry: false })) return undefined;
    return Lock.tryAcquire(file);
  }

  /** Retries tryAcquire until `timeoutMs` has passed; tries once whatever `timeoutMs` is. */
  static acquire(file: LockFile, timeoutMs: number): Lock | undefined {
    return Lock.retry(() => Lock.tryAcquire(file), timeoutMs);
  }

  /** Retries tryAcquireExisting until `timeoutMs` has passed (or the file is gone). */
  static acquireExisting(file: LockFile, timeoutMs: number): Lock | undefined {
    return Lock.retry(
      () => Lock.tryAcquireExisting(file),
      timeoutMs,
      () => !fs.lstatSync(file.at, { throwIfNoEntry: false }),
    );
  }

  private static retry(attempt: () => Lock | undefined, timeoutMs: number, hopeless = () => false): Lock | undefined {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lock = attempt();
      if (lock || Date.now() >= deadline || hopeless()) return lock;
      sleep(50);
    }
  }

  /** The descriptor, to hand to a holder process. */
  get descriptor(): number {
    if (this.fd === undefined) throw new Error(`lock ${this.path} is already released`);
    return this.fd;
  }

  /** Unlinks the lock file while still holding it, so nobody else can lock the old inode usefully. */
  unlinkWhileHeld(): void {
    if (this.fd === undefined) return;
    try {
      fs.unlinkSync(this.file.at);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
    }
  }

  /** Closes our descriptor: the lock is released unless a holder process inherited it. */
  release(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A lock file that exists but cannot serve as one: reported, never taken for a free lease. */
export class UnusableLockError extends Error {
  constructor(
    readonly file: string,
    readonly code: string,
    reason: string,
  ) {
    super(`the lock file ${file} cannot be used (${code}: ${reason}); an administrator must remove it`);
    this.name = 'UnusableLockError';
  }
}

/** A lock file opened only if it is a regular file (a FIFO or device planted there is never opened). */
function openLockFile(file: LockFile, create: boolean): number {
  try {
    return openRegular(file.at, fs.constants.O_RDONLY, create).fd;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw error;
    throw unusable(file, error);
  }
}

function unusable(file: LockFile, cause: unknown): UnusableLockError {
  const code = typeof cause === 'string' ? cause : (errorCode(cause) ?? 'ERROR');
  // Out of descriptors or memory says nothing about the file: not a case for an administrator.
  if (['EMFILE', 'ENFILE', 'ENOMEM', 'EINTR', 'EAGAIN'].includes(code)) throw cause;
  const reasons: Record<string, string> = {
    ELOOP: 'it is a symlink',
    EISDIR: 'it is a directory',
    EINVAL: 'it is not a regular file',
  };
  return new UnusableLockError(file.shown, code, reasons[code] ?? errorMessage(cause));
}

/**
 * Throws what opening the lock file would (a symlink, a directory, a FIFO, another user's
 * unreadable file), from its lstat and an access check, without opening or locking it.
 */
export function checkLockFile(file: LockFile, stat: AnyStats): void {
  if (stat.isSymbolicLink()) throw unusable(file, 'ELOOP');
  if (stat.isDirectory()) throw unusable(file, 'EISDIR');
  if (!stat.isFile()) throw unusable(file, 'EINVAL');
  if (!readable(stat)) throw new UnusableLockError(file.shown, 'EACCES', 'permission denied: this user cannot read it');
}

let ownUid: number | undefined;
let ownGroups: number[] | undefined;

/** Whether this process may open a file for reading, from its mode and owner (no system call). */
function readable(stat: AnyStats): boolean {
  ownUid ??= process.getuid?.() ?? 0;
  if (ownUid === 0) return true;
  const mode = Number(stat.mode);
  if (ownUid === Number(stat.uid)) return (mode & 0o400) !== 0;
  ownGroups ??= [process.getgid?.() ?? 0, ...(process.getgroups?.() ?? [])];
  if (ownGroups.includes(Number(stat.gid))) return (mode & 0o040) !== 0;
  return (mode & 0o004) !== 0;
}

/** A stat with numbers or bigints: only identities need bigints, and only when they are large. */
export type AnyStats = fs.Stats | fs.BigIntStats;

/**
 * lstat with plain numbers (a scan of 100,000 lock files allocates no bigints), or bigints
 * when a device or inode number is past what a double holds exactly.
 */
export function lstatExact(file: string): AnyStats | undefined {
  const stat = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!stat || (stat.dev <= Number.MAX_SAFE_INTEGER && stat.ino <= Number.MAX_SAFE_INTEGER)) return stat;
  return fs.lstatSync(file, { bigint: true, throwIfNoEntry: false });
}

function flockNonBlocking(fd: number): boolean {
  const result = spawnSync('flock', ['-x', '-n', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
  if (result.error) {
    throw new Error(`runlane needs util-linux's flock on PATH to take leases: ${result.error.message}`);
  }
  if (result.status === 0) return true;
  if (result.status === 1) return false;
  throw new Error(`flock failed on ${fd} (exit ${result.status}): ${result.stderr.toString().trim()}`);
}

/** flock(LOCK_EX|LOCK_NB) on each inherited descriptor: `1`, or `0 1` when it is held elsewhere. */
const PERL_FLOCK =
  'use Fcntl qw(:flock); $| = 1; for my $fd (@ARGV) { open(my $h, "<&=", $fd) or do { print "0 9 $!\\n"; next }; print flock($h, LOCK_EX | LOCK_NB) ? "1\\n" : ($!{EWOULDBLOCK} ? "0 1\\n" : "0 9 $!\\n"); }';
const SH_FLOCK = 'for fd in "$@"; do if flock -x -n "$fd"; then echo 1; else echo "0 $?"; fi; done';

/** Lock files opened per batch (each is a descriptor of this process and of the child). */
export const LOCK_BATCH = 200;

/**
 * flock -x -n on each descriptor, by one shell that runs `flock` for each (the locks belong to
 * our open file descriptions, which the children share): true where the lock was taken.
 */
function flockMany(fds: readonly number[]): boolean[] {
  const numbers = fds.map((_, index) => String(index + 3));
  const options: SpawnSyncOptionsWithStringEncoding = { stdio: ['ignore', 'pipe', 'pipe', ...fds], encoding: 'utf8' };
  // Perl (in every Debian and Ubuntu base system) takes them all in one process, in a clean
  // environment (a PERL5OPT a job exported never reaches it). Without perl, or if it gives no
  // clear answer, a shell runs `flock` for each: locking again what is already ours is a no-op.
  try {
    return flockAnswers(
      spawnSync('perl', ['-e', PERL_FLOCK, ...numbers], { ...options, env: { PATH: process.env.PATH ?? '' } }),
      fds.length,
    );
  } catch {
    const result = spawnSync('sh', ['-c', SH_FLOCK, 'sh', ...numbers], options);
    if (result.error) throw new Error(`runlane needs util-linux's flock to take leases: ${result.error.message}`);
    return flockAnswers(result, fds.length);
  }
}

function flockAnswers(result: SpawnSyncReturns<string>, count: number): boolean[] {
  if (result.error) throw result.error;
  const lines = result.stdout.split('\n').filter(Boolean);
  if (lines.length !== count) {
    throw new Error(`flock gave ${lines.length} answers for ${count} locks: ${result.stderr.trim()}`);
  }
  return lines.map((line) => {
    if (line === '1') return true;
    if (line === '0 1') return false;
    throw new Error(`flock failed (${line.slice(2)}): ${result.stderr.trim()}`);
  });
}

function sameFile(fd: number, file: string): boolean {
  try {
    const held = fs.fstatSync(fd);
    const named = fs.lstatSync(file);
    return held.ino === named.ino && held.dev === named.dev;
  } catch {
    return false;
  }
}

/** Blocks this thread for `ms` (a poll between lock attempts). */
export function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Under the lock `file`, if `stillStale()` holds there, removes `files` and then the lock
 * file itself, still holding it. `create: false` never makes a lock file that is missing.
 */
export function dropUnder(
  file: LockFile,
  stillStale: () => boolean,
  files: readonly string[],
  create = true,
  waitMs = 0,
): boolean {
  const lock = create ? Lock.acquire(file, waitMs) : Lock.acquireExisting(file, waitMs);
  if (!lock) return false;
  try {
    if (!stillStale()) return false;
    for (const each of files) unlinkIfAny(each);
    lock.unlinkWhileHeld();
    return true;
  } finally {
    lock.release();
  }
}

/** A lock file: the path to open it by (anchored at the opened directory) and its path for humans. */
export interface LockFile {
  at: string;
  shown: string;
}
