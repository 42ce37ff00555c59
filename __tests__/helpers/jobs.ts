import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { expect } from '@jest/globals';
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

export type Job = ReturnType<typeof newJob>;

/** Starts `count` jobs' main phases on one root, four at a time; returns them with their lanes live. */
export async function liveJobs(root: string, count: number, inputs: Record<string, string> = {}): Promise<Job[]> {
  const jobs = Array.from({ length: count }, () => newJob({ root, inputs: { root, ...inputs } }));
  for (let i = 0; i < jobs.length; i += 4) {
    const results = await Promise.all(jobs.slice(i, i + 4).map((job) => job.phase('main')));
    expect(results.map((result) => result.code)).toEqual(results.map(() => 0));
  }
  return jobs;
}

/** Kills the lease holders of these jobs, as a crash would: their lanes become orphans. */
export function crash(jobs: { state: Record<string, string> }[]): void {
  kill(jobs.map((job) => Number(job.state['holder-pid'])));
}

/** A job of PR 5 of acme/widgets, job `build`, on the given root, with warm on. */
export function prJob(root: string, extra: Record<string, string> = {}, ref = 'refs/pull/5/merge'): Job {
  return newJob({ root, ref, inputs: { root, presets: 'cargo', warm: 'true', ...extra } });
}

/** main, an optional step running `work`, and post with the job's status `status`: each must succeed. */
export async function runJob(job: Job, status = 'success', work?: string): Promise<void> {
  expect((await job.phase('main')).code).toBe(0);
  if (work) expect((await job.run('sh', ['-c', work])).code).toBe(0);
  job.status = status;
  expect((await job.phase('post')).code).toBe(0);
}

/** A job run to its end (main, a step writing `files` files, post), on `root`. */
export async function finishedJob(root: string, inputs: Record<string, string>, files: number): Promise<Job> {
  const job = newJob({ root, inputs: { root, ...inputs } });
  expect((await job.phase('main')).code).toBe(0);
  const dir = path.join(job.outputs.path, 'out');
  fs.mkdirSync(dir);
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(dir, String(i)), 'x'.repeat(5000));
  expect((await job.phase('post')).code).toBe(0);
  return job;
}

/** The CLI, bounded to 20 s; with `asNobody`, as the unprivileged uid 65534 (from a staged copy of the bundle). */
export function runlane(args: string[], asNobody = false): CliResult {
  const [command, ...argv] = asNobody ? cliAsNobody(...args) : [process.execPath, CLI, ...args];
  const out = spawnSync(command, argv, {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, RUNLANE_ROOT: '' },
  });
  expect(out.error).toBeUndefined(); // it returned, in time
  expect(out.stderr).not.toMatch(/TypeError|ReferenceError|at .*index\.js/);
  return { code: out.status, stdout: out.stdout, stderr: out.stderr, json: () => JSON.parse(out.stdout) };
}
