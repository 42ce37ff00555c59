import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { errorMessage } from '../common/errors.js';
import type { HolderArgs } from './hold.js';
import { processStartTime } from './held.js';
import { sleep, type Lock } from './lock.js';

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
