// A hostile job attacks the bundled action and the CLI: mounts in its lane, a root layout swapped
// for symlinks, unusable lock files, names that forge runner commands, tampered state. Each
// attack must be contained: nothing outside the root is read into, written or deleted.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import {
  CLI,
  cliAsNobody,
  disposeJobs,
  laneStates,
  newJob,
  processesMentioning,
  startSwapper,
  within,
  type CliResult,
} from '../helpers/jobs.js';

afterEach(disposeJobs);

const sh = (command: string, ...args: string[]) => spawnSync(command, args, { encoding: 'utf8' });
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const trashOf = (root: string) => fs.readdirSync(path.join(root, 'trash'));
const trashEmpty = (root: string) => within(30_000, () => trashOf(root).length === 0);

/** The CLI, bounded to 20 s; with `asNobody`, as the unprivileged uid 65534 (from a staged copy of the bundle). */
function runlane(args: string[], asNobody = false): CliResult {
  const [command, ...argv] = asNobody ? cliAsNobody(...args) : [process.execPath, CLI, ...args];
  const out = spawnSync(command, argv, {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, RUNLANE_ROOT: '' },
  });
  expect(out.error).toBeUndefined(); // it returned, in time
  expect(out.stderr).not.toMatch(/TypeError|ReferenceError|at .*index\.js/);
  return { code: out.status, stdout: out.stdout, stderr: out.stderr, json: () => JSON.parse(out.stdout) };
}

/** A tree that looks like lanes, trash entries, slots, locks and metadata, for a naive sweep to take. */
function outsideTree(dir: string): string {
  const files: Record<string, string> = {
    'top.txt': 'top',
    'victim-lane/data.bin': 'data',
    'victim-lane/sub/deep.txt': 'deep',
    'slot/key/parked.txt': 'parked',
    'entry~20260101T000000Z-abcdef/trashed.txt': 'trashed',
    'victim-lane.lock': '',
    'victim-lane.json': '{"version":1,"key":"victim-lane"}',
  };
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

/** Every path below `dir` with its mode, owner, link target or content: any change shows. Throws if it is gone. */
function treeHash(dir: string): string {
  const hash = createHash('sha256');
  const walk = (current: string, relative: string) => {
    const stat = fs.lstatSync(current);
    hash.update(`${relative}\0${stat.mode}\0${stat.uid}\0`);
    if (stat.isSymbolicLink()) hash.update(fs.readlinkSync(current));
    else if (stat.isFile()) hash.update(fs.readFileSync(current));
    else if (stat.isDirectory())
      for (const name of fs.readdirSync(current).sort()) walk(path.join(current, name), `${relative}/${name}`);
    hash.update('\0');
  };
  walk(dir, '.');
  return hash.digest('hex');
}

function bind(source: string, target: string): void {
  expect(sh('mount', '--bind', source, target).status).toBe(0);
}

/** Unmounts every mount of `source`, wherever a rename may have moved it. */
function unmountAll(source: string): void {
  for (let round = 0; round < 5; round++) {
    const targets = sh('findmnt', '-rn', '-o', 'TARGET,FSROOT')
      .stdout.split('\n')
      .map((line) => line.split(' '))
      .filter(([, root]) => root === source)
      .map(([target]) => target);
    if (targets.length === 0) return;
    for (const target of targets.reverse()) if (sh('umount', target).status !== 0) sh('umount', '-l', target);
  }
}

/** A root with one job's lane made and removed, its trash emptied. */
async function usedRoot() {
  const job = newJob();
  expect((await job.phase('main')).code).toBe(0);
  expect((await job.phase('post')).code).toBe(0);
  expect(await trashEmpty(job.root)).toBeGreaterThanOrEqual(0);
  return job;
}

describe('a file system mounted in a lane is never entered', () => {
  it('inside the lane: post warns with the mount, deletes the rest, the outside is intact; after umount the sweep reaps it', async () => {
    const job = newJob();
    const outside = outsideTree(path.join(job.dir, 'outside-cache'));
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
    const outside = outsideTree(path.join(job.dir, 'outside-cache'));
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
    const outside = outsideTree(path.join(job.dir, 'outside-cache'));
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
      const outside = outsideTree(path.join(first.dir, `outside-${area}`));
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
  it.each(['key', 'lane-path', 'root', 'links', 'trust', 'warm-key'])('%s', async (what) => {
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
    outsideTree(victim);
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

describe('the threaded delete keeps every rule of the single-threaded one', () => {
  it('with 4 threads: a bind mount, a symlink out and a non-UTF-8 name in a big tree; nothing outside changes', async () => {
    const job = await usedRoot();
    const outside = outsideTree(path.join(job.dir, 'outside-threads'));
    const before = treeHash(outside);
    const entry = path.join(job.root, 'trash', 'big');
    for (let d = 0; d < 40; d++) {
      const dir = path.join(entry, 'target', 'debug', d % 2 ? 'deps' : '.fingerprint', `d${d}`);
      fs.mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(dir, `f${f}`), 'x');
    }
    fs.symlinkSync(outside, path.join(entry, 'target', 'debug', 'deps', 'd1', 'escape'));
    fs.mkdirSync(path.join(entry, 'target', 'debug', 'mnt'));
    fs.mkdirSync(Buffer.from(`${entry}/target/debug/deps/d3/\xff\xfe`, 'latin1'));
    try {
      bind(outside, path.join(entry, 'target', 'debug', 'mnt'));
      const out = runlane(['empty-trash', '--root', job.root, '--workers', '4', '--json']);
      expect(out.code).toBe(1);
      const [result] = out.json().trash;
      expect(result).toMatchObject({ name: 'big', outcome: 'failed' });
      // The mount is the only thing that resisted, reported once, by the final single-threaded pass.
      expect(result.failures).toEqual([expect.objectContaining({ path: `${entry}/target/debug/mnt`, code: 'EBUSY' })]);
      expect(treeHash(outside)).toBe(before);
      const left: string[] = [];
      const walk = (dir: string) => {
        for (const name of fs.readdirSync(dir)) {
          const full = path.join(dir, name);
          left.push(path.relative(entry, full));
          if (fs.lstatSync(full).isDirectory() && name !== 'mnt') walk(full);
        }
      };
      walk(entry);
      expect(left).toEqual(['target', 'target/debug', 'target/debug/mnt']);
    } finally {
      unmountAll(outside);
    }
    const again = runlane(['empty-trash', '--root', job.root, '--workers', '4']);
    expect(again.code).toBe(0);
    expect(fs.existsSync(entry)).toBe(false);
    expect(treeHash(outside)).toBe(before);
    expect(runlane(['empty-trash', '--root', job.root, '--workers', '0']).code).toBe(2);
  });

  it('with 4 threads on a flat directory (files as work items, unlinks overlapped): a file bind-mounted over an entry and links out; nothing outside changes', async () => {
    const job = await usedRoot();
    const outside = outsideTree(path.join(job.dir, 'outside-flat'));
    const before = treeHash(outside);
    const entry = path.join(job.root, 'trash', 'flat');
    fs.mkdirSync(entry, { recursive: true });
    for (let f = 0; f < 3000; f++) fs.writeFileSync(path.join(entry, `f${f}`), 'x');
    for (let d = 0; d < 8; d++) {
      fs.mkdirSync(path.join(entry, `d${d}`));
      for (let f = 0; f < 50; f++) fs.writeFileSync(path.join(entry, `d${d}`, `g${f}`), 'y');
    }
    fs.symlinkSync(outside, path.join(entry, 'link-dir'));
    fs.symlinkSync(path.join(outside, 'top.txt'), path.join(entry, 'link-file'));
    const mounted = path.join(entry, 'f1500');
    try {
      bind(path.join(outside, 'top.txt'), mounted);
      const out = runlane(['empty-trash', '--root', job.root, '--workers', '4', '--json']);
      expect(out.code).toBe(1);
      const [result] = out.json().trash;
      expect(result).toMatchObject({ name: 'flat', outcome: 'failed' });
      expect(result.failures).toEqual([expect.objectContaining({ path: mounted, code: 'EBUSY' })]);
      expect(fs.readdirSync(entry)).toEqual(['f1500']);
      expect(treeHash(outside)).toBe(before);
    } finally {
      unmountAll(path.join(outside, 'top.txt'));
    }
    expect(runlane(['empty-trash', '--root', job.root, '--workers', '4']).code).toBe(0);
    expect(fs.existsSync(entry)).toBe(false);
    expect(treeHash(outside)).toBe(before);
  });
});

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

  it('more orphans than the process may open descriptors (a reboot): every one is still reaped', async () => {
    const job = await usedRoot();
    const count = 300;
    for (let i = 0; i < count; i++) {
      const key = `orphan-${i}`;
      fs.mkdirSync(path.join(job.root, 'lanes', key));
      fs.writeFileSync(path.join(job.root, 'locks', `${key}.lock`), '');
    }
    const out = spawnSync(
      'prlimit',
      ['--nofile=256:256', process.execPath, CLI, 'sweep', '--root', job.root, '--json'],
      {
        encoding: 'utf8',
        env: { ...process.env, RUNLANE_ROOT: '' },
      },
    );
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    const entries = JSON.parse(out.stdout).entries;
    expect(entries.filter((entry: { outcome: string }) => entry.outcome === 'reaped')).toHaveLength(count);
    expect(fs.readdirSync(path.join(job.root, 'lanes'))).toEqual([]);
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

describe('the threaded delete against a process swapping directories for symlinks', () => {
  it('races a swapper at two levels of the split for seconds: nothing outside changes', async () => {
    const job = await usedRoot();
    const outside = outsideTree(path.join(job.dir, 'outside-race'));
    const before = treeHash(outside);
    const entry = path.join(job.root, 'trash', 'race');
    // The attacker swaps top-level and second-level directories (the ones the split opens)
    // for symlinks to the outside and back, as fast as it can, whatever entry is current.
    const names = ['d0', 'd1', 'd2', 'd3', 'd0/s', 'd1/s', 'd2/s', 'd3/s'];
    const attacker = startSwapper(
      names.map((name) => path.join(entry, name)),
      outside,
    );
    let rounds = 0;
    try {
      const until = Date.now() + 5000;
      while (Date.now() < until || rounds < 8) {
        const stage = path.join(job.root, 'stage');
        for (let d = 0; d < 4; d++) {
          fs.mkdirSync(path.join(stage, `d${d}`, 's'), { recursive: true });
          for (let f = 0; f < 40; f++) {
            fs.writeFileSync(path.join(stage, `d${d}`, `f${f}`), 'x');
            fs.writeFileSync(path.join(stage, `d${d}`, 's', `g${f}`), 'y');
          }
        }
        fs.renameSync(stage, entry);
        for (let pass = 0; fs.existsSync(entry) && pass < 20; pass++)
          runlane(['empty-trash', '--root', job.root, '--workers', '4', '--quiet']);
        expect(fs.existsSync(entry)).toBe(false);
        expect(treeHash(outside)).toBe(before);
        rounds++;
      }
    } finally {
      attacker.kill('SIGKILL');
    }
    expect(rounds).toBeGreaterThanOrEqual(8);
    expect(treeHash(outside)).toBe(before);
  });
});

describe('a symlink swap raced against the walker, as an unprivileged runner user', () => {
  it('a read-only directory the walker must chmod to empty, swapped for a link to outside, for seconds: no mode or file outside changes', async () => {
    const job = await usedRoot();
    const root = job.root;
    // The runner user reaches the root (the job's directory is private by default).
    fs.chmodSync(job.dir, 0o755);
    const outside = outsideTree(path.join(job.dir, 'outside-race'));
    // The outside is the runner user's own and read-only: a chmod through the link would show.
    fs.chmodSync(path.join(outside, 'victim-lane'), 0o555);
    expect(spawnSync('chown', ['-R', '-h', '65534:65534', root, outside]).status).toBe(0);
    const before = treeHash(outside);
    const entry = path.join(root, 'trash', 'planted~20260101T000000Z-race01');
    const attacker = startSwapper([path.join(entry, 'd')], path.join(outside, 'victim-lane'), true);
    let rounds = 0;
    try {
      const until = Date.now() + 4000;
      while (Date.now() < until || rounds < 6) {
        const stage = path.join(root, 'stage');
        fs.mkdirSync(path.join(stage, 'd', 'e'), { recursive: true });
        for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(stage, 'd', `f${i}`), 'x');
        for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(stage, 'd', 'e', `g${i}`), 'y');
        fs.writeFileSync(path.join(stage, 'pin'), 'pinned');
        expect(spawnSync('chown', ['-R', '65534:65534', stage]).status).toBe(0);
        // Read-only: the runner user can empty it only after giving itself write permission.
        fs.chmodSync(path.join(stage, 'd', 'e'), 0o555);
        fs.chmodSync(path.join(stage, 'd'), 0o555);
        // An immutable file keeps the entry from going in one pass: every pass walks it again.
        expect(spawnSync('chattr', ['+i', path.join(stage, 'pin')]).status).toBe(0);
        fs.renameSync(stage, entry);
        for (let pass = 0; pass < 3; pass++) runlane(['empty-trash', '--root', root], true);
        expect(spawnSync('chattr', ['-i', path.join(entry, 'pin')]).status).toBe(0);
        for (let pass = 0; fs.existsSync(entry) && pass < 50; pass++) runlane(['empty-trash', '--root', root], true);
        expect(fs.existsSync(entry)).toBe(false);
        rounds++;
      }
    } finally {
      attacker.kill('SIGKILL');
    }
    expect(rounds).toBeGreaterThanOrEqual(6);
    expect(treeHash(outside)).toBe(before);
  });
});
