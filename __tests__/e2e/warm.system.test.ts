import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from '@jest/globals';
import { CLI, disposeJobs, laneStates, newJob, within, prJob, runJob } from '../helpers/jobs.js';

afterEach(disposeJobs);

describe('warm start: a successful lane handed to the next run of its scope by rename', () => {
  it('two runs starting together: exactly one claims, the other starts cold', async () => {
    const root = newJob().root;
    await runJob(prJob(root));
    for (let round = 0; round < 3; round++) {
      const racers = [prJob(root), prJob(root)];
      await Promise.all(racers.map((job) => job.phase('main')));
      expect(racers.map((job) => job.outputs.warm).sort()).toEqual(['false', 'true']);
      await Promise.all(racers.map(async (job) => ((job.status = 'success'), job.phase('post'))));
      // Both parked; keep 1 leaves one for the next round, the other deleted in the background.
      expect(await within(20_000, () => Object.values(laneStates(root)).join() === 'parked')).toBeGreaterThanOrEqual(0);
    }
  });
  it('posts parking at once in one slot together leave exactly warm-keep lanes', async () => {
    const root = newJob().root;
    for (let round = 0; round < 3; round++) {
      const jobs = Array.from({ length: 4 }, () => prJob(root, { 'warm-keep': '2', 'warm-from': 'same' }));
      // Mains one by one (the first two rounds' leftovers are claimed), posts all at once.
      for (const job of jobs) expect((await job.phase('main')).code).toBe(0);
      const posts = await Promise.all(jobs.map(async (job) => ((job.status = 'success'), job.phase('post'))));
      for (const post of posts) expect(post.code).toBe(0);
      expect(await within(20_000, () => !Object.values(laneStates(root)).includes('trash'))).toBeGreaterThanOrEqual(0);
      const states = laneStates(root);
      expect(Object.values(states)).toEqual(['parked', 'parked']);
      for (const key of Object.keys(states)) expect(jobs.map((job) => job.outputs.key)).toContain(key);
    }
  });
  it('a claim and a sweep eviction never interleave: each parked lane is claimed or evicted, once', async () => {
    const root = newJob().root;
    // Parked lanes in many slots (one PR each), then claims and evicting sweeps at once.
    const prs = Array.from({ length: 8 }, (_, i) => i + 10);
    for (const pr of prs) await runJob(prJob(root, {}, `refs/pull/${pr}/merge`));
    const parkedKeys = Object.keys(laneStates(root));
    expect(parkedKeys).toHaveLength(prs.length);
    const claimers = prs.map((pr) => prJob(root, {}, `refs/pull/${pr}/merge`));
    const sweeps = [1, 2].map(
      () =>
        new Promise<string>((resolve) => {
          let out = '';
          const child = spawn(process.execPath, [
            CLI,
            'sweep',
            '--root',
            root,
            '--max-age',
            '1s',
            '--keep-free',
            'off',
            '--json',
          ]);
          child.stdout.on('data', (chunk) => (out += chunk));
          child.on('close', () => resolve(out));
        }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [sweepOuts] = await Promise.all([Promise.all(sweeps), Promise.all(claimers.map((job) => job.phase('main')))]);
    const evicted = sweepOuts.flatMap((out) =>
      JSON.parse(out)
        .entries.filter((e: { state: string; outcome: string }) => e.state === 'parked' && e.outcome === 'evicted')
        .map((e: { key: string }) => e.key),
    );
    const claimed = claimers
      .filter((job) => job.outputs.warm === 'true')
      .map((job) => JSON.stringify(job.outputs.path));
    expect(new Set(evicted).size).toBe(evicted.length);
    expect(evicted.length + claimed.length).toBe(prs.length);
    for (const job of claimers) expect(laneStates(root)[job.outputs.key]).toBe('live');
  });
});
