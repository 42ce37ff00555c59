import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ACTION_DIR, awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { cli, cliAsNobody, disposeJobs, laneStates, newJob, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

const MAIN = path.join(ACTION_DIR, 'dist', 'main', 'index.js');

describe('the start handshake', () => {
  it('a holder that exits at start fails main with the reason, and leaves no lane', async () => {
    const job = newJob();
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-broken-'));
    try {
      fs.cpSync(path.join(ACTION_DIR, 'dist'), path.join(copy, 'dist'), { recursive: true });
      // Both holders: perl's, and node's that stands in for it.
      fs.writeFileSync(path.join(copy, 'dist', 'holder', 'index.js'), 'process.exit(3);\n');
      fs.writeFileSync(path.join(copy, 'dist', 'holder', 'holder.pl'), 'exit 3;\n');
      const main = await job.run(process.execPath, [path.join(copy, 'dist', 'main', 'index.js')], {
        env: job.inputEnv(),
      });
      expect(main.code).toBe(1);
      expect(main.errors.join('\n')).toMatch(/the lease holder did not start: it exited at once \(exit 3\)/);
      expect(main.state).toEqual({});
      expect(fs.readdirSync(path.join(job.root, 'lanes'))).toEqual([]);
      expect(laneStates(job.root)).toEqual({});
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe('which process holds the lease', () => {
  it("is the system's perl: the job's environment kept, none of its PERL variables or PATH obeyed", async () => {
    const job = newJob();
    // A job that exported PERL5OPT and PERL5LIB would run its own code in the holder, and one
    // that put its own `perl` first on PATH would stand in for it (say "ready", hold nothing).
    const lib = path.join(job.dir, 'perl-lib');
    const bin = path.join(job.dir, 'planted-bin');
    const planted = path.join(job.dir, 'planted-ran');
    fs.mkdirSync(lib);
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(lib, 'Planted.pm'), `package Planted; open(my $f, '>', '${planted}'); 1;\n`);
    fs.writeFileSync(path.join(bin, 'perl'), `#!/bin/sh\ntouch '${planted}'\necho ready\n`, { mode: 0o755 });
    const main = await job.run(process.execPath, [MAIN], {
      env: { ...job.inputEnv(), PERL5OPT: '-MPlanted', PERL5LIB: lib, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(main.code).toBe(0);
    const holder = Number(main.state['holder-pid']);
    expect(fs.realpathSync(`/proc/${holder}/exe`)).toBe(fs.realpathSync('/usr/bin/perl'));
    // Its program came on stdin: the command line is its name, nothing a `pkill -f` would match.
    const lock = path.join(job.root, 'locks', `${main.outputs.key}.lock`);
    expect(fs.readFileSync(`/proc/${holder}/cmdline`, 'utf8')).toBe(`runlane-lease ${lock}\0-\0`);
    expect(fs.readFileSync(`/proc/${holder}/comm`, 'utf8').trim()).toBe('runlane-lease /');
    const environ = fs.readFileSync(`/proc/${holder}/environ`, 'utf8').split('\0');
    expect(environ).toContain(`RUNNER_TRACKING_ID=${job.env.RUNNER_TRACKING_ID}`);
    expect(environ.filter((line) => line.startsWith('PERL'))).toEqual([]);
    expect(fs.existsSync(planted)).toBe(false);
    expect(laneStates(job.root)[main.outputs.key]).toBe('live');
    expect((await job.phase('post')).code).toBe(0);
    // Post renamed it into the trash; its background delete empties that.
    awaitBackgroundDeletes(path.dirname(job.root));
    expect(laneStates(job.root)).toEqual({});
  });

  it('is node on a host without perl, with the same lease', async () => {
    const job = newJob();
    const out = path.join(job.dir, 'main.out');
    // A mount namespace where the system's perl is not a program any more.
    const script = [
      'for p in /usr/bin/perl /bin/perl; do [ -e "$p" ] && mount --bind /dev/null "$p"; done',
      '[ -f /usr/bin/perl ] && exit 9',
      'exec node "$MAIN" > "$OUT" 2>&1',
    ].join('\n');
    const main = await job.run('unshare', ['--mount', 'sh', '-c', script], {
      env: { ...job.inputEnv(), MAIN, OUT: out },
    });
    expect(main.code).toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toContain('lease: held by pid');
    const holder = Number(main.state['holder-pid']);
    expect(fs.readlinkSync(`/proc/${holder}/exe`)).toBe(fs.realpathSync(process.execPath));
    expect(fs.readFileSync(`/proc/${holder}/comm`, 'utf8').trim()).toBe('runlane-lease /');
    expect(laneStates(job.root)[main.outputs.key]).toBe('live');
    process.kill(holder, 'SIGKILL');
    expect(await within(10_000, () => laneStates(job.root)[main.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
  });

  it('a perl holder that cannot report "ready" does not hold on unseen', async () => {
    const job = newJob();
    const lock = path.join(job.dir, 'x.lock');
    fs.writeFileSync(lock, '');
    const program = path.join(job.dir, 'program');
    const text = fs.readFileSync(path.join(ACTION_DIR, 'dist', 'holder', 'holder.pl'), 'utf8');
    fs.writeFileSync(program, `${text}\n__END__\n${[lock, '0', '', 'none'].join('\0')}`);
    // Its reader gone before it answers (main killed mid-handshake): it must exit, freeing the
    // lock, since no pid was recorded anywhere for post to end it by.
    const run = spawnSync(
      'sh',
      ['-c', 'exec 3<"$LOCK"; flock -x -n 3 || exit 8; ( sleep 0.3; exec /usr/bin/perl - ) < "$PROGRAM" | true'],
      { env: { ...process.env, LOCK: lock, PROGRAM: program }, timeout: 20_000 },
    );
    expect(run.status).toBe(0);
    expect(spawnSync('flock', ['-n', lock, 'true']).status).toBe(0);
  });
});

describe('probing locks another user made', () => {
  it("a sweep as nobody reads a root-owned 0644 lock file's lease correctly", async () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-shared-'));
    fs.chmodSync(parent, 0o755);
    const root = path.join(parent, 'root');
    fs.mkdirSync(root);
    fs.chownSync(root, 65534, 65534);
    try {
      // A container job running as root opens a lane in the runner user's root.
      const job = newJob({ root });
      expect((await job.phase('main')).code).toBe(0);
      const lock = path.join(root, 'locks', `${job.outputs.key}.lock`);
      expect(fs.statSync(lock).uid).toBe(0);
      expect(fs.statSync(lock).mode & 0o777).toBe(0o644);
      // In a pid namespace of its own, /proc/locks shows none of the leases, so the CLI must
      // open each lock file and try it: read-only, which a 0644 file allows (read-write fails).
      const asNobody = (...args: string[]) =>
        spawnSync('unshare', ['--pid', '--fork', '--mount-proc', ...cliAsNobody(...args)], { encoding: 'utf8' });
      const status = asNobody('status', '--root', root, '--json');
      expect(status.status).toBe(0);
      expect(JSON.parse(status.stdout).lanes).toEqual([
        expect.objectContaining({ key: job.outputs.key, state: 'live' }),
      ]);
      const sweep = asNobody('sweep', '--root', root, '--json');
      expect(sweep.status).toBe(0);
      expect(fs.existsSync(job.outputs.path)).toBe(true);
      expect((await job.phase('post')).code).toBe(0);
    } finally {
      // Post's background delete may still be emptying the trash under the root.
      awaitBackgroundDeletes(parent, 120_000);
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe('post and the lease', () => {
  it('post that fails still releases the lease, closes its log group and warns', async () => {
    const job = newJob({ inputs: { warm: 'true' } });
    expect((await job.phase('main')).code).toBe(0);
    const holder = Number(job.state['holder-pid']);
    // Parking will fail: the parked directory is not one runlane made any more.
    fs.rmSync(path.join(job.root, 'parked'), { recursive: true, force: true });
    fs.writeFileSync(path.join(job.root, 'parked'), 'not a directory');
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.warnings.join('\n')).toMatch(/parked directory .* is refused/);
    const groups = post.stdout.split('\n').filter((line) => /^::(end)?group::/.test(line));
    expect(groups.filter((line) => line.startsWith('::group::')).length).toBe(
      groups.filter((line) => line.startsWith('::endgroup::')).length,
    );
    // The holder is gone (at most a zombie awaiting its reaper): the lease is free at once.
    const cmdline = fs.existsSync(`/proc/${holder}/cmdline`) ? fs.readFileSync(`/proc/${holder}/cmdline`, 'utf8') : '';
    expect(cmdline).not.toContain('runlane-lease');
    const status = cli('status', '--root', job.root, '--json');
    expect(status.code).toBe(1);
    expect(status.json().problems.join('\n')).toMatch(/parked directory/);
    expect(status.json().lanes).toEqual([expect.objectContaining({ key: job.outputs.key, state: 'orphan' })]);
  });

  it('post that throws before it closes (an upload on a full disk) still releases the lease and warns', async () => {
    // A cache service that main only writes (it would spend its retries reading a dead one),
    // so main allows the upload and post tries it.
    const job = newJob({
      inputs: { warm: 'true', presets: 'cargo', 'remote-save': 'true' },
      env: { ACTIONS_CACHE_URL: 'http://127.0.0.1:9/', ACTIONS_RUNTIME_TOKEN: 'token', ACTIONS_CACHE_MODE: 'write' },
    });
    expect((await job.phase('main')).code).toBe(0);
    const holder = Number(job.state['holder-pid']);
    // Something to upload (an empty selection is not uploaded at all).
    fs.mkdirSync(path.join(job.outputs.path, 'cargo-target', 'debug', 'deps'), { recursive: true });
    fs.writeFileSync(path.join(job.outputs.path, 'cargo-target', 'debug', 'deps', 'libdep.rlib'), 'rlib');
    // The upload's temporary directory cannot be made: TMPDIR is a file.
    const notADir = path.join(job.dir, 'tmp-is-a-file');
    fs.writeFileSync(notADir, '');
    job.env.TMPDIR = notADir;
    job.status = 'success';
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.warnings.join('\n')).toMatch(/ENOTDIR.*its lease is released, so the sweep reaps the lane/);
    const groups = post.stdout.split('\n').filter((line) => /^::(end)?group::/.test(line));
    expect(groups.filter((line) => line.startsWith('::group::')).length).toBe(
      groups.filter((line) => line.startsWith('::endgroup::')).length,
    );
    const cmdline = fs.existsSync(`/proc/${holder}/cmdline`) ? fs.readFileSync(`/proc/${holder}/cmdline`, 'utf8') : '';
    expect(cmdline).not.toContain('runlane-lease');
    expect(laneStates(job.root)).toEqual({ [job.outputs.key]: 'orphan' });
  });

  it('says what it knows when the holder was killed and a sweep reaped the lane', async () => {
    const job = newJob();
    expect((await job.phase('main')).code).toBe(0);
    const holder = Number(job.state['holder-pid']);
    process.kill(holder, 'SIGKILL');
    expect(await within(10_000, () => laneStates(job.root)[job.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);
    expect(cli('sweep', '--root', job.root).code).toBe(0);
    const post = await job.phase('post');
    expect(post.stdout).toContain(`its lease holder (pid ${holder}) had ended before post`);
  });

  it('two runlane steps in one job get two lanes', async () => {
    const first = newJob({ env: { GITHUB_ACTION: 'build-lane' } });
    const second = newJob({
      root: first.root,
      env: { GITHUB_ACTION: 'test-lane', RUNNER_TRACKING_ID: first.env.RUNNER_TRACKING_ID },
    });
    expect((await first.phase('main')).code).toBe(0);
    expect((await second.phase('main')).code).toBe(0);
    expect(first.outputs.key).not.toBe(second.outputs.key);
    expect(laneStates(first.root)).toEqual({ [first.outputs.key]: 'live', [second.outputs.key]: 'live' });
  });

  it.each([
    ['GitHub', {}, '5d 1h'],
    ['Gitea', { GITEA_ACTIONS: 'true' }, '3h 30m'],
    ['Forgejo', { FORGEJO_ACTIONS: 'true' }, '3h 30m'],
  ])('lease-timeout auto on %s is above the longest job the runner allows: %s', async (_runner, env, bound) => {
    const job = newJob({ env });
    const main = await job.phase('main');
    expect(main.code).toBe(0);
    expect(main.stdout).toContain(`until post, the job's end or ${bound}`);
    const meta = JSON.parse(fs.readFileSync(path.join(job.root, 'meta', `${job.outputs.key}.json`), 'utf8'));
    const hours = (Date.parse(meta.leaseUntil) - Date.parse(meta.created)) / 3_600_000;
    expect(hours).toBeCloseTo(bound === '5d 1h' ? 121 : 3.5, 5);
  });

  it('the holder lowers the OOM score the step runs with (GitHub: 500); lease-timeout none sets no bound', async () => {
    const job = newJob({ inputs: { 'lease-timeout': 'none' } });
    // As GitHub's runner starts a step: oom_score_adj 500.
    const main = await job.run('choom', ['-n', '500', '--', process.execPath, MAIN], { env: job.inputEnv() });
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/lease: held by pid \d+ until post, the job's end\n/);
    const holder = Number(main.state['holder-pid']);
    expect(Number(fs.readFileSync(`/proc/${holder}/oom_score_adj`, 'utf8').trim())).toBeLessThanOrEqual(0);
    expect(fs.readFileSync(`/proc/${holder}/comm`, 'utf8').trim()).toBe('runlane-lease /');
  });
});
