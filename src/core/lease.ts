import fs from 'node:fs';
import path from 'node:path';
import {
  spawn,
  spawnSync,
  type ChildProcess,
  type SpawnSyncOptionsWithStringEncoding,
  type SpawnSyncReturns,
} from 'node:child_process';
import { errorCode, errorMessage } from './errors.js';
import type { LockFile } from './layout.js';
import type { HolderArgs } from './holder.js';
import { openRegular } from './open-regular.js';

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

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Flocks held on the machine, from /proc/locks, and whether that list is the whole truth. */
export interface HeldLocks {
  /** `major:minor:inode` of every file with a flock held. */
  ids: Set<string>;
  /**
   * True when every held flock is listed. /proc/locks hides a lock whose owner pid is not
   * visible in the reader's pid namespace, and runlane's locks are taken by a short-lived
   * `flock` child whose pid is gone at once: from a container's own pid namespace none of
   * them shows. The initial namespace sees every pid, dead ones included, so there it is complete.
   */
  complete: boolean;
}

/** The initial pid namespace's inode number (PROC_PID_INIT_INO in the kernel). */
const INIT_PID_NAMESPACE = 'pid:[4026531836]';

/**
 * The held flocks, in one read: a scan of 100,000 lanes is then a stat each and no process
 * per lane. Decides states for reports only: anything the sweep removes, it locks for real first.
 */
export function heldFlocks(): HeldLocks {
  const ids = new Set<string>();
  let text: string;
  let namespace = '';
  try {
    text = fs.readFileSync('/proc/locks', 'utf8');
    namespace = fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    return { ids, complete: false };
  }
  for (const line of text.split('\n')) {
    const match = /\bFLOCK\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+):([0-9a-f]+):(\d+)/.exec(line);
    if (match) ids.add(`${parseInt(match[1], 16)}:${parseInt(match[2], 16)}:${match[3]}`);
  }
  return { ids, complete: namespace === INIT_PID_NAMESPACE };
}

/** The /proc/locks identity of a file, from its stat (glibc's major/minor split of st_dev). */
export function flockIdentity(stat: AnyStats): string {
  const dev = BigInt(stat.dev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${stat.ino}`;
}

/**
 * The start time of a running process (clock ticks since boot), so a reused pid is not
 * mistaken for it; undefined once it has ended: gone, or a zombie whose threads have all
 * exited. A process that is exiting loses its command line (its memory goes first) before
 * its files close, so a holder whose command line is gone may hold its flock a moment longer.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z' && fields[0] !== 'X') return fields[19];
    // A zombie leader whose other threads still run (node has several) still has its files
    // open through them: it has ended only when they are gone too.
    return fs.readdirSync(`/proc/${pid}/task`).length > 1 ? fields[19] : undefined;
  } catch {
    return undefined;
  }
}

export interface HolderOptions {
  script: string;
  lock: Lock;
  /** The process whose death ends the lease (the runner's worker); 0 for none. */
  workerPid: number;
  /** Lease length on the holder's monotonic clock; null for none. */
  leaseMs: number | null;
  /** Per-job directories whose removal ends the lease. */
  watch: readonly string[];
}

/** How long main waits for the holder to say it holds the lock. */
const HANDSHAKE_MS = 15_000;

/**
 * Starts the detached process that keeps the lease for the job's life, and returns its pid
 * once it has said it holds the lock on the right file. It inherits the locked descriptor as
 * fd 3 and keeps the environment (with RUNNER_TRACKING_ID, so the runner's orphan cleanup ends
 * it with the job); its stdin and stderr are closed, and its stdout is a pipe to us that it
 * closes after "ready", so the step never waits for it. Our own descriptor is closed
 * afterwards: the holder's is the only one left. If the holder fails to start or to confirm,
 * this throws and the lock is released.
 *
 * The holder is perl where perl can do it (`holder.pl` beside the node holder's bundle): it
 * answers in a few milliseconds where a node holder costs a whole node start-up, which was
 * most of main's time. Without perl, or a perl without a monotonic clock, the node holder
 * does the same job.
 */
export async function startHolder(options: HolderOptions): Promise<number> {
  const workerStart = options.workerPid > 1 ? (processStartTime(options.workerPid) ?? '') : '';
  const watch = options.watch.flatMap((dir) => {
    const stat = fs.statSync(dir, { throwIfNoEntry: false, bigint: true });
    return stat?.isDirectory() ? [{ path: dir, dev: stat.dev, ino: stat.ino }] : [];
  });
  const worker = options.workerPid > 1 ? options.workerPid : 0;
  const title = `runlane-lease ${options.lock.path}`;
  try {
    let perlTrouble = '';
    const perl = PERLS.find((file) => executable(file));
    if (perl) {
      const answer = await startPerlHolder(perl, title, options, [
        options.lock.path,
        String(worker),
        workerStart,
        options.leaseMs === null ? 'none' : String(Math.round(options.leaseMs)),
        ...watch.flatMap((dir) => [dir.path, String(dir.dev), String(dir.ino)]),
      ]);
      if (typeof answer === 'number') return answer;
      // A check that failed fails the same way in node; anything else about perl (no
      // monotonic clock, a broken install) is a reason to use the node holder.
      if (answer.startsWith('failed ')) throw new Error(`the lease holder did not start: ${answer.slice(7)}`);
      perlTrouble = ` (perl: ${answer})`;
    }
    const args: HolderArgs = {
      lock: options.lock.path,
      worker,
      workerStart,
      leaseMs: options.leaseMs,
      watch: watch.map((dir) => ({ path: dir.path, dev: Number(dir.dev), ino: Number(dir.ino) })),
    };
    const node = await handshake(
      spawn(process.execPath, [options.script, JSON.stringify(args)], {
        detached: true,
        stdio: ['ignore', 'pipe', 'ignore', options.lock.descriptor],
      }),
      (pid) => isHolderOf(pid, options.lock.path),
    );
    if (typeof node === 'number') return node;
    throw new Error(`the lease holder did not start: ${node.replace(/^failed /, '')}${perlTrouble}`);
  } finally {
    options.lock.release();
  }
}

/**
 * Perl by absolute path, never through PATH: a job can put its own `perl` first on PATH (a
 * shim, or a script that says "ready" and holds nothing), and a `#!` wrapper would rename
 * the holder so post could not find it.
 */
export const PERLS = ['/usr/bin/perl', '/bin/perl'];

/** Whether `file` is a regular file this process may execute. */
export function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The perl holder, its program and arguments given on stdin (`perl -`), so its command line
 * is `runlane-lease <lock> -` and nothing a `pkill -f` of a path or a pid would match.
 */
async function startPerlHolder(
  perl: string,
  title: string,
  options: HolderOptions,
  args: string[],
): Promise<number | string> {
  let program: string;
  try {
    program = fs.readFileSync(path.join(path.dirname(options.script), 'holder.pl'), 'utf8');
  } catch (error) {
    return `no holder.pl beside the node holder: ${errorMessage(error)}`;
  }
  const child = spawn(perl, ['-'], {
    argv0: title,
    // No PERL5OPT, PERL5LIB or PERL5DB a job exported: nothing of the job's runs in it.
    env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PERL'))),
    detached: true,
    stdio: ['pipe', 'pipe', 'ignore', options.lock.descriptor],
  });
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(`${program}\n__END__\n${args.join('\0')}`);
  return handshake(child, (pid) => isHolderOf(pid, options.lock.path));
}

/**
 * Waits for a holder's first line: its pid once it said "ready" and is the process it says
 * (named as a holder of this lock), else what it said or why it ended. A holder that fails
 * is killed with its whole process group and waited for, so two holders never share a lock;
 * one that cannot be ended makes this throw rather than start another.
 */
async function handshake(child: ChildProcess, isHolder: (pid: number) => boolean): Promise<number | string> {
  const ended = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  try {
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      const timer = setTimeout(() => resolve(`no answer in ${HANDSHAKE_MS / 1000} s`), HANDSHAKE_MS);
      child.stdout?.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('\n')) {
          clearTimeout(timer);
          resolve(text.trim());
        }
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve(text.trim() || `it exited at once (${signal ?? `exit ${code}`})`);
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        resolve(error.message);
      });
    });
    if (answer === 'ready' && child.pid !== undefined && isHolder(child.pid)) return child.pid;
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      const gone = await Promise.race([ended.then(() => true), delay(5000).then(() => false)]);
      if (!gone) throw new Error(`the lease holder did not start, and its process ${child.pid} could not be ended`);
    }
    return answer === 'ready' ? `pid ${child.pid} said ready but is not named as the holder of this lock` : answer;
  } finally {
    child.stdout?.destroy();
    child.removeAllListeners();
    child.unref();
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** True when `pid` is a lease holder of `lockPath` (guards against a reused pid). */
export function isHolderOf(pid: number, lockPath: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === `runlane-lease ${lockPath}`;
  } catch {
    return false;
  }
}

/** Ends a lease holder and waits (up to `timeoutMs`) until it has gone, so its lock is free. */
export function stopHolder(pid: number, lockPath: string, timeoutMs = 5000): boolean {
  const since = processStartTime(pid);
  if (since === undefined || !isHolderOf(pid, lockPath)) return true;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return true;
  }
  const ended = () => processStartTime(pid) !== since;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (ended()) return true;
    sleep(10);
  }
  return ended();
}
