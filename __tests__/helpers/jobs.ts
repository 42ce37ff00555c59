import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { ACTION_DIR, SimulatedJob, stagedActionDir, type SimulatedJobOptions } from '../../scripts/runner-sim.mjs';

export const CLI = path.join(ACTION_DIR, 'dist', 'cli', 'index.js');

/** The CLI bundle in a directory every user can read (the clone may be private): for runs as nobody. */
export function cliForAnyone(): string {
  return path.join(stagedActionDir(), 'dist', 'cli', 'index.js');
}

/** setpriv and its arguments: what follows runs as the unprivileged uid and gid 65534, no groups. */
export const AS_NOBODY: readonly string[] = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/**
 * A hostile process racing a walker: as fast as it can, it renames each of `paths` in turn
 * away, puts a symlink to `target` in its place, removes it and renames the original back.
 * With `asNobody`, it runs as uid 65534. Stop it with SIGKILL.
 */
export function startSwapper(paths: readonly string[], target: string, asNobody = false): ChildProcess {
  const program = `const fs = require('fs');
    const [target, ...paths] = JSON.parse(process.argv[1]);
    for (let i = 0; ; i++) {
      const name = paths[i % paths.length];
      try { fs.renameSync(name, name + '.x'); } catch {}
      try { fs.symlinkSync(target, name); } catch {}
      try { fs.unlinkSync(name); } catch {}
      try { fs.renameSync(name + '.x', name); } catch {}
    }`;
  const command = [process.execPath, '-e', program, JSON.stringify([target, ...paths])];
  const [file, ...args] = asNobody ? [...AS_NOBODY, ...command] : command;
  return spawn(file, args, { stdio: 'ignore' });
}

/** The command line that runs the CLI (staged where every user can read it) as nobody. */
export function cliAsNobody(...args: string[]): string[] {
  return [...AS_NOBODY, process.execPath, cliForAnyone(), ...args];
}
const jobs: SimulatedJob[] = [];

/** A simulated job whose root defaults to a directory of its own scratch space. */
export function newJob(options: SimulatedJobOptions & { root?: string } = {}): SimulatedJob & { root: string } {
  const job = new SimulatedJob(options) as SimulatedJob & { root: string };
  job.root = options.root ?? path.join(job.dir, 'root');
  if (!('root' in job.inputs)) job.inputs.root = job.root;
  jobs.push(job);
  return job;
}

/** Pids of processes whose command line or environment mentions `needle`. */
export function processesMentioning(needle: string, where: 'cmdline' | 'environ' = 'cmdline'): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/${where}`, 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

/**
 * SIGKILLs `pids` and returns once each has died (gone, or a zombie: its descriptors, and so
 * its locks, are closed by then), so the next check sees the crash and not a race with it.
 */
export function kill(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + 10_000;
  for (const pid of pids) {
    while (alive(pid) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

/** Running, and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Ends every job made by newJob and any lease holder left in its scratch space. */
export function disposeJobs(): void {
  for (const job of jobs.splice(0)) {
    kill(processesMentioning(job.dir));
    job.dispose();
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export function cli(...args: string[]): CliResult {
  const out = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, RUNLANE_ROOT: '' },
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr, json: () => JSON.parse(out.stdout) };
}

export function laneStates(root: string): Record<string, string> {
  const result = cli('status', '--root', root, '--json');
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return Object.fromEntries(result.json().lanes.map((lane: { key: string; state: string }) => [lane.key, lane.state]));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it is true or `ms` pass; returns how long it took, or -1. */
export async function within(ms: number, check: () => boolean): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (check()) return Date.now() - started;
    await sleep(50);
  }
  return check() ? Date.now() - started : -1;
}
