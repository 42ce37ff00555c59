import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import {
  cli,
  disposeJobs,
  kill,
  laneStates,
  newJob,
  processesMentioning,
  within,
  liveJobs,
  crash,
} from '../helpers/jobs.js';

afterEach(disposeJobs);

describe('the lease: liveness is the lock, bounded by the job', () => {
  it('a live lane survives every sweep: the CLI, mode sweep and pre', async () => {
    const [job] = await liveJobs(newJob().root, 1);
    const root = job.root;
    expect(cli('sweep', '--root', root, '--max-age', '1s', '--keep-free', '99%').code).toBe(0);
    const sweeper = newJob({ root, inputs: { root, mode: 'sweep' } });
    expect((await sweeper.phase('main')).code).toBe(0);
    expect(sweeper.summary).toContain('runlane: sweep');
    expect((await newJob({ root, inputs: { root } }).phase('pre')).code).toBe(0);
    expect(fs.existsSync(job.outputs.path)).toBe(true);
    expect(laneStates(root)).toEqual({ [job.outputs.key]: 'live' });
  });

  it("becomes an orphan when the job's worker is SIGKILLed without post, and is reaped", async () => {
    const job = newJob();
    expect((await job.phase('main', { worker: true })).code).toBe(0);
    await job.run('sh', ['-c', 'mkdir -p "$RUNLANE_DIR/deep/er" && echo x > "$RUNLANE_DIR/deep/er/f"']);
    expect(laneStates(job.root)[job.outputs.key]).toBe('live');
    job.killWorker();
    expect(await within(20_000, () => laneStates(job.root)[job.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
    const sweep = cli('sweep', '--root', job.root, '--json');
    expect(sweep.code).toBe(0);
    const entry = sweep.json().entries.find((e: { key: string }) => e.key === job.outputs.key);
    expect(entry).toMatchObject({ outcome: 'reaped', state: 'orphan' });
    expect(fs.existsSync(job.outputs.path)).toBe(false);
    expect(fs.readdirSync(path.join(job.root, 'locks'))).toEqual([]);
  });

  it("ends with the runner's orphan cleanup (SIGKILL of every process carrying the job's RUNNER_TRACKING_ID)", async () => {
    const job = newJob();
    const other = newJob({ root: job.root, inputs: { root: job.root } });
    await job.phase('main');
    await other.phase('main');
    const tracking = job.env.RUNNER_TRACKING_ID as string;
    const tracked = processesMentioning(tracking, 'environ');
    expect(tracked).toContain(Number(job.state['holder-pid']));
    kill(tracked);
    expect(await within(20_000, () => laneStates(job.root)[job.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
    expect(laneStates(job.root)[other.outputs.key]).toBe('live');
    cli('sweep', '--root', job.root);
    expect(laneStates(job.root)).toEqual({ [other.outputs.key]: 'live' });
  });

  it('post still cleans up after the holder is gone', async () => {
    const job = newJob();
    await job.phase('main');
    crash([job]);
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(fs.existsSync(job.outputs.path)).toBe(false);
  });
});

describe('the sweep', () => {
  it('after a simulated reboot (every holder and every lock file lost) reaps everything at once', async () => {
    const root = newJob().root;
    const jobs = await liveJobs(root, 5);
    crash(jobs);
    fs.rmSync(path.join(root, 'locks'), { recursive: true });
    const sweep = cli('sweep', '--root', root, '--json');
    expect(sweep.code).toBe(0);
    expect(sweep.json().entries.filter((e: { outcome: string }) => e.outcome === 'reaped')).toHaveLength(5);
    expect(fs.readdirSync(path.join(root, 'lanes'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'meta'))).toEqual([]);
  });

  it('dry-run reports what it would remove and deletes nothing', async () => {
    const root = newJob().root;
    const jobs = await liveJobs(root, 3);
    crash(jobs);
    const before = spawnSync('find', [root], { encoding: 'utf8' }).stdout;
    const dry = cli('sweep', '--root', root, '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('would be reaped');
    expect(dry.stdout).toContain('[dry run: nothing deleted]');
    expect(spawnSync('find', [root], { encoding: 'utf8' }).stdout).toBe(before);
    const json = cli('sweep', '--root', root, '--dry-run', '--json').json();
    expect(json.entries.filter((e: { outcome: string }) => e.outcome === 'reaped')).toHaveLength(3);
    expect(spawnSync('find', [root], { encoding: 'utf8' }).stdout).toBe(before);
  });

  it('refuses a root without the marker, deleting nothing', async () => {
    const job = newJob();
    const foreign = path.join(job.dir, 'someone');
    fs.mkdirSync(path.join(foreign, 'lanes', 'x'), { recursive: true });
    fs.writeFileSync(path.join(foreign, 'lanes', 'x', 'data'), 'precious');
    for (const root of [foreign, '/home', '/']) {
      const result = cli('sweep', '--root', root);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/runlane: Option '--root' has an invalid value/);
    }
    expect(fs.readFileSync(path.join(foreign, 'lanes', 'x', 'data'), 'utf8')).toBe('precious');
  });

  it('evicts kept lanes, oldest first, while free space is below keep-free', async () => {
    const root = newJob().root;
    const kept = [
      ...(await liveJobs(root, 1, { cleanup: 'never' })),
      ...(await liveJobs(root, 1, { cleanup: 'never' })),
    ];
    for (const job of kept) await job.phase('post');
    const created = cli('status', '--root', root, '--json')
      .json()
      .lanes.map((lane: { key: string; created: string }) => [lane.key, lane.created]);
    expect(Object.fromEntries(created)[kept[0].outputs.key] < Object.fromEntries(created)[kept[1].outputs.key]).toBe(
      true,
    );
    // No file system here has 99.9% free: every kept lane goes, oldest first.
    const report = cli('sweep', '--root', root, '--keep-free', '99.9%', '--json').json();
    expect(report.entries.map((e: { outcome: string }) => e.outcome)).toEqual(['evicted', 'evicted']);
    expect(report.entries.map((e: { key: string }) => e.key)).toEqual(kept.map((job) => job.outputs.key));
  });

  it('status and sweep print readable tables, and help for every command', async () => {
    const root = newJob().root;
    const [job] = await liveJobs(root, 1);
    const status = cli('status', '--root', root);
    expect(status.stdout.split('\n')[0]).toMatch(/^lane\s+state\s+size\s+files\s+age\s+repository\s+scope\s+warm$/);
    expect(status.stdout).toContain(`${job.outputs.key}  live`);
    expect(cli('--help').stdout).toMatch(/status[\s\S]*sweep/);
    expect(cli('sweep', '--help').stdout).toMatch(/--dry-run[\s\S]*--max-age[\s\S]*--keep-free[\s\S]*--json/);
    const bad = cli('sweep', '--root', root, '--max-age', 'soon');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--max-age.*soon/);
  });
});

describe('the sweep on a terminal', () => {
  it('in a log (no terminal): no live line, one line per phase', async () => {
    const root = newJob().root;
    crash(await liveJobs(root, 2));
    const out = cli('sweep', '--root', root);
    expect(out.code).toBe(0);
    expect(out.stderr).not.toContain('\r');
    expect(out.stderr.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(/^scan: 2 lanes, [\d.]+ s$/),
      expect.stringMatching(/^trash: 2\/2 entries, .*[\d.]+ s$/),
    ]);
  });
});
