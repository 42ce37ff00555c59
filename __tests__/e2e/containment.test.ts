// A hostile job attacks the bundled action and the CLI: mounts in its lane, a root layout swapped
// for symlinks, unusable lock files, names that forge runner commands, tampered state. Each
// attack must be contained: nothing outside the root is read into, written or deleted.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { CLI, disposeJobs, laneStates, newJob, processesMentioning, within, runlane } from '../helpers/jobs.js';
import { bind, decoyLayout, sh, trashOf, treeHash, unmountAll, usedRoot } from '../helpers/trees.js';

afterEach(disposeJobs);

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('a file system mounted in a lane is never entered', () => {
  it('inside the lane: post warns with the mount, deletes the rest, the outside is intact; after umount the sweep reaps it', async () => {
    const job = newJob();
    const outside = decoyLayout(path.join(job.dir, 'outside-cache'));
    const before = treeHash(outside);
    await job.phase('main');
    const lane = job.outputs.path;
    fs.mkdirSync(path.join(lane, 'cache'));
    fs.mkdirSync(path.join(lane, 'build'));
    fs.writeFileSync(path.join(lane, 'build', 'out.o'), 'x');
    fs.writeFileSync(path.join(lane, 'top.log'), 'x');
    try {
      bind(outside, path.join(lane, 'cache'));
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      const warnings = post.warnings.join('\n');
      expect(warnings).toMatch(/could not rename .* into the trash \(EBUSY: file systems are mounted in it/);
      expect(warnings).toMatch(new RegExp(`${escape(lane)}/cache: EBUSY \\(.*${escape(outside)}`));
      expect(treeHash(outside)).toBe(before);
      expect(fs.readdirSync(lane)).toEqual(['cache']);
    } finally {
      unmountAll(outside);
    }
    expect(runlane(['sweep', '--root', job.root]).code).toBe(0);
    expect(fs.existsSync(lane)).toBe(false);
    expect(treeHash(outside)).toBe(before);
  });

  it('on the lane itself: post warns, the outside is intact; after umount the sweep reaps the lane', async () => {
    const job = newJob();
    const outside = decoyLayout(path.join(job.dir, 'outside-cache'));
    const before = treeHash(outside);
    await job.phase('main');
    const lane = job.outputs.path;
    try {
      bind(outside, lane);
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      const warnings = post.warnings.join('\n');
      expect(warnings).toMatch(/could not rename .* into the trash \(EBUSY: file systems are mounted in it/);
      expect(warnings).toMatch(new RegExp(`${escape(lane)}: EBUSY \\(.*${escape(outside)}`));
      expect(treeHash(outside)).toBe(before);
    } finally {
      unmountAll(outside);
    }
    expect(fs.existsSync(lane)).toBe(true);
    expect(runlane(['sweep', '--root', job.root]).code).toBe(0);
    expect(fs.existsSync(lane)).toBe(false);
    expect(treeHash(outside)).toBe(before);
  });

  it('inside an orphan: the sweep reports it as failed (exit 1) and leaves the outside intact', async () => {
    const job = newJob();
    const outside = decoyLayout(path.join(job.dir, 'outside-cache'));
    const before = treeHash(outside);
    await job.phase('main');
    const { key, path: lane } = job.outputs;
    fs.mkdirSync(path.join(lane, 'cache'));
    fs.writeFileSync(path.join(lane, 'beside.txt'), 'x');
    try {
      bind(outside, path.join(lane, 'cache'));
      const meta = JSON.parse(fs.readFileSync(path.join(job.root, 'meta', `${key}.json`), 'utf8'));
      process.kill(meta.holderPid, 'SIGKILL');
      expect(await within(10_000, () => laneStates(job.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
      const sweep = runlane(['sweep', '--root', job.root, '--json']);
      expect(sweep.code).toBe(1);
      expect(sweep.json().entries).toEqual([
        expect.objectContaining({
          key,
          outcome: 'failed',
          failures: [expect.objectContaining({ code: 'EBUSY', path: path.join(lane, 'cache') })],
        }),
      ]);
      expect(treeHash(outside)).toBe(before);
    } finally {
      unmountAll(outside);
    }
    expect(runlane(['sweep', '--root', job.root]).code).toBe(0);
    expect(fs.existsSync(lane)).toBe(false);
    expect(treeHash(outside)).toBe(before);
  });
});

describe("a root whose layout directory was swapped for a symlink to someone else's files", () => {
  it.each(['lanes', 'trash', 'parked', 'meta', 'locks'])(
    '%s: sweep, status, main and post refuse it; nothing outside is read into, written or deleted',
    async (area) => {
      const first = await usedRoot();
      const root = first.root;
      // A job whose lane exists when the layout is swapped; for parked, one that parks in post.
      const running = newJob({ root, inputs: { root, ...(area === 'parked' ? { warm: 'true' } : {}) } });
      expect((await running.phase('main')).code).toBe(0);
      const outside = decoyLayout(path.join(first.dir, `outside-${area}`));
      const before = treeHash(outside);
      fs.renameSync(path.join(root, area), path.join(first.dir, `saved-${area}`));
      fs.symlinkSync(outside, path.join(root, area));
      const refused = new RegExp(`${area} directory .* is refused: it is a symlink`);

      const sweep = runlane(['sweep', '--root', root, '--json']);
      expect(sweep.code).toBe(1);
      expect(sweep.json().problems.join('\n')).toMatch(refused);
      const status = runlane(['status', '--root', root, '--json']);
      expect(status.code).toBe(1);
      expect(status.json().problems.join('\n')).toMatch(refused);
      if (area === 'meta') {
        // The listing goes on without metadata: the running lane is still known to be live.
        expect(status.json().lanes).toEqual([expect.objectContaining({ key: running.outputs.key, state: 'live' })]);
      }

      const later = newJob({ root, inputs: { root } });
      const main = await later.phase('main');
      expect(main.code).not.toBe(0);
      expect(main.errors.join('\n')).toMatch(refused);

      const post = await running.phase('post');
      expect(post.code).toBe(0);
      expect(post.warnings.join('\n')).toMatch(refused);
      expect(treeHash(outside)).toBe(before);
    },
  );
});

describe('lock files a job made unusable', () => {
  it('a symlink, a directory, another user’s 0600 file: the lane is unknown, reported and left; an orphan beside is reaped', async () => {
    const job = await usedRoot();
    const root = job.root;
    const bad = ['bad-symlink', 'bad-dir', 'bad-private'];
    for (const key of ['orphan-a', ...bad]) {
      fs.mkdirSync(path.join(root, 'lanes', key));
      fs.writeFileSync(path.join(root, 'lanes', key, 'data.txt'), key);
    }
    const lock = (key: string) => path.join(root, 'locks', `${key}.lock`);
    fs.symlinkSync('/etc/passwd', lock('bad-symlink'));
    fs.mkdirSync(lock('bad-dir'));
    expect(sh('chown', '-R', '-h', '65534:65534', root).status).toBe(0);
    fs.writeFileSync(lock('bad-private'), '', { mode: 0o600 }); // root's, after the chown
    fs.chmodSync(job.dir, 0o755);
    const passwd = fs.readFileSync('/etc/passwd', 'utf8');

    const sweep = runlane(['sweep', '--root', root, '--json'], true);
    expect(sweep.code).toBe(1);
    const report = sweep.json();
    expect(report.entries).toContainEqual(expect.objectContaining({ key: 'orphan-a', outcome: 'reaped' }));
    expect(fs.existsSync(path.join(root, 'lanes', 'orphan-a'))).toBe(false);
    const status = runlane(['status', '--root', root, '--json'], true);
    expect(status.code).toBe(1);
    for (const key of bad) {
      expect(report.entries).toContainEqual(expect.objectContaining({ key, state: 'unknown', outcome: 'left' }));
      expect(report.problems.join('\n')).toMatch(new RegExp(`the lane ${key} was left alone: the lock file .* cannot`));
      expect(status.json().lanes).toContainEqual(expect.objectContaining({ key, state: 'unknown' }));
      expect(status.json().problems.join('\n')).toContain(`the lane ${key}: the lock file`);
      expect(fs.readFileSync(path.join(root, 'lanes', key, 'data.txt'), 'utf8')).toBe(key);
    }
    expect(fs.readlinkSync(lock('bad-symlink'))).toBe('/etc/passwd');
    expect(fs.statSync(lock('bad-dir')).isDirectory()).toBe(true);
    expect(fs.statSync(lock('bad-private')).uid).toBe(0);
    expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(passwd);
  });

  it('a FIFO as a lock file hangs neither the sweep nor status', async () => {
    const job = await usedRoot();
    fs.mkdirSync(path.join(job.root, 'lanes', 'bad-fifo'));
    expect(sh('mkfifo', path.join(job.root, 'locks', 'bad-fifo.lock')).status).toBe(0);
    const sweep = runlane(['sweep', '--root', job.root, '--json']);
    expect(sweep.code).toBe(1);
    expect(sweep.json().entries).toEqual([expect.objectContaining({ key: 'bad-fifo', state: 'unknown' })]);
    expect(sweep.json().problems.join('\n')).toMatch(/the lane bad-fifo was left alone: .*not a regular file/);
    const status = runlane(['status', '--root', job.root, '--json']);
    expect(status.code).toBe(1);
    expect(status.json().lanes).toEqual([expect.objectContaining({ key: 'bad-fifo', state: 'unknown' })]);
    expect(fs.existsSync(path.join(job.root, 'lanes', 'bad-fifo'))).toBe(true);
  });
});

describe('names a job plants cannot forge runner commands', () => {
  const forged = (stdout: string) =>
    stdout
      .split('\n')
      .map((line) => line.trimStart())
      .filter((line) => ['::error::pwned', '::save-state', '::warning::x'].some((bad) => line.startsWith(bad)));

  it('in pre, in a sweep, and in a later post that reports what resists', async () => {
    const root = (await usedRoot()).root;
    const planted = ['x\n::error::pwned', 'y\n::save-state name=x::y', '::warning::x'];
    for (const name of planted) {
      fs.mkdirSync(path.join(root, 'lanes', name));
      fs.writeFileSync(path.join(root, 'lanes', name, 'f'), 'x');
    }
    const stuck = path.join(root, 'lanes', 'orphan-inject', 'f\n::error::pwned');
    fs.mkdirSync(path.dirname(stuck));
    fs.writeFileSync(stuck, 'x');
    expect(sh('chattr', '+i', stuck).status).toBe(0);
    try {
      const job = newJob({ root, inputs: { root } });
      const pre = await job.phase('pre');
      expect(pre.code).toBe(0);
      expect(fs.readdirSync(path.join(root, 'lanes'))).toEqual([]);
      const recorded = () => trashOf(root).some((name) => name.endsWith('.failed.json'));
      expect(await within(30_000, recorded)).toBeGreaterThanOrEqual(0);
      expect(await within(20_000, () => processesMentioning(root).length === 0)).toBeGreaterThanOrEqual(0);

      const sweep = runlane(['sweep', '--root', root]);
      expect(sweep.code).toBe(1);
      const next = newJob({ root, inputs: { root } });
      expect((await next.phase('main')).code).toBe(0);
      const post = await next.phase('post');
      expect(post.code).toBe(0);
      expect(post.warnings.join('\n')).toMatch(/still resists deletion/);

      for (const result of [pre, post]) {
        expect(result.errors).toEqual([]);
        expect(Object.keys(result.state)).not.toContain('name');
        expect(Object.keys(result.state)).not.toContain('x');
      }
      for (const out of [pre.stdout, pre.stderr, sweep.stdout, sweep.stderr, post.stdout, post.stderr])
        expect(forged(out)).toEqual([]);
      expect(pre.stdout).toContain('x\\x0a:\\x3aerror:\\x3apwned');
      expect(pre.stdout).toContain(':\\x3awarning:\\x3ax');
      expect(sweep.stdout).toContain('f\\x0a:\\x3aerror:\\x3apwned');
      expect(post.stdout).toContain('f\\x0a:\\x3aerror:\\x3apwned');
    } finally {
      sh('chattr', '-R', '-i', root);
    }
  });
});

describe('post refuses state a step tampered with, and touches nothing', () => {
  it.each(['key', 'lane-path', 'root', 'links', 'trust', 'warm-key', 'upload'])('%s', async (what) => {
    const job = newJob();
    await job.phase('main');
    const { key, path: lane } = job.outputs;
    let victim = path.join(job.dir, 'victim');
    const link = path.join(job.dir, 'outside-link');
    fs.symlinkSync('/etc', link);
    if (what === 'key') job.state.key = '../../victim';
    if (what === 'lane-path') job.state['lane-path'] = victim;
    if (what === 'root') {
      // Another runlane root, holding a lane of the same key.
      const other = path.join(job.dir, 'other-root');
      for (const area of ['lanes', 'locks', 'meta', 'trash', 'parked'])
        fs.mkdirSync(path.join(other, area), { recursive: true });
      fs.writeFileSync(path.join(other, '.runlane-root'), '{"runlane":1}\n');
      victim = path.join(other, 'lanes', key);
      job.state.root = other;
      job.state['lane-path'] = victim;
    }
    if (what === 'links') job.state.links = JSON.stringify([{ link, target: '/etc', replaces: 'symlink' }]);
    if (what === 'trust') job.state.trust = 'root';
    if (what === 'warm-key') job.state['warm-key'] = '../../parked/elsewhere';
    if (what === 'upload') job.state.upload = 'yes please';
    decoyLayout(victim);
    const before = treeHash(victim);
    const post = await job.phase('post');
    expect(post.code).toBe(0);
    expect(post.warnings.join('\n')).toMatch(
      new RegExp(`refusing the saved state ${what.replace('-', ' ')} .*nothing was touched`),
    );
    expect(treeHash(victim)).toBe(before);
    expect(fs.readlinkSync(link)).toBe('/etc');
    expect(fs.existsSync(lane)).toBe(true);
  });

  it('a holder pid that names another process: post never signals it', async () => {
    const job = newJob();
    await job.phase('main');
    const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      job.state['holder-pid'] = String(bystander.pid);
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
    } finally {
      bystander.kill('SIGKILL');
    }
  });
});

/** Whether process `pid` waits inside openat(2) (syscall 257 on x86_64, 56 on arm64). */
function blockedInOpen(pid: number | undefined): boolean {
  try {
    const call = fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0];
    return call === (process.arch === 'arm64' ? '56' : '257');
  } catch {
    return false;
  }
}

describe('review regressions: what a job can plant to break a delete or a scan', () => {
  it('a FIFO planted where runlane reads metadata, a failure record or the journal is never opened: its writer stays blocked, and status and the sweep go on', async () => {
    const job = await usedRoot();
    fs.mkdirSync(path.join(job.root, 'lanes', 'planted-meta'));
    fs.mkdirSync(path.join(job.root, 'trash', 'planted-entry'));
    const fifos = [
      path.join(job.root, 'meta', 'planted-meta.json'),
      path.join(job.root, 'trash', 'planted-entry.failed.json'),
      path.join(job.root, 'journal.jsonl'),
    ];
    fs.rmSync(fifos[2], { force: true });
    for (const fifo of fifos) expect(sh('mkfifo', fifo).status).toBe(0);
    // Each writer blocks in open(2) until some process opens its FIFO for reading.
    const writers = fifos.map((fifo) =>
      spawn('python3', ['-c', 'import sys; open(sys.argv[1], "w"); print("woken", flush=True)', fifo], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    const woken: string[] = [];
    writers.forEach((writer, index) => writer.stdout?.on('data', () => woken.push(fifos[index])));
    try {
      // Each writer is in open(2) on its FIFO before runlane looks (python starts slowly on a
      // loaded machine: a writer that opened after the sweep replaced a FIFO found a file).
      expect(await within(60_000, () => writers.every((writer) => blockedInOpen(writer.pid)))).toBeGreaterThanOrEqual(
        0,
      );
      const status = runlane(['status', '--root', job.root, '--json']);
      expect(status.json().lanes).toEqual([
        expect.objectContaining({ key: 'planted-meta', state: 'orphan' }),
        expect.objectContaining({ key: 'planted-entry', state: 'trash', failures: [] }),
      ]);
      expect(runlane(['sweep', '--root', job.root, '--json']).code).toBe(0);
      expect(fs.existsSync(path.join(job.root, 'lanes', 'planted-meta'))).toBe(false);
      expect(fs.existsSync(path.join(job.root, 'trash', 'planted-entry'))).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(woken).toEqual([]);
      for (const writer of writers) expect(writer.exitCode).toBeNull();
    } finally {
      for (const writer of writers) writer.kill('SIGKILL');
    }
  });

  it('directories without search permission in a threaded delete, as an unprivileged user: all deleted, nothing outside touched, no crash', async () => {
    const job = await usedRoot();
    const entry = path.join(job.root, 'trash', 'perms');
    const victim = path.join(job.dir, 'victim');
    for (const dir of ['a1', 'a2', 'a3', 'a4']) {
      fs.mkdirSync(path.join(entry, dir), { recursive: true });
      for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(entry, dir, `f${i}`), 'x');
    }
    fs.mkdirSync(path.join(entry, 'b1'));
    fs.writeFileSync(path.join(entry, 'b1', 'only'), 'x');
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(entry, `z${i}`), 'x');
    fs.mkdirSync(victim);
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(victim, `z${i}`), 'keep');
    expect(sh('chown', '-R', '65534:65534', job.root, victim).status).toBe(0);
    for (const dir of ['a1', 'a2', 'a3', 'a4']) fs.chmodSync(path.join(entry, dir), 0o000);
    fs.chmodSync(path.join(entry, 'b1'), 0o600);
    fs.chmodSync(job.dir, 0o755);
    const out = runlane(['empty-trash', '--root', job.root, '--workers', '4', '--json'], true);
    expect(out.stderr).not.toMatch(/Emitted 'error'|Error:/);
    expect(out.code).toBe(0);
    expect(out.json().trash).toEqual([expect.objectContaining({ name: 'perms', outcome: 'deleted' })]);
    expect(fs.existsSync(entry)).toBe(false);
    expect(fs.readdirSync(victim)).toHaveLength(40);
  });

  it('a name in lanes/ whose lock file name is too long: that lane is unknown, the rest are still reaped', async () => {
    const job = await usedRoot();
    const long = 'a'.repeat(252);
    fs.mkdirSync(path.join(job.root, 'lanes', long));
    for (const key of ['orphan-a', 'orphan-b']) fs.mkdirSync(path.join(job.root, 'lanes', key));
    const status = runlane(['status', '--root', job.root, '--json']);
    const states = Object.fromEntries(
      status.json().lanes.map((lane: { key: string; state: string }) => [lane.key, lane.state]),
    );
    expect(states).toEqual({ [long]: 'unknown', 'orphan-a': 'orphan', 'orphan-b': 'orphan' });
    const sweep = runlane(['sweep', '--root', job.root, '--json']);
    expect(sweep.json().entries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 'orphan-a', outcome: 'reaped' }),
        expect.objectContaining({ key: 'orphan-b', outcome: 'reaped' }),
        expect.objectContaining({ key: long, state: 'unknown', outcome: 'left' }),
      ]),
    );
  });
});

describe('taking many locks at once', () => {
  it('without perl, a shell runs flock for each lock, with the same result', async () => {
    const job = await usedRoot();
    const keys = ['orphan-1', 'orphan-2', 'orphan-3', 'held'];
    for (const key of keys) {
      fs.mkdirSync(path.join(job.root, 'lanes', key));
      fs.writeFileSync(path.join(job.root, 'locks', `${key}.lock`), '');
    }
    // Another process holds one lane's lease for the whole sweep.
    const holder = spawn('flock', ['-x', path.join(job.root, 'locks', 'held.lock'), 'sleep', '60'], {
      stdio: 'ignore',
    });
    try {
      expect(
        await within(5_000, () => sh('flock', '-n', path.join(job.root, 'locks', 'held.lock'), 'true').status === 1),
      ).toBeGreaterThanOrEqual(0);
      const bin = path.join(job.dir, 'bin');
      const log = path.join(job.dir, 'flock.log');
      fs.mkdirSync(bin);
      const which = (tool: string) => sh('sh', '-c', `command -v ${tool}`).stdout.trim();
      fs.symlinkSync(which('sh'), path.join(bin, 'sh'));
      fs.writeFileSync(path.join(bin, 'flock'), `#!${which('sh')}\necho run >> ${log}\nexec ${which('flock')} "$@"\n`, {
        mode: 0o755,
      });
      const out = spawnSync(process.execPath, [CLI, 'sweep', '--root', job.root, '--json'], {
        encoding: 'utf8',
        env: { PATH: bin, HOME: process.env.HOME, RUNLANE_ROOT: '' },
      });
      expect(out.stderr).toBe('');
      const entries = JSON.parse(out.stdout).entries;
      for (const key of ['orphan-1', 'orphan-2', 'orphan-3'])
        expect(entries).toContainEqual(expect.objectContaining({ key, outcome: 'reaped' }));
      expect(entries).toContainEqual(expect.objectContaining({ key: 'held', state: 'live', outcome: 'left' }));
      expect(fs.existsSync(path.join(job.root, 'lanes', 'held'))).toBe(true);
      // The shell ran flock: once per lock it took or tried (lanes, then trash entries).
      expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(3);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
