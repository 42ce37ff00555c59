// `runlane run` tests: a work directory and a root per test, in one scratch space per file.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from '@jest/globals';
import { awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { CLI, kill, processesMentioning } from './jobs.js';

export interface Place {
  cwd: string;
  root: string;
}

/** Returns a maker of fresh places (a work directory and a root) under a scratch directory removed after the file's tests. */
export function usePlaces(): () => Place {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-run-'));
  afterAll(() => {
    kill(processesMentioning(scratch));
    awaitBackgroundDeletes(scratch);
    fs.rmSync(scratch, { recursive: true, force: true });
  });
  let count = 0;
  return () => {
    const dir = path.join(scratch, `t${++count}`);
    fs.mkdirSync(path.join(dir, 'work'), { recursive: true });
    return { cwd: path.join(dir, 'work'), root: path.join(dir, 'root') };
  };
}

/** `runlane run` with a clean CI-free environment, synchronously. */
export function run(where: Place, args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, 'run', '--root', where.root, ...args], {
    cwd: where.cwd,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
}
