import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { CLI, cli, cliAsNobody, disposeJobs, newJob, finishedJob } from '../helpers/jobs.js';

afterEach(disposeJobs);

type Lane = { key: string; state: string; bytes?: number; files?: number; measured?: string };

describe('status in O(lanes): sizes recorded when a lane is kept or parked', () => {
  it('a directory the runner user may not enter counts as itself; the rest of the lane is still measured', async () => {
    const root = newJob().root;
    const job = await finishedJob(root, { cleanup: 'never' }, 4);
    awaitBackgroundDeletes(path.dirname(root));
    const closed = path.join(job.outputs.path, 'closed');
    fs.mkdirSync(closed);
    fs.writeFileSync(path.join(closed, 'hidden'), 'x'.repeat(100_000));
    expect(spawnSync('chown', ['-R', '65534:65534', root]).status).toBe(0);
    fs.chmodSync(closed, 0o600);
    fs.chmodSync(path.dirname(root), 0o755);
    const [command, ...args] = cliAsNobody('status', '--root', root, '--sizes', '--json');
    const out = spawnSync(command, args, { encoding: 'utf8' });
    expect(out.stderr).not.toMatch(/EACCES/);
    expect(out.status).toBe(0);
    const lane = JSON.parse(out.stdout).lanes.find((each: Lane) => each.key === job.outputs.key);
    expect(lane).toMatchObject({ state: 'kept', files: 4 });
    expect(lane.bytes).toBeGreaterThanOrEqual(4 * 4096);
  });
});

describe('classifying lanes without a process per lane', () => {
  it('inside another pid namespace (a container), where /proc/locks hides the lease, a live lane is still never reaped', async () => {
    const root = newJob().root;
    const live = newJob({ root, inputs: { root } });
    expect((await live.phase('main')).code).toBe(0);
    const inside = (...args: string[]) =>
      spawnSync(
        'unshare',
        ['--pid', '--fork', '--mount-proc', process.execPath, CLI, ...args, '--root', root, '--json'],
        {
          encoding: 'utf8',
          env: { ...process.env, RUNLANE_ROOT: '' },
        },
      );
    const locks = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'cat', '/proc/locks'], { encoding: 'utf8' });
    expect(locks.stdout).toBe('');
    const status = inside('status');
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout).lanes).toEqual([
      expect.objectContaining({ key: live.outputs.key, state: 'live' }),
    ]);
    const sweep = inside('sweep');
    expect(sweep.status).toBe(0);
    expect(JSON.parse(sweep.stdout).entries).toEqual([
      expect.objectContaining({ key: live.outputs.key, state: 'live', outcome: 'left' }),
    ]);
    expect(fs.existsSync(live.outputs.path)).toBe(true);
  });
});

describe('keep-free that cannot be reached', () => {
  it('the sweep says how far off it is and that the rest of the disk is not runlane’s', async () => {
    const root = newJob().root;
    const live = newJob({ root, inputs: { root } });
    expect((await live.phase('main')).code).toBe(0);
    const out = cli('sweep', '--root', root, '--keep-free', '99%');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('keep-free not reached (see below)');
    expect(out.stdout).toMatch(
      /keep-free cannot be reached: [\d.]+ [KMGT]iB free on the root's file system, [\d.]+ [KMGT]iB wanted, and nothing the sweep may remove is left \(1 live lane;/,
    );
    const json = cli('sweep', '--root', root, '--keep-free', '99%', '--json').json();
    expect(json.keepFree).toMatchObject({ reached: false });
    expect(json.keepFree.wantedBytes).toBeGreaterThan(json.keepFree.freeBytes);
    expect(fs.existsSync(live.outputs.path)).toBe(true);
  });
});
