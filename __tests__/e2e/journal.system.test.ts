import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { CLI, cli, disposeJobs, laneStates, newJob, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

interface Record {
  time: string;
  action: string;
  key: string;
  reason?: string;
  bytes?: number;
  detail?: string;
  by: string;
}

const log = (root: string, ...args: string[]): Record[] => {
  const out = cli('log', '--root', root, '--json', ...args);
  expect(out.code).toBe(0);
  return out.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record);
};

describe('the journal answers "what deleted this and why"', () => {
  it("records post's move to the trash, the background delete, a park, a claim and a sweep's reap, with who did each", async () => {
    const job = newJob();
    await job.phase('main');
    fs.writeFileSync(path.join(job.outputs.path, 'big'), Buffer.alloc(256 * 1024));
    await job.phase('post');
    expect(await within(20_000, () => log(job.root).some((r) => r.action === 'deleted'))).toBeGreaterThanOrEqual(0);
    const [trashed, deleted] = log(job.root);
    expect(trashed).toMatchObject({ action: 'trashed', key: job.outputs.key, by: 'post', reason: 'cleanup: always' });
    expect(deleted).toMatchObject({ action: 'deleted', by: 'post' });
    expect(deleted.key.startsWith(`${job.outputs.key}~`)).toBe(true);

    const warm = newJob({ root: job.root, inputs: { root: job.root, warm: 'true' } });
    await warm.phase('main');
    await warm.phase('post');
    const next = newJob({ root: job.root, inputs: { root: job.root, warm: 'true' } });
    await next.phase('main');
    expect(next.outputs.warm).toBe('true');
    const orphan = newJob({ root: job.root });
    await orphan.phase('main');
    process.kill(Number(orphan.state['holder-pid']), 'SIGKILL');
    expect(await within(10_000, () => laneStates(job.root)[orphan.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
    expect(cli('sweep', '--root', job.root).code).toBe(0);

    const records = log(job.root);
    expect(records).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ action: 'parked', key: warm.outputs.key, by: 'post' }),
        expect.objectContaining({ action: 'claimed', key: warm.outputs.key, detail: next.outputs.key, by: 'main' }),
        expect.objectContaining({
          action: 'reaped',
          key: orphan.outputs.key,
          by: 'cli',
          reason: 'orphan: no job holds its lease',
        }),
      ]),
    );
    expect(log(job.root, '--key', orphan.outputs.key).map((r) => r.action)).toEqual(expect.arrayContaining(['reaped']));
    expect(log(job.root, '--key', orphan.outputs.key).every((r) => r.key.includes(orphan.outputs.key))).toBe(true);
    const table = cli('log', '--root', job.root, '--since', '1h');
    expect(table.stdout).toMatch(/reaped\s+\S+\s+.*cli@/);
  });

  it('concurrent writers never interleave a line; a torn line is skipped; the journal rotates by size', async () => {
    const job = newJob();
    await job.phase('main');
    await job.phase('post');
    const root = job.root;
    // A torn line, as a crash mid-write would leave, and a foreign one.
    fs.appendFileSync(path.join(root, 'journal.jsonl'), '{"time": "2026-01-01T00:00\nnot json\n');
    // Eight sweeps and empty-trash runs at once, each appending as it goes.
    const orphans = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const j = newJob({ root });
        await j.phase('main');
        process.kill(Number(j.state['holder-pid']), 'SIGKILL');
        return j.outputs.key;
      }),
    );
    expect(
      await within(10_000, () => orphans.every((key) => laneStates(root)[key] === 'orphan')),
    ).toBeGreaterThanOrEqual(0);
    await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise((resolve) =>
            spawn(process.execPath, [CLI, 'sweep', '--root', root], {
              stdio: 'ignore',
            }).on('close', resolve),
          ),
      ),
    );
    const records = log(root);
    const reaped = records.filter((r) => r.action === 'reaped').map((r) => r.key);
    expect(reaped.sort()).toEqual([...orphans].sort());
    const lines = fs.readFileSync(path.join(root, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean);
    expect(lines.length - 2).toBe(records.length);

    fs.appendFileSync(path.join(root, 'journal.jsonl'), `${'x'.repeat(4 * 1024 * 1024)}\n`);
    const after = newJob({ root });
    await after.phase('main');
    await after.phase('post');
    expect(fs.existsSync(path.join(root, 'journal.1.jsonl'))).toBe(true);
    expect(fs.statSync(path.join(root, 'journal.jsonl')).size).toBeLessThan(64 * 1024);
    expect(log(root).some((r) => r.key === after.outputs.key && r.action === 'trashed')).toBe(true);
  });
});

describe('a journal a job has tampered with', () => {
  it('a FIFO, a directory or a hard link at its path never hangs or follows; forged lines never count', async () => {
    const job = newJob();
    await job.phase('main');
    const root = job.root;
    const file = path.join(root, 'journal.jsonl');
    const outside = path.join(job.dir, 'outside.txt');
    fs.writeFileSync(outside, 'keep\n');
    const planted: [string, () => void][] = [
      ['a FIFO', () => spawnSync('mkfifo', [file])],
      ['a directory', () => fs.mkdirSync(path.join(file, 'sub'), { recursive: true })],
      ['a hard link to a file outside', () => fs.linkSync(outside, file)],
    ];
    for (const [, plant] of planted) {
      fs.rmSync(file, { recursive: true, force: true });
      plant();
      const sweep = spawnSync(process.execPath, [CLI, 'sweep', '--root', root], { encoding: 'utf8', timeout: 20_000 });
      expect(sweep.status).toBe(0);
      const out = spawnSync(process.execPath, [CLI, 'log', '--root', root, '--json'], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(out.status).toBe(0);
      expect(fs.lstatSync(file).isFile()).toBe(true);
      expect(fs.readFileSync(outside, 'utf8')).toBe('keep\n');
    }
    // Forged lines: a negative size, an object, a sweep dated in 2099, an unknown action.
    const forged = [
      { time: new Date().toISOString(), action: 'deleted', key: 'x', bytes: -1, by: 'cli' },
      { time: new Date().toISOString(), action: 'deleted', key: 'y', bytes: { a: 1 }, by: 'cli' },
      { time: '2099-01-01T00:00:00.000Z', action: 'swept', key: '', seconds: 1, by: 'cli' },
      { time: new Date().toISOString(), action: 'exploded', key: 'z', by: 'cli' },
    ];
    fs.appendFileSync(file, forged.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const metrics = cli('metrics', '--root', root);
    expect(metrics.code).toBe(0);
    const last = /^runlane_last_sweep_timestamp_seconds (\S+)$/m.exec(metrics.stdout)?.[1];
    expect(Number(last)).toBeLessThan(Date.now() / 1000 + 600);
    expect(log(root).map((record) => record.key)).not.toEqual(expect.arrayContaining(['x', 'y', 'z']));
  });

  it('a sparse 600 MB journal costs a bounded read: metrics and log still answer, with the records written after it', async () => {
    const job = newJob();
    await job.phase('main');
    const root = job.root;
    const file = path.join(root, 'journal.jsonl');
    expect(spawnSync('truncate', ['-s', '600M', file]).status).toBe(0);
    // A real sweep after it: its record is the last line of the file.
    expect(cli('sweep', '--root', root).code).toBe(0);
    const metrics = cli('metrics', '--root', root);
    expect(metrics.stderr).toBe('');
    expect(metrics.code).toBe(0);
    const last = Number(/^runlane_last_sweep_timestamp_seconds (\S+)$/m.exec(metrics.stdout)?.[1]);
    expect(Math.abs(last - Date.now() / 1000)).toBeLessThan(600);
    expect(log(root).map((record) => record.action)).toContain('swept');
    // Rotation moves it to journal.1.jsonl, where it is read the same bounded way.
    const sweep = cli('sweep', '--root', root);
    expect(sweep.code).toBe(0);
    expect(fs.statSync(path.join(root, 'journal.1.jsonl')).size).toBeGreaterThan(500 * 1024 * 1024);
    expect(cli('metrics', '--root', root).code).toBe(0);
    expect(log(root).filter((record) => record.action === 'swept').length).toBeGreaterThanOrEqual(1);
  });

  it('record times are ISO-8601 instants: a sweep dated in a form Date.parse also takes is dropped, and never pins the last sweep', async () => {
    const job = newJob();
    await job.phase('main');
    const root = job.root;
    expect(cli('sweep', '--root', root).code).toBe(0);
    const file = path.join(root, 'journal.jsonl');
    const forged = [
      { time: 'Sat, 01 Jan 2000 00:00:00 GMT', action: 'swept', key: '', seconds: 1, by: 'cli' },
      { time: '2000-01-01', action: 'swept', key: '', seconds: 1, by: 'cli' },
      { time: '2000-01-01T00:00:00+00:00', action: 'swept', key: 'offset', seconds: 1, by: 'cli' },
    ];
    fs.appendFileSync(file, forged.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const metrics = cli('metrics', '--root', root);
    expect(metrics.code).toBe(0);
    const last = Number(/^runlane_last_sweep_timestamp_seconds (\S+)$/m.exec(metrics.stdout)?.[1]);
    expect(Math.abs(last - Date.now() / 1000)).toBeLessThan(600);
    const recent = log(root, '--since', '1h');
    expect(recent.filter((record) => record.action === 'swept')).toHaveLength(1);
    for (const record of recent) expect(record.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("what decides alerts is runlane's to verify: a sweep dated in the future never holds the alert off; a forged retained marker never hides a live lane", async () => {
    const job = newJob();
    await job.phase('main');
    const root = job.root;
    expect(cli('sweep', '--root', root).code).toBe(0);
    const future = { time: '2099-01-01T00:00:00.000Z', action: 'swept', key: '', seconds: 1, by: 'cli' };
    fs.appendFileSync(path.join(root, 'journal.jsonl'), `${JSON.stringify(future)}\n`);
    // The job writes a `retained` marker into its own live lane's metadata.
    const metaFile = path.join(root, 'meta', `${job.outputs.key}.json`);
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    fs.writeFileSync(metaFile, JSON.stringify({ ...meta, retained: 'cleanup: never' }));
    const metrics = cli('metrics', '--root', root);
    expect(metrics.code).toBe(0);
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics.stdout)?.[1]);
    expect(Math.abs(value('runlane_last_sweep_timestamp_seconds') - Date.now() / 1000)).toBeLessThan(600);
    expect(value('runlane_lanes\\{state="live"\\}')).toBe(1);
    expect(value('runlane_lanes\\{state="kept"\\}')).toBe(0);
    expect(value('runlane_oldest_live_lane_age_seconds')).toBeGreaterThanOrEqual(0);
    await job.phase('post');
  });
});
