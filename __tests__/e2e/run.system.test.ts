import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { CLI, laneStates, within } from '../helpers/jobs.js';
import { usePlaces } from '../helpers/run.js';

const place = usePlaces();

describe('runlane run: the lane and its lease', () => {
  it.each([
    [
      'GitLab',
      {
        GITLAB_CI: 'true',
        CI_PROJECT_PATH: 'acme/w',
        CI_PIPELINE_ID: '7',
        CI_JOB_ID: '77',
        CI_JOB_NAME: 'test',
        CI_COMMIT_BRANCH: 'main',
      },
    ],
    [
      'GitHub',
      {
        GITHUB_ACTIONS: 'true',
        GITHUB_REPOSITORY: 'acme/w',
        GITHUB_RUN_ID: '9',
        GITHUB_RUN_ATTEMPT: '1',
        GITHUB_JOB: 'test',
        GITHUB_REF: 'refs/heads/main',
        RUNNER_TRACKING_ID: 'github_1',
        GITHUB_ACTION: '__run',
      },
    ],
  ])('two runs at once in one %s job (the same job id) get two lanes, at the same time', async (_system, ciEnv) => {
    const where = place();
    const outs = await Promise.all(
      [1, 2].map(
        () =>
          new Promise<{ out: string; status: number | null }>((resolve) => {
            const child = spawn(
              process.execPath,
              [
                CLI,
                'run',
                '--root',
                where.root,
                '--',
                'sh',
                '-c',
                'echo "$RUNLANE_DIR $(date +%s%N)"; sleep 2; date +%s%N',
              ],
              { cwd: where.cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...ciEnv } },
            );
            let out = '';
            child.stdout.on('data', (chunk) => (out += chunk));
            child.on('close', (status) => resolve({ out: out.trim(), status }));
          }),
      ),
    );
    expect(outs.map((o) => o.status)).toEqual([0, 0]);
    const [a, b] = outs.map((o) => o.out.split(/\s+/));
    expect(a[0]).not.toBe(b[0]);
    // They overlapped: each started before the other ended.
    expect(Number(a[1])).toBeLessThan(Number(b[2]));
    expect(Number(b[1])).toBeLessThan(Number(a[2]));
  });
  it.each([
    // Only the grace period can end this one: one signal, a short grace.
    ['the grace period after SIGTERM', ['SIGTERM'], '2s'],
    // Only the second SIGINT can end this one: the grace is longer than the test's bound.
    ['a second SIGINT', ['SIGINT', 'SIGINT'], '1h'],
  ])('%s escalates to SIGKILL of a COMMAND that ignores signals', async (_, signals, grace) => {
    const where = place();
    const started = path.join(where.cwd, 'started');
    const stubborn = `trap '' TERM INT HUP; touch ${started}; while :; do sleep 0.1; done`;
    const child = spawn(
      process.execPath,
      [CLI, 'run', '--root', where.root, '--grace', grace, '--', 'sh', '-c', stubborn],
      {
        cwd: where.cwd,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(await within(15_000, () => fs.existsSync(started))).toBeGreaterThanOrEqual(0);
    // Each signal is sent once runlane has said it took the one before: two signals sent at once
    // may reach a process as one (standard signals do not queue).
    for (const [i, signal] of signals.entries()) {
      child.kill(signal as NodeJS.Signals);
      const said = i === 0 ? `${signal}: passed to COMMAND's process group` : `${signal} again`;
      expect(await within(60_000, () => stderr.includes(said))).toBeGreaterThanOrEqual(0);
    }
    expect(await exited).toBe(137);
    expect(Object.values(laneStates(where.root)).filter((state) => state !== 'trash')).toEqual([]);
  });
});
