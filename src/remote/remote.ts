/**
 * src/remote: the remote tier, a warm start through the forge's cache service: the plan of
 * keys and paths (plan.ts), the upload's selection of members (select.ts), the tar guard that
 * builds and checks archives (tar-guard.ts), the @actions/cache transfer in a process of its
 * own (transfer.ts), and here, the staging area and the transfer's start. It may import
 * src/core; the core never imports it, and it never imports the action or the CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorMessage } from '../core/common/errors.js';
import { archivedRoots } from './plan.js';
import { Dir } from '../core/delete/dir.js';
import { removeIn } from '../core/delete/remove.js';
import { treeSizeIn } from '../core/delete/walk.js';
import type { RemoteAnswer, RemoteRequest } from './transfer.js';
import { bundled } from '../core/common/bundles.js';
import { executable } from '../core/lease/holder.js';

export interface RemoteOutcome {
  /** The entry's key restored or saved; empty when nothing was transferred. */
  key: string;
  /** Why nothing was transferred, when it was no failure (a miss, an entry that exists). */
  note?: string;
  /** What went wrong (a dead or hung service, a refused archive): a warning, never the job's failure. */
  error?: string;
  seconds: number;
}

/**
 * Runs one transfer in a child process of its own process group, bounded by `timeoutMs`:
 * past it, the whole group (node, tar, zstd) is killed, so a hung service cannot hold the job.
 */
export async function runRemote(
  request: RemoteRequest,
  limits: { timeoutMs: number; maxBytes: number; maxEntries?: number },
): Promise<RemoteOutcome> {
  // Node's timers hold 2^31 - 1 ms at most (24.8 days); a longer bound would fire at once.
  const timeoutMs = Math.min(limits.timeoutMs, 2 ** 31 - 1);
  const started = Date.now();
  const script = bundled('remote');
  const tar = onPath('tar');
  if (!tar) return { key: '', error: 'no tar on PATH', seconds: 0 };
  // A private temporary directory for the archive and the guard's verdict, removed afterwards
  // whatever happened (a download cut off at the timeout leaves a partial archive there).
  const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-transfer-'));
  try {
    return await transfer(request, {
      script,
      tar,
      temp,
      timeoutMs,
      maxBytes: limits.maxBytes,
      maxEntries: limits.maxEntries ?? Number.MAX_SAFE_INTEGER,
      started,
    });
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

type TransferSetup = Record<'script' | 'tar' | 'temp', string> &
  Record<'timeoutMs' | 'maxBytes' | 'maxEntries' | 'started', number>;

async function transfer(request: RemoteRequest, setup: TransferSetup): Promise<RemoteOutcome> {
  const { timeoutMs, started } = setup;
  const seconds = () => (Date.now() - started) / 1000;
  const child = spawnTransfer(request, setup);
  const answerPipe = child.stdio[3] as NodeJS.ReadableStream | null;
  let text = '';
  answerPipe?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const result = await endOrKill(child, timeoutMs);
  if (result.timedOut) {
    // The group is dead; wait for it, so nothing writes into the staging directory afterwards.
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('close', resolve),
    );
    return { key: '', error: `no result within remote-timeout (${timeoutMs / 1000} s); stopped`, seconds: seconds() };
  }
  try {
    const answer = JSON.parse(text.trim().split('\n')[0] ?? '') as RemoteAnswer;
    return { key: answer.key, note: answer.note, error: answer.error, seconds: seconds() };
  } catch {
    return {
      key: '',
      error: `the transfer ended without a result (${result.signal ?? `exit ${result.code}`})`,
      seconds: seconds(),
    };
  }
}

/**
 * The transfer process in a process group of its own, the request on its stdin and its answer
 * on fd 3; `tar` on its PATH is the guard, which runs the real one.
 */
function spawnTransfer(request: RemoteRequest, setup: TransferSetup): ChildProcess {
  const { script, tar, temp } = setup;
  const child = spawn(process.execPath, [script], {
    detached: true,
    stdio: ['pipe', 'inherit', 'inherit', 'pipe'],
    env: {
      ...process.env,
      PATH: `${path.join(path.dirname(script), 'bin')}${path.delimiter}${process.env.PATH ?? ''}`,
      RUNLANE_NODE: process.execPath,
      RUNLANE_TAR_GUARD: bundled('tar-guard'),
      RUNLANE_REAL_TAR: tar,
      RUNLANE_TRANSFER_MS: String(setup.timeoutMs),
      RUNLANE_PARENT_PID: String(process.pid),
      RUNLANE_MAX_BYTES: String(setup.maxBytes),
      RUNLANE_MAX_ENTRIES: String(setup.maxEntries),
      RUNLANE_GUARD_REPORT: path.join(temp, 'guard-report'),
      RUNNER_TEMP: temp,
    },
  });
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(JSON.stringify(request));
  return child;
}

/** The child's end, or its whole group killed when `timeoutMs` passes first. */
function endOrKill(
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null; timedOut: boolean }> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
      resolve({ code: null, signal: 'SIGKILL', timedOut: true });
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut: false });
    });
    child.once('error', () => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut: false });
    });
  });
}

function onPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const file = path.join(dir, tool);
    if (executable(file)) return file;
  }
  return undefined;
}

/** The staging directory a restore extracts into, inside the lane (removed with it, whatever happens). */
export const STAGING = '.runlane-remote';

/**
 * The top-level lane entries an archive of `paths` may hold (their first literal components);
 * undefined when a path covers the whole lane (`.`, `*`): any name but the staging directory's.
 */
export function topLevelNames(paths: readonly string[]): Set<string> | undefined {
  const roots = archivedRoots(paths);
  return roots.some((parts) => parts.length === 0) ? undefined : new Set(roots.map((parts) => parts[0]));
}

/**
 * Moves what a restore put in the staging directory into the lane (renames within one file
 * system; the lane's own empty directories are replaced), then removes the staging directory.
 * Only the top-level names the archived paths allow are taken; anything else (another
 * preset's directory, the staging directory's own name) refuses the whole restore. A move
 * that fails midway takes back what was moved, so the lane is as cold and clean as before.
 */
export function adoptStaging(lane: Dir, allowed: ReadonlySet<string> | undefined): { bytes: number; files: number } {
  const staging = lane.openChild(STAGING);
  const moved: { name: string; wasEmptyDir: boolean }[] = [];
  try {
    const names = staging.names();
    const stray = names.find((name) => name === STAGING || (allowed !== undefined && !allowed.has(name)));
    if (stray !== undefined) throw new Error(`the archive holds ${JSON.stringify(stray)}, outside the archived paths`);
    try {
      for (const name of names) {
        const there = lane.lstat(name);
        const wasEmptyDir = Boolean(there?.isDirectory() && fs.readdirSync(lane.at(name)).length === 0);
        if (wasEmptyDir) fs.rmdirSync(lane.at(name));
        fs.renameSync(staging.at(name), lane.at(name));
        moved.push({ name, wasEmptyDir });
      }
    } catch (error) {
      for (const { name, wasEmptyDir } of moved) {
        removeIn(lane, name, '');
        if (wasEmptyDir) fs.mkdirSync(lane.at(name));
      }
      throw error;
    }
  } finally {
    staging.close();
  }
  fs.rmdirSync(lane.at(STAGING));
  let bytes = 0;
  let files = 0;
  for (const name of lane.names()) {
    const size = treeSizeIn(lane, name);
    bytes += size.bytes;
    files += size.files;
  }
  return { bytes, files };
}

/** Removes the staging directory and whatever a failed restore left in it: the lane stays cold and clean. */
export function dropStaging(lane: Dir): string | undefined {
  try {
    const result = removeIn(lane, STAGING, '');
    return result.removed ? undefined : `${STAGING} could not be removed entirely`;
  } catch (error) {
    return errorMessage(error);
  }
}
