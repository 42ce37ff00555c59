import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';
import { CLI, cli, disposeJobs, kill, laneStates, newJob, processesMentioning, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

/** Starts `count` jobs' main phases on one root; returns them with their lanes live. */
async function liveJobs(root: string, count: number, inputs: Record<string, string> = {}) {
  const jobs = Array.from({ length: count }, () => newJob({ root, inputs: { root, ...inputs } }));
  for (let i = 0; i < jobs.length; i += 4) {
    const results = await Promise.all(jobs.slice(i, i + 4).map((job) => job.phase('main')));
    expect(results.map((result) => result.code)).toEqual(results.map(() => 0));
  }
  return jobs;
}

/** Kills the lease holders of these jobs, as a crash would: their lanes become orphans. */
function crash(jobs: { state: Record<string, string> }[]) {
  kill(jobs.map((job) => Number(job.state['holder-pid'])));
}

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

  it('ends at the lease-timeout deadline even while the job runs on', async () => {
    const job = newJob({ inputs: { 'lease-timeout': '2s' } });
    await job.phase('main', { worker: true });
    expect(laneStates(job.root)[job.outputs.key]).toBe('live');
    expect(await within(20_000, () => laneStates(job.root)[job.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
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
    // A live line was drawn in place, then cleared and replaced by the phase's final line.
    // eslint-disable-next-line no-control-regex
    expect(out.stdout).toMatch(/\r\u001b\[Ktrash: [0-3]\/3 entries, [\d,]+ files, [\d.]+ (KiB|MiB)/);
    // eslint-disable-next-line no-control-regex
    expect(out.stdout).toMatch(/\r\u001b\[Ktrash: 3\/3 entries, 45,0\d\d files, [\d.]+ MiB, [\d.]+ s\r?\n/);
    expect(out.stdout).toMatch(/^scan: 3 lanes, [\d.]+ s\r?$/m);
    expect(out.stdout).toMatch(
      /3 lanes and 0 parked lanes scanned; removed 3 \(3 orphans reaped\), freed [\d.]+ MiB; left 0 live/,
    );
  });

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
