import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { cli, disposeJobs, laneStates, newJob, within, prJob, runJob } from '../helpers/jobs.js';

afterEach(disposeJobs);

describe('warm start: a successful lane handed to the next run of its scope by rename', () => {
  it('parks on success, never on failure or cancel', async () => {
    const root = newJob().root;
    await runJob(prJob(root), 'failure');
    await runJob(prJob(root), 'cancelled');
    // Neither lane is parked or left live: both went to the trash, which empties in the background.
    expect(Object.values(laneStates(root)).filter((state) => state !== 'trash')).toEqual([]);
    expect(await within(20_000, () => Object.keys(laneStates(root)).length === 0)).toBeGreaterThanOrEqual(0);
    expect(laneStates(root)).toEqual({});
    const ok = prJob(root);
    await runJob(ok, 'success');
    expect(laneStates(root)).toEqual({ [ok.outputs.key]: 'parked' });
    expect(ok.summary).toContain('parked in');
  });

  it("the next run of the same scope claims it, with the previous run's files, and says where it came from", async () => {
    const root = newJob().root;
    const first = prJob(root);
    await runJob(
      first,
      'success',
      'mkdir -p "$CARGO_TARGET_DIR/debug" && echo incremental > "$CARGO_TARGET_DIR/debug/state"',
    );
    const second = prJob(root);
    const main = await second.phase('main');
    expect(second.outputs.warm).toBe('true');
    expect(second.outputs['warm-source']).toBe('same');
    expect(second.outputs.path).not.toBe(first.outputs.path);
    expect(fs.readFileSync(path.join(second.outputs.path, 'cargo-target', 'debug', 'state'), 'utf8')).toBe(
      'incremental\n',
    );
    expect(main.stdout).toMatch(
      new RegExp(`warm: true \\(claimed from ${first.outputs.key} by run 1000, parked \\d+s ago\\)`),
    );
    expect(second.summary).toContain(`claimed from ${first.outputs.key}`);
    expect(laneStates(root)).toEqual({ [second.outputs.key]: 'live' });
    // Another scope, job or matrix leg never gets it.
    await second.phase('post');
    for (const other of [
      prJob(root, {}, 'refs/pull/6/merge'),
      newJob({ root, ref: 'refs/pull/5/merge', env: { GITHUB_JOB: 'test' }, inputs: { root, warm: 'true' } }),
      newJob({ root, ref: 'refs/pull/5/merge', matrix: { os: 'mac' }, inputs: { root, warm: 'true' } }),
    ]) {
      await other.phase('main');
      expect(other.outputs.warm).toBe('false');
      expect(other.outputs['warm-source']).toBe('');
    }
  });

  it('keeps warm-keep parked lanes per slot', async () => {
    const root = newJob().root;
    const jobs = [
      prJob(root, { 'warm-keep': '2', 'warm-from': 'base' }),
      prJob(root, { 'warm-keep': '2', 'warm-from': 'base' }),
      prJob(root, { 'warm-keep': '2', 'warm-from': 'base' }),
    ];
    for (const job of jobs) await runJob(job);
    expect(await within(20_000, () => !Object.values(laneStates(root)).includes('trash'))).toBeGreaterThanOrEqual(0);
    const states = laneStates(root);
    expect(Object.keys(states).sort()).toEqual([jobs[1].outputs.key, jobs[2].outputs.key].sort());
    expect(Object.values(states)).toEqual(['parked', 'parked']);
  });

  it("a PR's first run copies its base branch's parked lane and leaves it in place", async () => {
    const root = newJob().root;
    const base = newJob({ root, ref: 'refs/heads/main', inputs: { root, presets: 'cargo', warm: 'true' } });
    await runJob(base, 'success', 'mkdir -p "$CARGO_TARGET_DIR" && echo from-main > "$CARGO_TARGET_DIR/artifact"');
    const pr = prJob(root);
    pr.env.GITHUB_BASE_REF = 'main';
    const main = await pr.phase('main');
    expect(pr.outputs.warm).toBe('true');
    expect(pr.outputs['warm-source']).toBe('base');
    expect(main.stdout).toMatch(new RegExp(`warm: true \\((copied|cloned \\(reflink\\)) from ${base.outputs.key}`));
    expect(fs.readFileSync(path.join(pr.outputs.path, 'cargo-target', 'artifact'), 'utf8')).toBe('from-main\n');
    expect(laneStates(root)[base.outputs.key]).toBe('parked');
    await pr.phase('post');

    // The next main run still claims it: the copy took nothing away.
    const next = newJob({ root, ref: 'refs/heads/main', inputs: { root, presets: 'cargo', warm: 'true' } });
    await next.phase('main');
    expect(next.outputs.warm).toBe('true');
    expect(next.outputs['warm-source']).toBe('same');
  });

  it('warm-if false parks nothing but still starts warm; a branch named in warm-from says branch', async () => {
    const root = newJob().root;
    const base = newJob({ root, ref: 'refs/heads/main', inputs: { root, presets: 'cargo', warm: 'true' } });
    await runJob(base, 'success', 'mkdir -p "$CARGO_TARGET_DIR" && echo from-main > "$CARGO_TARGET_DIR/artifact"');
    const pr = prJob(root, { 'warm-from': 'same, main', 'warm-if': 'false' });
    expect((await pr.phase('main')).code).toBe(0);
    expect(pr.outputs.warm).toBe('true');
    expect(pr.outputs['warm-source']).toBe('branch');
    expect(fs.readFileSync(path.join(pr.outputs.path, 'cargo-target', 'artifact'), 'utf8')).toBe('from-main\n');
    pr.status = 'success';
    const post = await pr.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toContain('not parked, because warm-if is false');
    // The PR's lane was removed (cleanup: always), the branch's is still parked.
    expect(await within(20_000, () => laneStates(root)[pr.outputs.key] === undefined)).toBeGreaterThanOrEqual(0);
    expect(laneStates(root)[base.outputs.key]).toBe('parked');
    expect(Object.values(laneStates(root)).filter((state) => state === 'parked')).toHaveLength(1);
    // A bad value is refused in main with the value and what is allowed.
    const bad = prJob(root, { 'warm-if': 'yes' });
    const refused = await bad.phase('main');
    expect(refused.code).toBe(1);
    expect(refused.errors.join('\n')).toMatch(/warm-if.*yes.*true \| false/);
  });

  it('skips a plain copy that would cost more than it saves, and says why', async () => {
    const root = newJob().root;
    const base = newJob({ root, ref: 'refs/heads/main', inputs: { root, warm: 'true' } });
    await runJob(base, 'success', 'head -c 4000000 /dev/zero > "$RUNLANE_DIR/big"');
    const metaFile = path.join(root, 'meta', `${base.outputs.key}.json`);
    fs.writeFileSync(metaFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(metaFile, 'utf8')), jobMs: 1 }));
    const pr = prJob(root);
    pr.env.GITHUB_BASE_REF = 'main';
    const main = await pr.phase('main');
    // Where reflinks exist the clone is free and always taken; elsewhere the rule refuses.
    if (pr.outputs.warm === 'false') {
      expect(main.stdout).toMatch(
        /warm: not copied from main: no reflinks here, and copying \d+ bytes .* would cost more than half the 1 ms its job took/,
      );
    } else {
      expect(main.stdout).toContain('cloned (reflink)');
    }
  });
});

describe('warm lanes users shape and bound', () => {
  it('warm-key narrows the slot; post parks into the slot main resolved, whatever the environment says then', async () => {
    const root = newJob().root;
    const keyed = (toolchain: string) =>
      newJob({
        root,
        ref: 'refs/pull/5/merge',
        env: { TOOLCHAIN: toolchain },
        inputs: { root, presets: 'cargo', warm: 'true', 'warm-key': 'ci-{env:TOOLCHAIN}' },
      });
    const first = keyed('1.80');
    const main = await first.phase('main');
    expect(main.stdout).toMatch(/warm key: ci-\{env:TOOLCHAIN: set\}/);
    expect(main.stdout).not.toContain('1.80');
    // A step changes the variable: the lane still parks where main's key says.
    first.env.TOOLCHAIN = '9.99';
    first.status = 'success';
    expect((await first.phase('post')).code).toBe(0);
    // Another toolchain, or no warm-key at all, is another slot.
    for (const other of [keyed('1.81'), prJob(root)]) {
      await other.phase('main');
      expect(other.outputs.warm).toBe('false');
    }
    const same = keyed('1.80');
    await same.phase('main');
    expect(same.outputs.warm).toBe('true');
    expect(same.outputs['warm-source']).toBe('same');
  });

  it('warm-max-size: a lane over it is parked within it; what this job did not use goes first, what it used stays', async () => {
    const root = newJob().root;
    const first = prJob(root, { 'warm-max-size': 'off' });
    await runJob(
      first,
      'success',
      [
        'cd "$CARGO_TARGET_DIR" && mkdir -p debug/deps',
        // Left by older runs: 3 x 512 KiB not touched for days.
        'for n in 1 2 3; do head -c 524288 /dev/zero > debug/deps/old-$n.rlib; touch -d "$((n + 3)) days ago" debug/deps/old-$n.rlib; done',
      ].join(' && '),
    );
    const second = prJob(root, { 'warm-max-size': '1M' });
    await second.phase('main');
    expect(second.outputs.warm).toBe('true');
    // This job reads one old file and writes a new one.
    const deps = path.join(second.outputs.path, 'cargo-target', 'debug', 'deps');
    const work = await second.run('sh', [
      '-c',
      `cat "${deps}/old-1.rlib" > /dev/null && head -c 262144 /dev/zero > "${deps}/new.rlib"`,
    ]);
    expect(work.code).toBe(0);
    second.status = 'success';
    const post = await second.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toMatch(
      /warm lane trimmed from [\d.]+ MiB to [\d.]+ KiB \(warm-max-size 1\.0 MiB\): removed 2 files/,
    );
    expect(second.summary).toContain('warm size: trimmed');
    const third = prJob(root, { 'warm-max-size': '1M' });
    await third.phase('main');
    const kept = fs.readdirSync(path.join(third.outputs.path, 'cargo-target', 'debug', 'deps')).sort();
    expect(kept).toEqual(['new.rlib', 'old-1.rlib']);
    const du = spawnSync('du', ['-s', '-B1', third.outputs.path], { encoding: 'utf8' });
    expect(Number(du.stdout.split('\t')[0])).toBeLessThanOrEqual(1024 * 1024);
  });
});

describe('warm inputs are validated', () => {
  it.each([
    [{ warm: 'yes' }, /Input 'warm' has an invalid value "yes"\. Accepted: true \| false/],
    [{ 'warm-keep': '0' }, /Input 'warm-keep' has an invalid value "0"\. Accepted: a whole number from 1 to 100/],
    [{ 'warm-from': 'same, ../x y' }, /Input 'warm-from' .*'\.\.\/x y' is not a branch name/],
    [{ warm: 'true', 'warm-key': 'v-{rust}' }, /Input 'warm-key' .*'\{rust\}' is not a placeholder/],
    [{ 'warm-max-size': '50%' }, /Input 'warm-max-size' has an invalid value "50%"/],
  ])('%j', async (inputs, message) => {
    const job = newJob({ inputs });
    const main = await job.phase('main');
    expect(main.code).toBe(1);
    expect(main.errors.join()).toMatch(message);
    expect(fs.existsSync(job.root)).toBe(false);
  });
});

it('status lists parked lanes', async () => {
  const root = newJob().root;
  const job = prJob(root);
  await runJob(job);
  expect(cli('status', '--root', root).stdout).toMatch(new RegExp(`${job.outputs.key}\\s+parked`));
});

describe('warm lanes never flow to a more trusted run', () => {
  const payload = (head: string) => ({
    number: 42,
    pull_request: { number: 42, head: { repo: { full_name: head } }, base: { repo: { full_name: 'acme/widgets' } } },
  });
  const job = (root: string, name: string, head: string, ref: string) =>
    newJob({
      root,
      ref,
      event: { name, payload: payload(head) },
      inputs: { root, presets: 'cargo', warm: 'true' },
    });

  it("a fork's pull_request lane never warms a pull_request_target run of the same PR, nor a push", async () => {
    const root = newJob().root;
    const forkRun = job(root, 'pull_request', 'mallory/widgets', 'refs/pull/42/merge');
    await runJob(
      forkRun,
      'success',
      'mkdir -p "$CARGO_TARGET_DIR" && echo poisoned > "$CARGO_TARGET_DIR/build-script"',
    );
    expect(laneStates(root)).toEqual({ [forkRun.outputs.key]: 'parked' });

    const target = job(root, 'pull_request_target', 'mallory/widgets', 'refs/heads/main');
    const targetMain = await target.phase('main');
    expect(targetMain.code).toBe(0);
    expect(target.outputs.warm).toBe('false');
    expect(targetMain.stdout).toContain('trust: privileged');
    expect(fs.existsSync(path.join(target.outputs.path, 'cargo-target', 'build-script'))).toBe(false);

    const push = newJob({ root, ref: 'refs/heads/main', inputs: { root, presets: 'cargo', warm: 'true' } });
    await push.phase('main');
    expect(push.outputs.warm).toBe('false');
    // The fork's lane is still parked, for the fork's next run only.
    expect(laneStates(root)[forkRun.outputs.key]).toBe('parked');
    const forkAgain = job(root, 'pull_request', 'mallory/widgets', 'refs/pull/42/merge');
    await forkAgain.phase('main');
    expect(forkAgain.outputs.warm).toBe('true');
  });

  it("a fork's run may start from the base branch's trusted lane (a copy; the base keeps its own)", async () => {
    const root = newJob().root;
    const base = newJob({ root, ref: 'refs/heads/main', inputs: { root, presets: 'cargo', warm: 'true' } });
    await runJob(base, 'success', 'mkdir -p "$CARGO_TARGET_DIR" && echo from-main > "$CARGO_TARGET_DIR/artifact"');
    const forkRun = job(root, 'pull_request', 'mallory/widgets', 'refs/pull/42/merge');
    forkRun.env.GITHUB_BASE_REF = 'main';
    await forkRun.phase('main');
    expect(forkRun.outputs.warm).toBe('true');
    expect(fs.readFileSync(path.join(forkRun.outputs.path, 'cargo-target', 'artifact'), 'utf8')).toBe('from-main\n');
    expect(laneStates(root)[base.outputs.key]).toBe('parked');
  });
});

describe('what a parked lane brings along is never followed or printed raw', () => {
  it("a parked lane's symlink out is not followed by the next run's links, nor its metadata printed raw", async () => {
    const root = newJob().root;
    const outside = path.join(newJob().dir, 'outside');
    fs.mkdirSync(outside);
    const first = prJob(root);
    await runJob(first, 'success', `ln -s ${outside} "$RUNLANE_DIR/cache"`);
    const metaFile = path.join(root, 'meta', `${first.outputs.key}.json`);
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    fs.writeFileSync(metaFile, JSON.stringify({ ...meta, runId: '7\n::error::forged' }));
    const second = prJob(root, { link: 'build=cache/x/y' });
    const main = await second.phase('main');
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(main.errors.join('\n')).not.toContain('forged');
    expect(main.stdout.split('\n').some((line) => line.trimStart().startsWith('::error::forged'))).toBe(false);
  });

  it('a trust class that changes between main and post parks nothing', async () => {
    const root = newJob().root;
    const fork = {
      number: 9,
      pull_request: {
        number: 9,
        head: { repo: { full_name: 'mallory/widgets' } },
        base: { repo: { full_name: 'acme/widgets' } },
      },
    };
    const job = newJob({
      root,
      ref: 'refs/pull/9/merge',
      event: { name: 'pull_request', payload: fork },
      inputs: { root, presets: 'cargo', warm: 'true' },
    });
    expect((await job.phase('main')).code).toBe(0);
    // A step rewrites the event file to look like a same-repository pull request.
    const same = { ...fork, pull_request: { ...fork.pull_request, head: { repo: { full_name: 'acme/widgets' } } } };
    fs.writeFileSync(job.env.GITHUB_EVENT_PATH as string, JSON.stringify(same));
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.warnings.join('\n')).toMatch(/trust class was 'untrusted' in main and is 'trusted' now/);
    expect(fs.readdirSync(path.join(root, 'parked'))).toEqual([]);
  });
});
