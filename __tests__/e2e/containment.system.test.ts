// The heavy containment cases: threaded deletes of big trees, descriptor limits, and symlink
// swaps raced against the walker for seconds. Nothing outside the root may change.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { CLI, disposeJobs, runlane, startSwapper } from '../helpers/jobs.js';
import { usedRoot, bind, decoyLayout, treeHash, unmountAll } from '../helpers/trees.js';

afterEach(disposeJobs);

describe('the threaded delete keeps every rule of the single-threaded one', () => {
  it('with 4 threads: a bind mount, a symlink out and a non-UTF-8 name in a big tree; nothing outside changes', async () => {
    const job = await usedRoot();
    const outside = decoyLayout(path.join(job.dir, 'outside-threads'));
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
    const outside = decoyLayout(path.join(job.dir, 'outside-flat'));
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

describe('the threaded delete against a process swapping directories for symlinks', () => {
  it('races a swapper at two levels of the split for seconds: nothing outside changes', async () => {
    const job = await usedRoot();
    const outside = decoyLayout(path.join(job.dir, 'outside-race'));
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
    const outside = decoyLayout(path.join(job.dir, 'outside-race'));
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
