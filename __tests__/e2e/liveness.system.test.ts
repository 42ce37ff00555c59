/* eslint-disable no-control-regex -- the terminal tests match escape sequences */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';
import {
  CLI,
  cli,
  disposeJobs,
  laneStates,
  newJob,
  processesMentioning,
  within,
  liveJobs,
  crash,
} from '../helpers/jobs.js';

afterEach(disposeJobs);

function sweepAsync(root: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'sweep', '--root', root, '--json', ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the lease: liveness is the lock, bounded by the job', () => {
  it('ends at the lease-timeout deadline even while the job runs on', async () => {
    const job = newJob({ inputs: { 'lease-timeout': '2s' } });
    await job.phase('main', { worker: true });
    expect(laneStates(job.root)[job.outputs.key]).toBe('live');
    expect(await within(20_000, () => laneStates(job.root)[job.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
  });
});

describe('the sweep', () => {
  it('racing sweeps reap each orphan exactly once and never touch a live lane', async () => {
    const root = newJob().root;
    const orphans = await liveJobs(root, 24);
    const live = await liveJobs(root, 6);
    for (const job of orphans) fs.writeFileSync(path.join(job.outputs.path, 'payload'), 'x'.repeat(10_000));
    crash(orphans);
    const results = await Promise.all([1, 2, 3, 4].map(() => sweepAsync(root)));
    expect(results.map((result) => result.code)).toEqual([0, 0, 0, 0]);
    const reaped = results.flatMap((result) =>
      JSON.parse(result.stdout)
        .entries.filter((entry: { outcome: string }) => entry.outcome === 'reaped')
        .map((entry: { key: string }) => entry.key),
    );
    expect(reaped.sort()).toEqual(orphans.map((job) => job.outputs.key).sort());
    expect(laneStates(root)).toEqual(Object.fromEntries(live.map((job) => [job.outputs.key, 'live'])));
    for (const job of live) expect(fs.existsSync(job.outputs.path)).toBe(true);
    expect(fs.readdirSync(path.join(root, 'locks')).sort()).toEqual(
      live.map((job) => `${job.outputs.key}.lock`).sort(),
    );
  });
  it('recovers from main killed at any point of its work', async () => {
    const root = newJob().root;
    const template = newJob({ root, inputs: { root, presets: 'cargo,tmp', env: 'A=a\nB=b/c' } });
    const mainScript = path.join(ACTION_DIR, 'dist', 'main', 'index.js');
    const worker = path.join(ACTION_DIR, 'scripts', 'fake-worker.mjs');
    // One main run to its end, timed under this machine's present load, so the kills below land
    // across the whole of main's work (from start-up to done) however slow the machine is.
    let fullMs = 0;
    const KILLS = 16;
    for (let i = -1; i < KILLS; i++) {
      const files = ['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_STATE'].map((name) => [
        name,
        path.join(template.dir, `${name}-${i}`),
      ]);
      for (const [, file] of files) fs.writeFileSync(file, '');
      const env = {
        ...template.env,
        ...template.inputEnv(),
        ...Object.fromEntries(files),
        RUNNER_TRACKING_ID: `github_kill_${i}`,
      };
      const started = Date.now();
      const child = spawn(process.execPath, [worker, process.execPath, mainScript], {
        env,
        stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
        detached: true,
      });
      let code: unknown = 0;
      try {
        if (i < 0) {
          code = await new Promise((resolve) =>
            child.once('message', (message: { code: unknown }) => resolve(message.code)),
          );
          fullMs = Date.now() - started;
        } else {
          await new Promise((resolve) => setTimeout(resolve, (fullMs * (i + 0.5)) / KILLS));
        }
      } finally {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {
          // Already ended.
        }
        child.disconnect?.();
      }
      expect(code).toBe(0);
    }
    // Holders that got started see their worker die; nothing else holds a lease.
    expect(
      await within(20_000, () => Object.values(laneStates(root)).every((state) => state === 'orphan')),
    ).toBeGreaterThanOrEqual(0);
    // A torn write left behind by a killed writer, and a metadata file cut short.
    const lanes = fs.readdirSync(path.join(root, 'lanes'));
    fs.writeFileSync(path.join(root, 'meta', '.tmp-crashed.json-0a1b2c3d'), '{"version":1,"ke');
    expect(lanes.length).toBeGreaterThan(0);
    fs.writeFileSync(path.join(root, 'meta', `${lanes[0]}.json`), '{"version":1,"key":');
    const sweep = cli('sweep', '--root', root, '--json');
    expect(sweep.code).toBe(0);
    expect(fs.readdirSync(path.join(root, 'lanes'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'meta'))).toEqual([]);
    expect(processesMentioning(root)).toEqual([]);
  });
  it('removes kept lanes past max-age, keeps younger ones', async () => {
    const root = newJob().root;
    const [kept] = await liveJobs(root, 1, { cleanup: 'never' });
    await kept.phase('post');
    expect(laneStates(root)[kept.outputs.key]).toBe('kept');
    const young = cli('sweep', '--root', root, '--max-age', '1h', '--keep-free', 'off', '--json').json();
    expect(young.entries[0]).toMatchObject({ outcome: 'left', state: 'kept' });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const old = cli('sweep', '--root', root, '--max-age', '1s', '--keep-free', 'off', '--json').json();
    expect(old.entries[0]).toMatchObject({ outcome: 'evicted', state: 'kept' });
    expect(fs.existsSync(kept.outputs.path)).toBe(false);
  });
});

describe('the sweep on a terminal', () => {
  it('redraws a progress line by lanes, files and bytes, and replaces it by one line per phase', async () => {
    const root = newJob().root;
    const jobs = await liveJobs(root, 3);
    // Enough files that deleting them takes longer than one redraw interval.
    for (const job of jobs) {
      const dir = path.join(job.outputs.path, 'many');
      fs.mkdirSync(dir);
      for (let i = 0; i < 15_000; i++) fs.writeFileSync(path.join(dir, String(i)), 'x'.repeat(100));
    }
    crash(jobs);
    // script(1) gives the CLI a real terminal, as an operator's shell would.
    const out = spawnSync('script', ['-qec', `${process.execPath} ${CLI} sweep --root ${root}`, '/dev/null'], {
      encoding: 'utf8',
    });
    expect(out.status).toBe(0);
    // A live line was drawn in place (at the phase's first step, so whatever the machine's
    // speed), then cleared and replaced by the phase's final line.
    expect(out.stdout).toMatch(
      /\r\u001b\[Ktrash: [0-3]\/3 entries(, [\d,]+ files)?(, [\d.]+ (B|KiB|MiB))?, [\d.]+ s\r\u001b\[K/,
    );
    expect(out.stdout).toMatch(/\r\u001b\[Ktrash: 3\/3 entries, 45,0\d\d files, [\d.]+ MiB, [\d.]+ s\r?\n/);
    expect(out.stdout).toMatch(/(^|\r\u001b\[K)scan: 3 lanes, [\d.]+ s\r?$/m);
    expect(out.stdout).toMatch(
      /3 lanes and 0 parked lanes scanned; removed 3 \(3 orphans reaped\), freed [\d.]+ MiB; left 0 live/,
    );
  });
});
