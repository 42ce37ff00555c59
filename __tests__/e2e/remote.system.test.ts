import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { startCacheServer } from '../../scripts/cache-server.mjs';
import { cli, disposeJobs, laneStates, newJob, processesMentioning, within } from '../helpers/jobs.js';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';

afterEach(disposeJobs);

type Job = ReturnType<typeof newJob>;
const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function cacheServer() {
  const server = await startCacheServer();
  servers.push(server);
  return server;
}

/** A job of acme/widgets, job `build`, on its own root (its own host), with the cache service at `url`. */
function hostJob(
  url: string,
  ref: string,
  inputs: Record<string, string> = {},
  { fork = false, env = {} }: { fork?: boolean; env?: Record<string, string> } = {},
): Job {
  const pr = /^refs\/pull\/(\d+)\//.exec(ref);
  const event = pr
    ? {
        name: 'pull_request',
        payload: {
          repository: { default_branch: 'main', full_name: 'acme/widgets' },
          pull_request: {
            number: Number(pr[1]),
            head: { repo: { full_name: fork ? 'mallory/widgets' : 'acme/widgets' } },
            base: { ref: 'main', repo: { full_name: 'acme/widgets' } },
          },
        },
      }
    : { name: 'push', payload: { repository: { default_branch: 'main' } } };
  return newJob({
    ref,
    event,
    env: { ACTIONS_CACHE_URL: url, ACTIONS_RUNTIME_TOKEN: 'token', ...env },
    inputs: { presets: 'cargo', warm: 'true', ...inputs },
  });
}

/** The member names of a zstd-compressed archive, sorted. */
function members(archive: Buffer | undefined): string[] {
  expect(archive).toBeDefined();
  const plain = spawnSync('zstd', ['-dc', '--long=30'], { input: archive, maxBuffer: 1 << 30 }).stdout;
  const list = spawnSync('tar', ['-t'], { input: plain, encoding: 'utf8', maxBuffer: 1 << 30 });
  expect(list.status).toBe(0);
  return list.stdout.split('\n').filter(Boolean).sort();
}

/** What a lane holds, as relative paths (directories end in /). */
function contents(dir: string): string[] {
  const out: string[] = [];
  const walk = (sub: string) => {
    for (const entry of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, entry.name);
      out.push(entry.isDirectory() ? `${rel}/` : rel);
      if (entry.isDirectory()) walk(rel);
    }
  };
  walk('');
  return out.sort();
}

/** Host A: a default-branch build that uploads its target dir. */
async function seed(url: string): Promise<Job> {
  const a = hostJob(url, 'refs/heads/main');
  expect((await a.phase('main')).code).toBe(0);
  const work = [
    'mkdir -p "$CARGO_TARGET_DIR/debug/incremental/app-1" "$CARGO_TARGET_DIR/debug/deps" "$CARGO_TARGET_DIR/debug/.fingerprint/app-1"',
    'echo fresh > "$CARGO_TARGET_DIR/debug/.fingerprint/app-1/bin-app"',
    'echo binary > "$CARGO_TARGET_DIR/debug/app"',
    'echo rlib > "$CARGO_TARGET_DIR/debug/deps/libdep.rlib"',
    'echo machine-specific > "$CARGO_TARGET_DIR/debug/incremental/app-1/state"',
  ].join(' && ');
  expect((await a.run('sh', ['-c', work])).code).toBe(0);
  a.status = 'success';
  const post = await a.phase('post');
  expect(post.code).toBe(0);
  expect(post.stdout).toMatch(/runlane: uploaded runlane-trusted-/);
  return a;
}

describe('the remote tier: warm starts through the forge cache service (protocol v1, real HTTP)', () => {
  it("host B's PR run restores host A's default-branch upload, without incremental/, and uploads nothing", async () => {
    const server = await cacheServer();
    await seed(server.url);
    expect(server.entries.filter((entry) => entry.committed)).toHaveLength(1);

    const b = hostJob(server.url, 'refs/pull/7/merge');
    const main = await b.phase('main');
    expect(main.code).toBe(0);
    expect(b.outputs.warm).toBe('true');
    expect(b.outputs['warm-source']).toBe('remote');
    expect(main.stdout).toMatch(/warm: true \(restored from the cache service: runlane-trusted-.* in [\d.]+ s/);
    // runlane status says where the lane's warm start came from and what the restore cost.
    const status = cli('status', '--root', b.root, '--json').json();
    expect(status.lanes[0].warmFrom).toMatch(
      /^runlane-trusted-\S+ \(remote, [\d.]+ \w+ in [\d.]+ s \([\d.]+ MB\/s\)\)$/,
    );
    expect(contents(b.outputs.path)).toEqual([
      'cargo-target/',
      'cargo-target/debug/',
      'cargo-target/debug/.fingerprint/',
      'cargo-target/debug/.fingerprint/app-1/',
      'cargo-target/debug/.fingerprint/app-1/bin-app',
      'cargo-target/debug/app',
      'cargo-target/debug/deps/',
      'cargo-target/debug/deps/libdep.rlib',
    ]);
    b.status = 'success';
    const post = await b.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toContain('not uploaded to the cache service: pull requests do not upload');
    expect(server.entries).toHaveLength(1);
    // A second default-branch run with the same lock files does not upload the same key again.
    const again = hostJob(server.url, 'refs/heads/main', { 'remote-save': 'true' });
    expect((await again.phase('main')).code).toBe(0);
    again.status = 'success';
    expect((await again.phase('post')).stdout).toContain('an entry with this exact key exists already');
    expect(server.entries).toHaveLength(1);
  });

  it.each([['./cargo-target/debug/deps'], ['.']])(
    'remote-paths %s (a ./ prefix, or the whole lane) restores on another host',
    async (paths) => {
      const server = await cacheServer();
      const a = hostJob(server.url, 'refs/heads/main', { 'remote-paths': paths });
      expect((await a.phase('main')).code).toBe(0);
      const deps = path.join(a.outputs.path, 'cargo-target', 'debug', 'deps');
      fs.mkdirSync(deps, { recursive: true });
      fs.writeFileSync(path.join(deps, 'libdep.rlib'), 'rlib');
      a.status = 'success';
      expect((await a.phase('post')).stdout).toMatch(/runlane: uploaded runlane-trusted-/);

      const b = hostJob(server.url, 'refs/pull/8/merge', { 'remote-paths': paths });
      const main = await b.phase('main');
      expect(main.code).toBe(0);
      expect(main.stdout).not.toMatch(/refused/);
      expect(b.outputs['warm-source']).toBe('remote');
      expect(contents(b.outputs.path)).toContain('cargo-target/debug/deps/libdep.rlib');
      expect(contents(b.outputs.path).filter((entry) => entry.startsWith('.runlane'))).toEqual([]);
    },
  );

  it("a fork's step that rewrites the event payload to a trusted one uploads nothing: post narrows main's decision, never widens it", async () => {
    const server = await cacheServer();
    const fork = hostJob(server.url, 'refs/pull/12/merge', { 'remote-save': 'true' }, { fork: true });
    expect((await fork.phase('main')).code).toBe(0);
    const payload = JSON.parse(fs.readFileSync(fork.env.GITHUB_EVENT_PATH as string, 'utf8'));
    payload.pull_request.head.repo.full_name = 'acme/widgets';
    const step = [
      'mkdir -p "$CARGO_TARGET_DIR/debug" && echo x > "$CARGO_TARGET_DIR/debug/app"',
      `printf '%s' '${JSON.stringify(payload)}' > "$GITHUB_EVENT_PATH"`,
    ].join(' && ');
    expect((await fork.run('sh', ['-c', step])).code).toBe(0);
    fork.status = 'success';
    const post = await fork.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toContain(
      "not uploaded to the cache service: the run's trust class was 'untrusted' in main and is 'trusted' now",
    );
    expect(server.entries).toEqual([]);
  });

  it("a fork's run never uploads, whatever remote-save says; ACTIONS_CACHE_MODE none asks nothing", async () => {
    const server = await cacheServer();
    const fork = hostJob(server.url, 'refs/pull/12/merge', { 'remote-save': 'true' }, { fork: true });
    expect((await fork.phase('main')).code).toBe(0);
    expect(
      (await fork.run('sh', ['-c', 'mkdir -p "$CARGO_TARGET_DIR/debug" && echo x > "$CARGO_TARGET_DIR/debug/app"']))
        .code,
    ).toBe(0);
    fork.status = 'success';
    const post = await fork.phase('post');
    expect(post.stdout).toContain('not uploaded to the cache service: a run of untrusted code never uploads');
    expect(server.entries).toEqual([]);

    const before = server.requests.length;
    const off = hostJob(server.url, 'refs/heads/main', {}, { env: { ACTIONS_CACHE_MODE: 'none' } });
    expect((await off.phase('main')).code).toBe(0);
    off.status = 'success';
    expect((await off.phase('post')).code).toBe(0);
    expect(server.requests.length).toBe(before);
    expect(server.entries).toEqual([]);
  });

  it('a corrupt archive, a dead service and a hung one: a green job, a clean cold lane, a warning, bounded time', async () => {
    const server = await cacheServer();
    await seed(server.url);
    const cold = ['cargo-target/'];

    server.behave('corrupt');
    const corrupt = hostJob(server.url, 'refs/pull/8/merge');
    const one = await corrupt.phase('main');
    expect(one.code).toBe(0);
    expect(corrupt.outputs.warm).toBe('false');
    expect(corrupt.outputs['warm-source']).toBe('');
    expect(one.warnings.join('\n')).toMatch(/restore|tar|archive/i);
    expect(contents(corrupt.outputs.path)).toEqual(cold);

    const dead = hostJob('http://127.0.0.1:9/', 'refs/pull/9/merge');
    const two = await dead.phase('main');
    expect(two.code).toBe(0);
    expect(dead.outputs.warm).toBe('false');
    expect(two.warnings.length).toBeGreaterThan(0);
    expect(contents(dead.outputs.path)).toEqual(cold);

    server.behave('hang');
    const hung = hostJob(server.url, 'refs/pull/10/merge', { 'remote-timeout': '3s' });
    const started = Date.now();
    const three = await hung.phase('main');
    expect(three.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(hung.outputs.warm).toBe('false');
    expect(three.warnings.join('\n')).toContain('no result within remote-timeout (3 s)');
    expect(contents(hung.outputs.path)).toEqual(cold);
  });

  it('an archive whose symlink leads out of the lane is refused before tar writes through it', async () => {
    const server = await cacheServer();
    await seed(server.url);
    const entry = server.entries[0];
    // Another job uploaded this under the key (Gitea's cache does not scope by ref).
    const work = path.join(newJob().dir, 'evil');
    fs.mkdirSync(work);
    const outside = path.join(work, 'outside');
    fs.mkdirSync(outside);
    const src = path.join(work, 'src');
    fs.mkdirSync(path.join(src, 'cargo-target'), { recursive: true });
    fs.symlinkSync(outside, path.join(src, 'cargo-target', 'debug'));
    const tarFile = path.join(work, 'evil.tar');
    expect(spawnSync('tar', ['-cf', tarFile, '-C', src, 'cargo-target', 'cargo-target/debug']).status).toBe(0);
    fs.unlinkSync(path.join(src, 'cargo-target', 'debug'));
    fs.mkdirSync(path.join(src, 'cargo-target', 'debug'));
    fs.writeFileSync(path.join(src, 'cargo-target', 'debug', 'planted'), 'pwned\n');
    expect(spawnSync('tar', ['-rf', tarFile, '-C', src, 'cargo-target/debug/planted']).status).toBe(0);
    entry.archive = spawnSync('zstd', ['-c', '--long=30', tarFile]).stdout;

    const victim = hostJob(server.url, 'refs/pull/11/merge');
    const main = await victim.phase('main');
    expect(main.code).toBe(0);
    expect(victim.outputs.warm).toBe('false');
    expect(main.stderr + main.stdout).toContain('the archive is refused: symlink "cargo-target/debug"');
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(contents(victim.outputs.path)).toEqual(['cargo-target/']);
    expect(Object.values(laneStates(victim.root))).toEqual(['live']);
  });

  it('archives another job could upload are refused whole, leaving the cold lane exactly empty: owner names posing as names, devices, a bomb, an inode bomb, a deep tree, stray directories', async () => {
    const server = await cacheServer();
    await seed(server.url);
    const entry = server.entries[0];
    const dir = path.join(newJob().dir, 'crafted');
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    /** An archive made by Python's tarfile from a list of members, zstd-compressed as the cache stores it. */
    const craft = (name: string, members: string) => {
      const tarFile = path.join(dir, `${name}.tar`);
      const script = [
        'import io, sys, tarfile',
        'out = tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT)',
        'def add(name, kind=tarfile.REGTYPE, data=b"", **extra):',
        '    info = tarfile.TarInfo(name); info.type = kind; info.size = len(data)',
        '    for k, v in extra.items(): setattr(info, k, v)',
        '    out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)',
        'add("cargo-target/", tarfile.DIRTYPE, mode=0o755)',
        members,
        'out.close()',
      ].join('\n');
      expect(spawnSync('python3', ['-c', script, tarFile], { encoding: 'utf8' }).status).toBe(0);
      return spawnSync('zstd', ['-c', tarFile]).stdout;
    };
    const cases: [string, string, Record<string, string>, RegExp][] = [
      [
        'owner names',
        `add("cargo-target/debug", tarfile.SYMTYPE, linkname="${outside}", uname='"x', gname='y"')\nadd("cargo-target/debug/planted", data=b"pwned")`,
        {},
        /refused/,
      ],
      [
        'device and setuid',
        'add("cargo-target/app", data=b"x", mode=0o4755, uid=0)\nadd("cargo-target/disk", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o666)',
        {},
        /member "cargo-target\/disk" is a block device/,
      ],
      [
        'bomb',
        'add("cargo-target/zeros", data=bytes(4 << 20))',
        { 'remote-max-size': '1M' },
        /more than 1048576 bytes/,
      ],
      [
        // An inode bomb: a few KiB of archive, thousands of empty files; tar is stopped at the bound.
        'many entries',
        'for i in range(3000): add("cargo-target/f%d" % i)',
        { 'remote-max-entries': '1000' },
        /more than 1000 entries \(remote-max-entries\)/,
      ],
      [
        // Refused, and its staging directory, deeper than the delete walker's descriptors reach, removed all the same.
        'deep',
        'add("cargo-target/" + "a/" * 450 + "x", data=b"x")',
        {},
        /nested too deep/,
      ],
      [
        'stray',
        'add("other-dir/", tarfile.DIRTYPE, mode=0o755)\nadd("other-dir/x", data=b"x")',
        {},
        /outside the archived paths/,
      ],
    ];
    for (const [label, members, inputs, why] of cases) {
      entry.archive = craft(label.replace(/ /g, '-'), members);
      const victim = hostJob(server.url, 'refs/pull/13/merge', inputs);
      const main = await victim.phase('main');
      expect(main.code).toBe(0);
      expect(victim.outputs.warm).toBe('false');
      expect(main.warnings.join('\n')).toMatch(why);
      expect(fs.readdirSync(outside)).toEqual([]);
      expect(contents(victim.outputs.path)).toEqual(['cargo-target/']);
    }
  });

  it('lanes/ swapped for a symlink mid-download: the extraction still lands in the lane main opened, nothing outside', async () => {
    const server = await cacheServer();
    await seed(server.url);
    let release = () => undefined as void;
    server.gate(new Promise<void>((resolve) => (release = resolve)));
    const b = hostJob(server.url, 'refs/pull/15/merge');
    const main = b.phase('main');
    const lanes = path.join(b.root, 'lanes');
    const decoy = path.join(b.dir, 'decoy');
    try {
      expect(
        await within(30_000, () => server.requests.some((request) => request.startsWith('GET /archive/'))),
      ).toBeGreaterThanOrEqual(0);
      // A process of the job makes `lanes` lead elsewhere, to a tree shaped as the lane's.
      const [key] = fs.readdirSync(lanes);
      fs.mkdirSync(path.join(decoy, key, '.runlane-remote'), { recursive: true });
      fs.renameSync(lanes, `${lanes}.real`);
      fs.symlinkSync(decoy, lanes);
    } finally {
      release();
    }
    const result = await main;
    expect(result.code).toBe(0);
    fs.unlinkSync(lanes);
    fs.renameSync(`${lanes}.real`, lanes);
    expect(contents(decoy)).toEqual([`${fs.readdirSync(lanes)[0]}/`, `${fs.readdirSync(lanes)[0]}/.runlane-remote/`]);
    expect(b.outputs['warm-source']).toBe('remote');
    expect(contents(path.join(lanes, fs.readdirSync(lanes)[0]))).toContain('cargo-target/debug/deps/libdep.rlib');
  });

  it('the upload never follows a symlink out of the lane: what is behind one is neither archived nor counted', async () => {
    const server = await cacheServer();
    const a = hostJob(server.url, 'refs/heads/main', { 'remote-max-size': '1M' });
    expect((await a.phase('main')).code).toBe(0);
    const outside = path.join(a.dir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'id_rsa'), Buffer.alloc(3 * 1048576, 'k'));
    const target = path.join(a.outputs.path, 'cargo-target');
    fs.mkdirSync(path.join(target, 'release', 'deps'), { recursive: true });
    fs.writeFileSync(path.join(target, 'release', 'deps', 'libdep.rlib'), 'rlib');
    fs.symlinkSync(outside, path.join(target, 'debug'));
    a.status = 'success';
    const post = await a.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toMatch(/runlane: uploaded runlane-trusted-\S+ \(4 B before compression\)/);
    const [entry] = server.entries.filter((each) => each.committed);
    expect(members(entry.archive)).toEqual(['cargo-target/release/deps/', 'cargo-target/release/deps/libdep.rlib']);
  });

  it('a symlink that leads out, among the archived paths, is not uploaded: no entry that every restore refuses', async () => {
    const server = await cacheServer();
    const a = hostJob(server.url, 'refs/heads/main');
    expect((await a.phase('main')).code).toBe(0);
    const debug = path.join(a.outputs.path, 'cargo-target', 'debug');
    fs.mkdirSync(path.join(debug, 'deps'), { recursive: true });
    fs.symlinkSync('/etc', path.join(debug, 'deps', 'etc'));
    a.status = 'success';
    const post = await a.phase('post');
    expect(post.code).toBe(0);
    expect(post.stdout).toContain(
      'not uploaded: a restore would refuse the archive (symlink "cargo-target/debug/deps/etc" points to "/etc")',
    );
    expect(server.entries).toEqual([]);
  });

  it("lanes/<key> swapped for a symlink to a decoy as the upload starts: the entry holds the lane's files, never the decoy's", async () => {
    const server = await cacheServer();
    const a = hostJob(server.url, 'refs/heads/main');
    expect((await a.phase('main')).code).toBe(0);
    const lane = a.outputs.path;
    const decoy = path.join(a.dir, 'decoy');
    for (const [dir, file] of [
      [lane, 'libdep.rlib'],
      [decoy, 'decoy.rlib'],
    ]) {
      fs.mkdirSync(path.join(dir, 'cargo-target', 'debug', 'deps'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'cargo-target', 'debug', 'deps', file), file);
    }
    a.status = 'success';
    const post = a.phase('post');
    // The moment post's transfer process exists (it has the lane to read from by then), a
    // process of the job makes lanes/<key> lead to the decoy, and leaves it so.
    const transfer = () =>
      processesMentioning(path.join('dist', 'remote', 'index.js')).some((pid) => {
        try {
          return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes(a.root);
        } catch {
          return false;
        }
      });
    let swapped = false;
    for (const started = Date.now(); !swapped && Date.now() - started < 60_000;) {
      if (transfer()) {
        fs.renameSync(lane, `${lane}.real`);
        fs.symlinkSync(decoy, lane);
        swapped = true;
      } else await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const result = await post;
    expect(swapped).toBe(true);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/runlane: uploaded runlane-trusted-/);
    const [entry] = server.entries.filter((each) => each.committed);
    expect(members(entry.archive)).toEqual(['cargo-target/debug/deps/', 'cargo-target/debug/deps/libdep.rlib']);
    expect(fs.readdirSync(path.join(decoy, 'cargo-target', 'debug', 'deps'))).toEqual(['decoy.rlib']);
  });

  it('a transfer ends with the main that started it: SIGKILL of main mid-restore leaves nothing running', async () => {
    const server = await cacheServer();
    await seed(server.url);
    server.behave('hang');
    const job = hostJob(server.url, 'refs/pull/14/merge');
    const main = path.join(ACTION_DIR, 'dist', 'main', 'index.js');
    const tracking = job.env.RUNNER_TRACKING_ID as string;
    const transfers = () =>
      processesMentioning(tracking, 'environ').filter((pid) => {
        try {
          return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.join('dist', 'remote'));
        } catch {
          return false;
        }
      });
    const run = job.run(process.execPath, [main], {
      env: job.inputEnv(),
      onSpawn: (child) => void within(20_000, () => transfers().length > 0).then(() => child.kill('SIGKILL')),
    });
    await run;
    expect(await within(10_000, () => transfers().length === 0)).toBeGreaterThanOrEqual(0);
  });
});
