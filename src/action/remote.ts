import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../core/errors.js';
import { Dir, removeIn, treeSizeIn } from '../core/remove.js';
import type { RemoteAnswer, RemoteRequest } from '../remote/remote.js';
import { bundled } from './bundles.js';

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
export async function runRemote(request: RemoteRequest, timeoutMs: number): Promise<RemoteOutcome> {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  const script = bundled('remote');
  const tar = onPath('tar');
  if (!tar) return { key: '', error: 'no tar on PATH', seconds: 0 };
  const child = spawn(process.execPath, [script], {
    detached: true,
    stdio: ['pipe', 'inherit', 'inherit', 'pipe'],
    env: {
      ...process.env,
      PATH: `${path.join(path.dirname(script), 'bin')}${path.delimiter}${process.env.PATH ?? ''}`,
      RUNLANE_NODE: process.execPath,
      RUNLANE_REMOTE: script,
      RUNLANE_REAL_TAR: tar,
    },
  });
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(JSON.stringify(request));
  const answerPipe = child.stdio[3] as NodeJS.ReadableStream | null;
  let text = '';
  answerPipe?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const result = await new Promise<{ code: number | null; signal: string | null; timedOut: boolean }>((resolve) => {
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
  if (result.timedOut) {
    // The group is dead; wait for it, so nothing writes into the staging directory afterwards.
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('close', resolve),
    );
    return { key: '', error: `no result within remote-timeout (${timeoutMs / 1000} s); stopped`, seconds: seconds() };
  }
  try {
    const answer = JSON.parse(text.trim().split('\n')[0] ?? '') as RemoteAnswer;
    return { key: answer.key, note: answer.note, seconds: seconds() };
  } catch {
    return {
      key: '',
      error: `the transfer ended without a result (${result.signal ?? `exit ${result.code}`})`,
      seconds: seconds(),
    };
  }
}

function onPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const file = path.join(dir, tool);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The staging directory a restore extracts into, inside the lane (removed with it, whatever happens). */
export const STAGING = '.runlane-remote';

/**
 * Moves what a restore put in the staging directory into the lane (renames within one file
 * system; the lane's own empty directories are replaced), then removes the staging directory.
 */
export function adoptStaging(lanePath: string): { bytes: number; files: number } {
  const lane = Dir.open(lanePath);
  try {
    const staging = lane.openChild(STAGING);
    try {
      for (const name of staging.names()) {
        const from = staging.at(name);
        const to = lane.at(name);
        const there = lane.lstat(name);
        if (there?.isDirectory() && fs.readdirSync(to).length === 0) fs.rmdirSync(to);
        fs.renameSync(from, to);
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
  } finally {
    lane.close();
  }
}

/** Removes the staging directory and whatever a failed restore left in it: the lane stays cold and clean. */
export function dropStaging(lanePath: string): string | undefined {
  try {
    const lane = Dir.open(lanePath);
    try {
      const result = removeIn(lane, STAGING, '');
      return result.removed ? undefined : `${STAGING} could not be removed entirely`;
    } finally {
      lane.close();
    }
  } catch (error) {
    return errorMessage(error);
  }
}
