import fs from 'node:fs';
import { afterEach, describe, expect, it } from '@jest/globals';
import { cli, disposeJobs, kill, newJob, processesMentioning, within } from '../helpers/jobs.js';
import { fill, trashEmpty, trashOf } from '../helpers/trees.js';

afterEach(disposeJobs);

describe('post in O(1): rename to trash, delete in the background', () => {
  it('frees the lane path of tens of thousands of files when post returns; the background empties the trash', async () => {
    const job = newJob({ inputs: { presets: 'cargo' } });
    await job.phase('main');
    fill(job.outputs.path, 20_000);
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(fs.existsSync(job.outputs.path)).toBe(false);
    expect(post.stdout).toMatch(/moved to the trash in \d+ ms; deleting it in the background \(pid (\d+)\)/);
    const pid = Number(/background \(pid (\d+)\)/.exec(post.stdout)?.[1]);
    // The background delete must survive the runner's orphan cleanup: no RUNNER_TRACKING_ID.
    let environ = '';
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      environ = 'gone';
    }
    expect(environ).not.toContain(job.env.RUNNER_TRACKING_ID as string);
    expect(await trashEmpty(job.root)).toBeGreaterThanOrEqual(0);
    expect(await within(20_000, () => processesMentioning(job.root).length === 0)).toBeGreaterThanOrEqual(0);
  });
  it('the next sweep finishes what a killed background delete left', async () => {
    const job = newJob();
    await job.phase('main');
    fill(job.outputs.path, 5_000);
    await job.phase('post');
    // Only this job's background delete: other test files run their own at the same time.
    kill(processesMentioning('empty-trash').filter((pid) => processesMentioning(job.root).includes(pid)));
    const sweep = cli('sweep', '--root', job.root, '--json');
    expect(sweep.code).toBe(0);
    expect(trashOf(job.root)).toEqual([]);
  });
});
