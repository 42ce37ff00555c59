import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { laneStates, newJob, disposeJobs, processesMentioning, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

const lanesOf = (root: string) =>
  fs.existsSync(path.join(root, 'lanes')) ? fs.readdirSync(path.join(root, 'lanes')) : [];

describe('the bundled action, phase by phase as a runner runs it', () => {
  it('creates a leased lane, points tools at it, and removes it in post', async () => {
    const job = newJob({
      inputs: { presets: 'cargo,tmp,pytest,go', env: 'FOO_CHECKPOINT_DIR=checkpoints\nAPP_STATE' },
      env: { PYTEST_ADDOPTS: '-p no:cacheprovider' },
    });
    expect((await job.phase('pre')).code).toBe(0);
    const main = await job.phase('main');
    expect(main.code).toBe(0);
    const lane = job.outputs.path;
    expect(path.dirname(lane)).toBe(path.join(job.root, 'lanes'));
    expect(job.outputs.key).toBe(path.basename(lane));
    expect(job.outputs.warm).toBe('false');
    expect(job.exported).toMatchObject({
      RUNLANE_DIR: lane,
      CARGO_TARGET_DIR: `${lane}/cargo-target`,
      TMPDIR: `${lane}/tmp`,
      TMP: `${lane}/tmp`,
      TEMP: `${lane}/tmp`,
      GOTMPDIR: `${lane}/go-tmp`,
      PYTEST_ADDOPTS: `-p no:cacheprovider --basetemp=${lane}/pytest`,
      FOO_CHECKPOINT_DIR: `${lane}/checkpoints`,
      APP_STATE: lane,
    });
    for (const dir of ['cargo-target', 'tmp', 'go-tmp', 'checkpoints'])
      expect(fs.statSync(path.join(lane, dir)).isDirectory()).toBe(true);
    expect(job.outputs['docker-args']).toContain(`-v ${lane}:${lane}`);
    expect(job.outputs['docker-args']).toContain(`-e CARGO_TARGET_DIR=${lane}/cargo-target`);
    expect(job.summary).toContain(lane);
    expect(main.stdout).toContain('::group::runlane: lane');

    // A later step sees the variables; the lane is live while the job runs.
    const step = await job.run('sh', ['-c', 'echo data > "$FOO_CHECKPOINT_DIR/c1" && echo "$TMPDIR"']);
    expect(step.stdout.trim()).toBe(`${lane}/tmp`);
    expect(laneStates(job.root)).toEqual({ [job.outputs.key]: 'live' });
    const holder = Number(job.state['holder-pid']);
    expect(processesMentioning(job.root)).toContain(holder);

    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.warnings).toEqual([]);
    expect(fs.existsSync(lane)).toBe(false);
    expect(fs.readdirSync(path.join(job.root, 'locks'))).toEqual([]);
    expect(fs.readdirSync(path.join(job.root, 'meta'))).toEqual([]);
    expect(job.summary).toContain('moved to the trash');
    // The background delete empties the trash and ends by itself; the holder is gone.
    expect(
      await within(20_000, () => fs.readdirSync(path.join(job.root, 'trash')).length === 0),
    ).toBeGreaterThanOrEqual(0);
    expect(await within(20_000, () => processesMentioning(job.root).length === 0)).toBeGreaterThanOrEqual(0);
  });

  it.each([
    ['a dotted climb', 'refs/heads/../../etc'],
    ['a command substitution', 'refs/heads/$(touch pwned)'],
    ['backticks', 'refs/heads/`touch pwned`'],
    ['unicode', 'refs/heads/fonctionnalité/ブランチ/🚀'],
    ['300 characters', `refs/heads/${'b'.repeat(300)}`],
    ['an option', 'refs/heads/-rf'],
    ['an absolute path', 'refs/heads//etc/passwd'],
  ])('keeps a lane inside the root for a ref with %s', async (_, ref) => {
    const job = newJob({
      ref,
      env: { GITHUB_JOB: '../$(touch pwned)', GITHUB_REPOSITORY: '../../evil/`id`' },
      matrix: { os: '../../x', n: '$(touch pwned)' },
    });
    const main = await job.phase('main');
    expect(main.code).toBe(0);
    const lane = job.outputs.path;
    expect(path.dirname(lane)).toBe(path.join(job.root, 'lanes'));
    expect(path.basename(lane).length).toBeLessThanOrEqual(200);
    expect(path.basename(lane)).toMatch(/^[a-z0-9][a-z0-9._-]*$/);
    expect((await job.phase('post')).code).toBe(0);
    for (const dir of [job.workspace, job.dir, job.root, process.cwd()])
      expect(fs.existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(lanesOf(job.root)).toEqual([]);
  });

  it('gives matrix legs and concurrent jobs of one run separate lanes, live together', async () => {
    const legs = [{ os: 'linux' }, { os: 'macos' }, { os: 'linux', rust: 'nightly' }].map((matrix) =>
      newJob({ matrix, env: { RUNNER_TRACKING_ID: 'github_same' } }),
    );
    const root = legs[0].root;
    for (const leg of legs) leg.inputs.root = root;
    const results = await Promise.all(legs.map((leg) => leg.phase('main')));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    const paths = legs.map((leg) => leg.outputs.path);
    expect(new Set(paths).size).toBe(3);
    expect(Object.values(laneStates(root))).toEqual(['live', 'live', 'live']);
    await Promise.all(legs.map((leg) => leg.phase('post')));
    expect(lanesOf(root)).toEqual([]);
  });

  it.each(['gitea', 'forgejo'] as const)(
    'on %s, keeps two invocations with the same run, attempt and job apart',
    async (platform) => {
      const first = newJob({ platform, ref: 'refs/pull/9/head' });
      const second = newJob({ platform, ref: 'refs/pull/9/head', root: first.root });
      second.inputs.root = first.root;
      expect((await first.phase('main')).code).toBe(0);
      expect((await second.phase('main')).code).toBe(0);
      expect(first.outputs.path).not.toBe(second.outputs.path);
      expect(first.outputs.key).toContain('.pr-9.');
      const main = await newJob({ platform }).phase('main');
      expect(main.stdout).toContain(`runner: ${platform}`);
      for (const job of [first, second]) expect((await job.phase('post')).code).toBe(0);
      expect(lanesOf(first.root)).toEqual([]);
    },
  );

  it('takes the pull request number from the event payload when the ref is the base branch', async () => {
    const job = newJob({
      ref: 'refs/heads/main',
      event: { name: 'pull_request_target', payload: { pull_request: { number: 77 } } },
    });
    await job.phase('main');
    expect(job.outputs.key).toContain('.pr-77.');
    await job.phase('post');
  });
});

describe('bad inputs fail main, name the input and value, and create nothing', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'presets',
      { presets: 'cargo,rustup' },
      /Input 'presets' has an invalid value "cargo,rustup": unknown preset 'rustup'/,
    ],
    ['env name', { env: 'BAD-NAME=x' }, /Input 'env' has an invalid value "BAD-NAME=x"/],
    ['env absolute', { env: 'FOO=/etc' }, /Input 'env' .*'\/etc' is absolute/],
    ['env climb', { env: 'FOO=../x' }, /Input 'env' .*'\.\.'/],
    ['env reserved', { env: 'PATH=bin' }, /Input 'env' .*reserved/],
    ['env twice', { presets: 'tmp', env: 'TMPDIR=t' }, /TMPDIR is also set by preset tmp/],
    ['link absolute', { link: '/etc/passwd' }, /Input 'link' .*is absolute/],
    ['link climb', { link: '../../x' }, /Input 'link' .*'\.\.'/],
    [
      'cleanup',
      { cleanup: 'sometimes' },
      /Input 'cleanup' has an invalid value "sometimes"\. Accepted: always \| on-success \| never \| defer/,
    ],
    ['mode', { mode: 'fast' }, /Input 'mode' has an invalid value "fast"\. Accepted: lane \| sweep/],
    ['key', { key: '{repo}-{branch}' }, /Input 'key' .*unknown placeholder \{branch\}/],
    ['matrix', { matrix: '{not json' }, /Input 'matrix' has an invalid value "\{not json"/],
    ['root /', { root: '/' }, /Input 'root' has an invalid value "\/": it is the file-system root/],
    ['root relative', { root: 'lanes' }, /Input 'root' .*not absolute/],
    ['lease-timeout', { 'lease-timeout': 'forever' }, /Input 'lease-timeout' has an invalid value "forever"/],
    ['lease-timeout 0', { 'lease-timeout': '0' }, /Input 'lease-timeout' .*a bare number has no unit: write 0s/],
    ['env BASH_ENV', { env: 'BASH_ENV=rc' }, /Input 'env' .*'BASH_ENV' changes how later steps' shells/],
    ['max-age', { 'max-age': '7 days' }, /Input 'max-age'/],
    [
      'remote-max-entries',
      { 'remote-max-entries': '0' },
      /Input 'remote-max-entries' has an invalid value "0"\. Accepted: a whole number of 1 or more/,
    ],
    ['keep-free', { 'keep-free': 'lots' }, /Input 'keep-free'/],
    ['dry-run', { 'dry-run': 'maybe' }, /Input 'dry-run' has an invalid value "maybe"\. Accepted: true \| false/],
    ['pre-sweep', { 'pre-sweep': 'soon' }, /Input 'pre-sweep'/],
  ];

  it.each(cases)('%s', async (_, inputs, message) => {
    const job = newJob();
    Object.assign(job.inputs, inputs);
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join('\n')).toMatch(message);
    expect(fs.existsSync(job.root)).toBe(false);
    expect(job.exported).toEqual({});
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toContain('main made no lane');
  });

  it('refuses a root that is a symlink (a job could point the runner default elsewhere)', async () => {
    const job = newJob();
    const real = path.join(job.dir, 'elsewhere');
    fs.mkdirSync(real);
    fs.symlinkSync(real, job.root);
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join('\n')).toMatch(/Input 'root' .*it is a symlink \(to .*elsewhere\): give the real path/);
    expect(fs.readdirSync(real)).toEqual([]);
  });

  it('refuses the home directory, the workspace and what contains them', async () => {
    for (const root of ['HOME', 'WORKSPACE', 'ABOVE']) {
      const job = newJob();
      job.env.HOME = path.join(job.dir, 'home');
      fs.mkdirSync(job.env.HOME);
      job.inputs.root =
        root === 'HOME' ? job.env.HOME : root === 'WORKSPACE' ? job.workspace : path.join(job.dir, '_work');
      const main = await job.phase('main');
      expect(main.code).toBe(1);
      expect(main.errors.join()).toMatch(/Input 'root' has an invalid value .*(home directory|workspace)/);
    }
  });

  it('refuses to put lanes in a non-empty directory runlane did not make', async () => {
    const job = newJob();
    fs.mkdirSync(job.root);
    fs.writeFileSync(path.join(job.root, 'someone-elses.txt'), 'keep me');
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join()).toMatch(/no \.runlane-root marker/);
    expect(fs.readdirSync(job.root)).toEqual(['someone-elses.txt']);
  });

  it('never clobbers a non-empty directory or a file with a link, and says which', async () => {
    const job = newJob({ inputs: { link: 'target' } });
    fs.mkdirSync(path.join(job.workspace, 'target'));
    fs.writeFileSync(path.join(job.workspace, 'target', 'precious'), 'x');
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join()).toMatch(
      /Input 'link' .*target is a directory with 1 entries; runlane will not replace it/,
    );
    expect(fs.readFileSync(path.join(job.workspace, 'target', 'precious'), 'utf8')).toBe('x');
    expect(fs.existsSync(job.root)).toBe(false);

    const fileJob = newJob({ inputs: { link: 'out' } });
    fs.writeFileSync(path.join(fileJob.workspace, 'out'), 'x');
    expect((await fileJob.phase('main')).errors.join()).toMatch(/out is a file; runlane will not replace it/);
  });

  it('refuses a link whose parent leads out of the workspace through a symlink', async () => {
    const job = newJob({ inputs: { link: 'escape/target' } });
    fs.symlinkSync('/tmp', path.join(job.workspace, 'escape'));
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join()).toMatch(/outside/);
  });
});

describe('links', () => {
  it('links into the lane, replacing an old link or an empty directory, and unlinks in post', async () => {
    const job = newJob({ inputs: { link: 'target\nbuild/out=artifacts', presets: 'cargo' } });
    fs.symlinkSync('/nonexistent/old-lane', path.join(job.workspace, 'target'));
    fs.mkdirSync(path.join(job.workspace, 'build', 'out'), { recursive: true });
    expect((await job.phase('main')).code).toBe(0);
    const lane = job.outputs.path;
    expect(fs.readlinkSync(path.join(job.workspace, 'target'))).toBe(path.join(lane, 'target'));
    expect(fs.readlinkSync(path.join(job.workspace, 'build', 'out'))).toBe(path.join(lane, 'artifacts'));
    await job.run('sh', ['-c', 'echo hi > target/file && echo a > build/out/a']);
    expect(fs.readFileSync(path.join(lane, 'target', 'file'), 'utf8')).toBe('hi\n');
    expect((await job.phase('post')).code).toBe(0);
    expect(fs.existsSync(path.join(job.workspace, 'target'))).toBe(false);
    expect(fs.existsSync(path.join(job.workspace, 'build', 'out'))).toBe(false);
  });
});

describe('cleanup', () => {
  const run = async (cleanup: string, status: string) => {
    const job = newJob({ inputs: { cleanup } });
    job.status = status;
    expect((await job.phase('main')).code).toBe(0);
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    return { job, post, state: laneStates(job.root)[job.outputs.key] };
  };

  it('always removes the lane, whatever the status', async () => {
    expect((await run('always', 'failure')).state).toBeUndefined();
  });
  it('on-success removes it after success, keeps it for inspection after failure', async () => {
    expect((await run('on-success', 'success')).state).toBeUndefined();
    const failed = await run('on-success', 'failure');
    expect(failed.state).toBe('kept');
    expect(failed.post.stdout).toContain("job status 'failure'");
    expect((await run('on-success', 'cancelled')).state).toBe('kept');
  });
  it('never keeps it; defer leaves it to the sweep as an orphan', async () => {
    expect((await run('never', 'success')).state).toBe('kept');
    expect((await run('defer', 'success')).state).toBe('orphan');
  });
});

describe('post when a step removed the lane itself', () => {
  it.each(['always', 'never', 'defer'])(
    'cleanup %s: says so, warns about nothing, leaves nothing behind',
    async (cleanup) => {
      const job = newJob({ inputs: { cleanup, warm: 'true' } });
      await job.phase('main');
      await job.run('rm', ['-rf', job.outputs.path]);
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      expect(post.warnings).toEqual([]);
      expect(post.stdout).toContain('already gone: a step removed it while its lease was held');
      expect(laneStates(job.root)).toEqual({});
      expect(fs.readdirSync(path.join(job.root, 'locks'))).toEqual([]);
    },
  );
});

describe('mode: sweep', () => {
  it('on a host with no root yet, says there is nothing to sweep', async () => {
    const job = newJob({ inputs: { mode: 'sweep' } });
    const main = await job.phase('main');
    expect(main.code).toBe(0);
    expect(main.stdout).toContain('does not exist yet: no lanes, nothing to sweep');
    expect(fs.existsSync(job.root)).toBe(false);
  });
});

describe('a host without flock', () => {
  it('fails main with a message that names what is missing, and makes no lane', async () => {
    const job = newJob({ env: { PATH: '/nonexistent' } });
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join()).toMatch(/runlane needs util-linux's flock on PATH to take leases/);
    expect(laneStates(job.root)).toEqual({});
  });
});
