import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { CLI, cli, disposeJobs, kill, newJob, sleep, within, finishedJob } from '../helpers/jobs.js';

afterEach(disposeJobs);

type Lane = { key: string; state: string; bytes?: number; files?: number; measured?: string };

function lanes(root: string, ...args: string[]): Lane[] {
  const status = cli('status', '--root', root, '--json', ...args);
  expect(status.code).toBe(0);
  return status.json().lanes;
}

/** A job whose main ran and holds its lane, and one whose lease holder was killed (an orphan). */
async function liveAndOrphan(root: string) {
  const live = newJob({ root, inputs: { root } });
  expect((await live.phase('main')).code).toBe(0);
  const orphan = newJob({ root, inputs: { root } });
  expect((await orphan.phase('main')).code).toBe(0);
  const holder = orphan.state['holder-pid'];
  kill([Number(holder)]);
  expect(await within(10_000, () => !fs.existsSync(`/proc/${holder}`))).toBeGreaterThanOrEqual(0);
  return { live, orphan };
}

describe('status in O(lanes): sizes recorded when a lane is kept or parked', () => {
  it('post measures a kept and a parked lane in the background; status shows them without walking, --sizes walks all', async () => {
    const root = newJob().root;
    const kept = await finishedJob(root, { cleanup: 'never' }, 30);
    const parked = await finishedJob(root, { warm: 'true' }, 12);
    const live = newJob({ root, inputs: { root } });
    expect((await live.phase('main')).code).toBe(0);
    fs.writeFileSync(path.join(live.outputs.path, 'file'), 'y'.repeat(10_000));

    // The background process started by post records the sizes: no walk by status.
    expect(await within(20_000, () => lanes(root).filter((lane) => lane.measured).length === 2)).toBeGreaterThanOrEqual(
      0,
    );
    const byKey = Object.fromEntries(lanes(root).map((lane) => [lane.key, lane]));
    expect(byKey[kept.outputs.key]).toMatchObject({ state: 'kept', files: 30 });
    expect(byKey[kept.outputs.key].bytes).toBeGreaterThanOrEqual(30 * 4096);
    expect(byKey[parked.outputs.key]).toMatchObject({ state: 'parked', files: 12 });
    // A live lane changes while its job runs: nothing recorded, nothing walked.
    expect(byKey[live.outputs.key].state).toBe('live');
    expect(byKey[live.outputs.key].bytes).toBeUndefined();

    const table = cli('status', '--root', root);
    expect(table.stdout).toMatch(new RegExp(`${live.outputs.key}\\s+live\\s+-\\s+-\\s`));
    expect(table.stdout).toMatch(/total: 3 lanes \(1 live, 1 kept, 1 parked\), [\d.]+ KiB in the 2 ones measured/);
    expect(table.stdout).toMatch(
      /free on the root's file system: .*; keep-free 10% \([\d.]+ [KMGT]iB\): (met|NOT met)/,
    );
    expect(table.stderr).toBe('');

    const sized = cli('status', '--root', root, '--sizes');
    expect(sized.code).toBe(0);
    expect(sized.stdout).toMatch(new RegExp(`${live.outputs.key}\\s+live\\s+[\\d.]+ KiB\\s+1\\s`));
    expect(sized.stdout).toMatch(/total: 3 lanes \(1 live, 1 kept, 1 parked\), [\d.]+ KiB\n/);
    // Not a terminal: one line for the phase, no live redraws.
    expect(sized.stderr).toMatch(/^sizing: 3\/3 lanes, 4\d files, [\d.]+ KiB, [\d.]+ s\n$/);
  });
  it('a size is recorded only for the lane it measured: one claimed or changed meanwhile gets none', async () => {
    const root = newJob().root;
    const job = await finishedJob(root, { cleanup: 'never' }, 3);
    const key = job.outputs.key;
    const metaFile = path.join(root, 'meta', `${key}.json`);
    expect(
      await within(20_000, () => 'measured' in JSON.parse(fs.readFileSync(metaFile, 'utf8'))),
    ).toBeGreaterThanOrEqual(0);
    awaitBackgroundDeletes(path.dirname(root)); // and its lock released
    // The lane is live again (a lease held on it) while the measurement runs: it waits for nobody.
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    delete meta.bytes;
    delete meta.files;
    delete meta.measured;
    fs.writeFileSync(metaFile, JSON.stringify(meta));
    const holder = spawnSync(
      'flock',
      [
        '-n',
        path.join(root, 'locks', `${key}.lock`),
        process.execPath,
        CLI,
        'empty-trash',
        '--root',
        root,
        '--measure',
        key,
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(holder.status).toBe(0);
    expect(JSON.parse(fs.readFileSync(metaFile, 'utf8')).measured).toBeUndefined();
    // The metadata it had written ahead of the lock is dropped, not left behind.
    expect(fs.readdirSync(path.join(root, 'meta')).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
    // Free again: the same command records it.
    expect(cli('empty-trash', '--root', root, '--measure', key).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(metaFile, 'utf8'))).toMatchObject({ files: 3 });
    // Only a key runlane makes is accepted.
    const bad = cli('empty-trash', '--root', root, '--measure', '../meta');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("option '--measure <key>' argument '../meta' is invalid");
  });
  it('a kept lane whose lock runlane holds for a moment (its size being recorded) is still kept, and a sweep leaves it', async () => {
    const root = newJob().root;
    const job = await finishedJob(root, { cleanup: 'never' }, 1);
    awaitBackgroundDeletes(path.dirname(root)); // its real measurement is done
    const key = job.outputs.key;
    const lock = path.join(root, 'locks', `${key}.lock`);
    await sleep(1100); // older than --max-age 1s
    // Held meanwhile by another process: what the background measurement does for a moment.
    const holder = spawn('flock', ['-n', lock, 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      const taken = () => spawnSync('flock', ['-n', lock, 'true']).status !== 0;
      expect(await within(10_000, taken)).toBeGreaterThanOrEqual(0);
      const status = cli('status', '--root', root, '--json').json();
      const sweep = cli('sweep', '--root', root, '--max-age', '1s', '--json').json();
      expect(status.lanes.find((lane: Lane) => lane.key === key)?.state).toBe('kept');
      const left = sweep.entries.find((entry: { key: string }) => entry.key === key);
      expect(left).toMatchObject({ state: 'kept', outcome: 'left' });
      expect(left.reason).toMatch(/^busy: another process holds its lock/);
      // The table lists it: the operator sees that an eviction did not happen, and why.
      const table = cli('sweep', '--root', root, '--max-age', '1s');
      expect(table.stdout).toMatch(new RegExp(`${key}.*busy: another process holds its lock`));
      expect(fs.existsSync(path.join(root, 'lanes', key))).toBe(true);
    } finally {
      // The group: sleep inherited the lock from flock.
      process.kill(-holder.pid!, 'SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
      expect(await within(10_000, () => spawnSync('flock', ['-n', lock, 'true']).status === 0)).toBeGreaterThanOrEqual(
        0,
      );
    }
    // Free again: evicted past max-age as any kept lane.
    const evicted = cli('sweep', '--root', root, '--max-age', '1s', '--json');
    expect(evicted.json().entries.find((entry: { key: string }) => entry.key === key)).toMatchObject({
      outcome: 'evicted',
    });
  });
});

describe('classifying lanes without a process per lane', () => {
  it('status and metrics take no lock per lane: /proc/locks decides, after one canary lock per root', async () => {
    const root = newJob().root;
    for (let i = 0; i < 3; i++) await finishedJob(root, { cleanup: 'never' }, 1);
    const { live, orphan } = await liveAndOrphan(root);

    // flock on PATH is a wrapper that counts its runs: every lock runlane takes goes through it.
    const bin = path.join(live.dir, 'bin');
    const log = path.join(live.dir, 'flock.log');
    fs.mkdirSync(bin);
    const real = spawnSync('sh', ['-c', 'command -v flock'], { encoding: 'utf8' }).stdout.trim();
    fs.writeFileSync(path.join(bin, 'flock'), `#!/bin/sh\necho run >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, RUNLANE_ROOT: '' };
    const runs = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);

    const status = spawnSync(process.execPath, [CLI, 'status', '--root', root, '--json'], { encoding: 'utf8', env });
    expect(status.status).toBe(0);
    const states = Object.fromEntries(JSON.parse(status.stdout).lanes.map((lane: Lane) => [lane.key, lane.state]));
    expect(states[live.outputs.key]).toBe('live');
    expect(states[orphan.outputs.key]).toBe('orphan');
    expect(Object.values(states).sort()).toEqual(['kept', 'kept', 'kept', 'live', 'orphan']);
    // One run: the canary that shows /proc/locks lists locks taken on this file system.
    expect(runs()).toBe(1);
    const metrics = spawnSync(process.execPath, [CLI, 'metrics', '--root', root], { encoding: 'utf8', env });
    expect(metrics.status).toBe(0);
    expect(metrics.stdout).toMatch(/runlane_lanes\{state="live"\} 1/);
    expect(metrics.stdout).toMatch(/runlane_lanes\{state="orphan"\} 1/);
    expect(runs()).toBe(2);

    // A canary that cannot be taken (a job planted a symlink there): every unlisted lock is
    // tried for real instead, and the answer is the same.
    const canary = path.join(root, 'locks', '.runlane-canary');
    fs.rmSync(canary, { force: true });
    fs.symlinkSync('/etc/passwd', canary);
    const passwd = fs.readFileSync('/etc/passwd', 'utf8');
    const probed = spawnSync(process.execPath, [CLI, 'status', '--root', root, '--json'], { encoding: 'utf8', env });
    expect(probed.status).toBe(0);
    expect(Object.fromEntries(JSON.parse(probed.stdout).lanes.map((lane: Lane) => [lane.key, lane.state]))).toEqual(
      states,
    );
    expect(runs()).toBe(2 + 4); // the three kept lanes and the orphan
    expect(fs.readlinkSync(canary)).toBe('/etc/passwd');
    expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(passwd);
  });
});

describe('the sweep table on a root of many kept lanes', () => {
  it('lists what it did, live lanes and problems; kept and parked lanes left in place are counted, not listed', async () => {
    const root = newJob().root;
    const kept = [await finishedJob(root, { cleanup: 'never' }, 1), await finishedJob(root, { cleanup: 'never' }, 1)];
    const { live, orphan } = await liveAndOrphan(root);
    const out = cli('sweep', '--root', root);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`${orphan.outputs.key}\\s+orphan\\s+reaped`));
    expect(out.stdout).toMatch(new RegExp(`${live.outputs.key}\\s+live\\s+left`));
    for (const job of kept) expect(out.stdout).not.toContain(job.outputs.key);
    expect(out.stdout).toContain(
      '(2 kept or parked lanes left in place are not listed: runlane status shows them, sweep --json lists every lane)',
    );
    expect(out.stdout).toMatch(/removed 1 \(1 orphan reaped\).*left 1 live, 2 kept/);
    const json = cli('sweep', '--root', root, '--json').json();
    for (const job of kept)
      expect(json.entries).toContainEqual(expect.objectContaining({ key: job.outputs.key, outcome: 'left' }));
  });
});
