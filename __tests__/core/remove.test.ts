import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { describeMount, mountsUnder, parseMountinfo } from '../../src/core/mounts.js';
import { Layout } from '../../src/core/layout.js';
import { Dir, removeIn, walkTree } from '../../src/core/remove.js';
import { removeInParallel } from '../../src/core/parallel-remove.js';
import { sweepTable } from '../../src/core/report.js';
import { emptyTrash } from '../../src/core/trash.js';
import { startSwapper } from '../helpers/jobs.js';

let scratch: string;
beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-remove-'));
});
afterAll(() => {
  for (const mount of mountsUnder(fs.realpathSync(scratch)).reverse()) spawnSync('umount', ['-l', mount.mountPoint]);
  spawnSync('chattr', ['-R', '-i', scratch], { stdio: 'ignore' });
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** Every path, type, mode, owner and content below `dir` (and its own mode): changes show. */
function treeHash(dir: string): string {
  const hash = createHash('sha256');
  const visit = (current: string) => {
    const stat = fs.lstatSync(current);
    hash.update(`${path.relative(dir, current)}|${stat.mode}|${stat.uid}|${stat.nlink}\n`);
    if (stat.isSymbolicLink()) hash.update(fs.readlinkSync(current));
    else if (stat.isFile()) hash.update(fs.readFileSync(current));
    else if (stat.isDirectory()) for (const name of fs.readdirSync(current).sort()) visit(path.join(current, name));
  };
  visit(dir);
  return hash.digest('hex');
}

/** An outside directory worth protecting: files, a subdirectory, a read-only directory. */
function outsideTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(dir, `precious-${i}`), `data ${i}`);
  fs.writeFileSync(path.join(dir, 'sub', 'deep'), 'deep');
  fs.mkdirSync(path.join(dir, 'ro'));
  fs.writeFileSync(path.join(dir, 'ro', 'file'), 'ro');
  fs.chmodSync(path.join(dir, 'ro'), 0o555);
}

function removeAt(parentDir: string, name: string) {
  const parent = Dir.open(parentDir);
  try {
    return removeIn(parent, name);
  } finally {
    parent.close();
  }
}

describe('mountinfo', () => {
  it('parses mount points with escaped spaces, and finds the mounts under a directory', () => {
    const text = [
      '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
      '42 22 254:0 /srv/cache /work/root/lanes/a/cache rw,relatime - ext4 /dev/vda rw',
      '43 22 0:50 / /work/root/lanes/a\\040b rw - tmpfs tmpfs rw',
      '44 22 0:51 / /work/root/lanes/ab rw - tmpfs tmpfs rw',
      'garbage',
    ].join('\n');
    const mounts = parseMountinfo(text);
    expect(mounts.map((mount) => mount.mountPoint)).toEqual([
      '/',
      '/work/root/lanes/a/cache',
      '/work/root/lanes/a b',
      '/work/root/lanes/ab',
    ]);
    expect(mountsUnder('/work/root/lanes/a', mounts).map((mount) => mount.id)).toEqual([42]);
    expect(describeMount(mounts[1])).toBe('/dev/vda:/srv/cache (ext4)');
  });
});

describe('the safe delete', () => {
  it('removes a tree with read-only directories and a chmod 000 directory we own', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'modes-'));
    const tree = path.join(base, 'lane');
    fs.mkdirSync(path.join(tree, 'mod', 'pkg@v1', 'inner'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'mod', 'pkg@v1', 'inner', 'go.mod'), 'module x');
    fs.chmodSync(path.join(tree, 'mod', 'pkg@v1', 'inner'), 0o555);
    fs.chmodSync(path.join(tree, 'mod', 'pkg@v1'), 0o000);
    const report = removeAt(base, 'lane');
    expect(report).toEqual({ removed: true, failures: [] });
  });

  it('never enters a bind mount of the same device: the mount is reported with its source, the rest removed', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'bind-'));
    const outside = path.join(base, 'outside');
    outsideTree(outside);
    const before = treeHash(outside);
    const lane = path.join(base, 'root', 'lane');
    fs.mkdirSync(path.join(lane, 'cache'), { recursive: true });
    fs.writeFileSync(path.join(lane, 'own.o'), 'x');
    expect(spawnSync('mount', ['--bind', outside, path.join(lane, 'cache')]).status).toBe(0);
    try {
      expect(fs.statSync(path.join(lane, 'cache')).dev).toBe(fs.statSync(lane).dev);
      const report = removeAt(path.join(base, 'root'), 'lane');
      expect(report.removed).toBe(false);
      expect(report.failures).toHaveLength(1);
      expect(report.failures[0]).toMatchObject({ path: expect.stringMatching(/lane\/cache$/), code: 'EBUSY' });
      expect(report.failures[0].hint).toContain(outside);
      expect(fs.readdirSync(lane)).toEqual(['cache']);
    } finally {
      spawnSync('umount', [path.join(lane, 'cache')]);
    }
    expect(treeHash(outside)).toBe(before);
    expect(removeAt(path.join(base, 'root'), 'lane')).toEqual({ removed: true, failures: [] });
  });

  it('a walk never looks at a mount point (an lstat of a FUSE root asks its daemon): a directory and a file bind mount go to onMount only', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'walk-mount-'));
    const outside = path.join(base, 'outside');
    outsideTree(outside);
    const tree = path.join(base, 'tree');
    fs.mkdirSync(path.join(tree, 'sub', 'cache'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'sub', 'file.o'), 'x');
    fs.writeFileSync(path.join(tree, 'sub', 'bound.o'), 'y');
    const mounts = [path.join(tree, 'sub', 'cache'), path.join(tree, 'sub', 'bound.o')];
    expect(spawnSync('mount', ['--bind', outside, mounts[0]]).status).toBe(0);
    try {
      expect(spawnSync('mount', ['--bind', path.join(outside, 'precious-0'), mounts[1]]).status).toBe(0);
      const top = Dir.open(tree);
      const seen: string[] = [];
      const refused: string[] = [];
      try {
        walkTree(top, (dir, name) => void seen.push(path.join(dir.path, String(name))), {
          onMount: (dir, name) => void refused.push(path.join(dir.path, String(name))),
        });
      } finally {
        top.close();
      }
      expect(seen.sort()).toEqual([path.join(tree, 'sub'), path.join(tree, 'sub', 'file.o')]);
      expect(refused.sort()).toEqual([...mounts].sort());
    } finally {
      for (const mount of mounts) spawnSync('umount', [mount]);
    }
  });

  it('a bind mount on the entry itself is refused whole', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'onlane-'));
    const outside = path.join(base, 'outside');
    outsideTree(outside);
    const before = treeHash(outside);
    const lane = path.join(base, 'root', 'lane');
    fs.mkdirSync(lane, { recursive: true });
    expect(spawnSync('mount', ['--bind', outside, lane]).status).toBe(0);
    try {
      const report = removeAt(path.join(base, 'root'), 'lane');
      expect(report.removed).toBe(false);
      expect(report.failures.map((failure) => failure.code)).toEqual(['EBUSY']);
    } finally {
      spawnSync('umount', [lane]);
    }
    expect(treeHash(outside)).toBe(before);
  });

  it('races a process that swaps a directory for a symlink to outside, for seconds: nothing outside changes', async () => {
    const base = fs.mkdtempSync(path.join(scratch, 'race-'));
    const outside = path.join(base, 'outside');
    outsideTree(outside);
    const before = treeHash(outside);
    const root = path.join(base, 'root');
    fs.mkdirSync(root);
    // The attacker: renames lane/d away, puts a symlink to the outside in its place, and back,
    // as fast as it can, whatever lane is current.
    const attacker = startSwapper([path.join(root, 'lane', 'd')], outside);
    let rounds = 0;
    try {
      const until = Date.now() + 4000;
      while (Date.now() < until || rounds < 20) {
        // Built aside and renamed into place, so the attacker only ever meets the walker.
        const stage = path.join(root, 'stage');
        const lane = path.join(root, 'lane');
        fs.mkdirSync(path.join(stage, 'd', 'e'), { recursive: true });
        for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(stage, 'd', `f${i}`), 'x');
        for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(stage, 'd', 'e', `g${i}`), 'y');
        fs.chmodSync(path.join(stage, 'd'), 0o555);
        // An immutable file keeps the lane from going in one pass: every pass walks it again.
        fs.writeFileSync(path.join(stage, 'pin'), 'pinned');
        expect(spawnSync('chattr', ['+i', path.join(stage, 'pin')]).status).toBe(0);
        fs.renameSync(stage, lane);
        for (let pass = 0; pass < 3; pass++) {
          const report = removeAt(root, 'lane');
          expect(report.failures.map((failure) => failure.code)).toContain('EPERM');
        }
        expect(spawnSync('chattr', ['-i', path.join(lane, 'pin')]).status).toBe(0);
        // Whatever the race left (d.x renamed back meanwhile) goes with the next pass.
        for (let pass = 0; fs.existsSync(lane) && pass < 100; pass++) removeAt(root, 'lane');
        expect(fs.existsSync(lane)).toBe(false);
        rounds++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      attacker.kill('SIGKILL');
    }
    expect(rounds).toBeGreaterThanOrEqual(20);
    expect(treeHash(outside)).toBe(before);
  });

  it('property: over random trees of files, symlinks out, bind mounts and immutable files, nothing outside changes', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'prop-'));
    const outside = path.join(base, 'outside');
    outsideTree(outside);
    const before = treeHash(outside);
    const kinds = ['file', 'dir', 'link-dir', 'link-file', 'immutable', 'mount', 'ro-dir'] as const;
    const entry = fc.record({
      depth: fc.integer({ min: 0, max: 3 }),
      kind: fc.constantFrom(...kinds),
      name: fc.stringMatching(/^[a-z0-9 .\n:%-]{1,12}$/).filter((n) => n !== '.' && n !== '..'),
    });
    let run = 0;
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 12 }), (entries) => {
        const root = path.join(base, `root-${run++}`);
        const lane = path.join(root, 'lane');
        fs.mkdirSync(lane, { recursive: true });
        const mounts: string[] = [];
        const pinned: string[] = [];
        const readOnly: string[] = [];
        let dir = lane;
        try {
          for (const [index, spec] of entries.entries()) {
            const parent = spec.depth === 0 ? lane : dir;
            const target = path.join(parent, `${index}-${spec.name}`);
            if (spec.kind === 'file') fs.writeFileSync(target, 'x');
            else if (spec.kind === 'dir' || spec.kind === 'ro-dir') {
              fs.mkdirSync(target);
              fs.writeFileSync(path.join(target, 'inner'), 'x');
              if (spec.kind === 'ro-dir') readOnly.push(target);
              dir = target;
            } else if (spec.kind === 'link-dir') fs.symlinkSync(outside, target);
            else if (spec.kind === 'link-file') fs.symlinkSync(path.join(outside, 'precious-0'), target);
            else if (spec.kind === 'immutable') {
              fs.writeFileSync(target, 'stuck');
              expect(spawnSync('chattr', ['+i', target]).status).toBe(0);
              pinned.push(target);
            } else {
              fs.mkdirSync(target);
              expect(spawnSync('mount', ['--bind', outside, target]).status).toBe(0);
              mounts.push(target);
              pinned.push(target);
            }
          }
          for (const each of readOnly.reverse()) fs.chmodSync(each, 0o555);
          const report = removeAt(root, 'lane');
          // What stays is exactly what must: the pinned entries and the directories holding them.
          expect(report.removed).toBe(pinned.length === 0);
          for (const kept of pinned) expect(fs.lstatSync(kept)).toBeTruthy();
          expect(report.failures.length).toBe(pinned.length);
          expect(treeHash(outside)).toBe(before);
        } finally {
          for (const mount of mounts.reverse()) spawnSync('umount', [mount]);
          for (const kept of pinned) spawnSync('chattr', ['-i', kept]);
        }
        expect(removeAt(root, 'lane')).toEqual({ removed: true, failures: [] });
      }),
      { numRuns: 40 },
    );
    expect(treeHash(outside)).toBe(before);
  });
});

describe('the threaded delete', () => {
  it('a progress callback that throws (a meter whose root was renamed away) never closes descriptors a thread still uses: nothing outside changes', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'tick-'));
    const big = path.join(base, 'trash', 'big');
    const victim = path.join(base, 'victim');
    for (let d = 0; d < 40; d++) {
      fs.mkdirSync(path.join(big, `d${d}`), { recursive: true });
      for (let f = 0; f < 300; f++) fs.writeFileSync(path.join(big, `d${d}`, `f${f}`), 'x');
      fs.mkdirSync(path.join(victim, `d${d}`), { recursive: true });
      fs.writeFileSync(path.join(victim, `d${d}`, 'precious'), 'keep');
    }
    const before = treeHash(victim);
    const trash = Dir.open(path.join(base, 'trash'));
    const script = path.resolve('dist/delete-worker/index.js');
    expect(fs.existsSync(script)).toBe(true);
    let ticks = 0;
    const tick = () => {
      ticks++;
      throw Object.assign(new Error("ENOENT: no such file or directory, statfs '/gone'"), { code: 'ENOENT' });
    };
    try {
      expect(() => removeInParallel(trash, 'big', { script, workers: 4 }, tick)).not.toThrow();
      expect(ticks).toBeGreaterThan(0);
      // What comes next in a trash (the next entry, any directory) takes the lowest free numbers.
      const next = Dir.open(victim);
      const children = Array.from({ length: 40 }, (_, d) => next.openChild(`d${d}`));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
      for (const child of children) child.close();
      next.close();
      expect(treeHash(victim)).toBe(before);
      expect(removeIn(trash, 'big')).toEqual({ removed: true, failures: [] });
    } finally {
      trash.close();
    }
  });
});

describe('names and records a job can plant', () => {
  it('deletes entries whose names are not UTF-8', () => {
    const base = fs.mkdtempSync(path.join(scratch, 'bytes-'));
    const lane = path.join(base, 'lane');
    fs.mkdirSync(lane);
    for (const bytes of [[0x66, 0xff], [0xc3, 0x28], [0x80]]) {
      const name = Buffer.concat([Buffer.from(`${lane}/`), Buffer.from(bytes)]);
      fs.writeFileSync(name, 'x');
      fs.mkdirSync(Buffer.concat([name, Buffer.from('-dir')]));
    }
    expect(fs.readdirSync(lane)).toHaveLength(6);
    expect(removeAt(base, 'lane')).toEqual({ removed: true, failures: [] });
  });

  it('a directory planted where a failure record goes never stops the trash', () => {
    const root = fs.mkdtempSync(path.join(scratch, 'records-'));
    fs.writeFileSync(path.join(root, '.runlane-root'), '{}');
    for (const area of ['lanes', 'locks', 'meta', 'trash', 'parked']) fs.mkdirSync(path.join(root, area));
    const trash = path.join(root, 'trash');
    fs.mkdirSync(path.join(trash, 'E', 'cache'), { recursive: true });
    fs.writeFileSync(path.join(trash, 'E', 'cache', 'stuck'), 'x');
    expect(spawnSync('chattr', ['+i', path.join(trash, 'E', 'cache', 'stuck')]).status).toBe(0);
    fs.mkdirSync(path.join(trash, 'E.failed.json', 'planted'), { recursive: true });
    fs.mkdirSync(path.join(trash, 'F', 'sub'), { recursive: true });
    const layout = new Layout(root);
    try {
      const results = emptyTrash(layout);
      expect(results.map((result) => [result.name, result.outcome])).toEqual([
        ['E', 'failed'],
        ['F', 'deleted'],
      ]);
      expect(results[0].failures.map((failure) => failure.code)).toEqual(['EPERM']);
      expect(fs.lstatSync(path.join(trash, 'E.failed.json')).isFile()).toBe(true);
    } finally {
      layout.close();
      spawnSync('chattr', ['-i', path.join(trash, 'E', 'cache', 'stuck')]);
    }
  });

  it('a sweep table with a failure that names no path still renders', () => {
    const table = sweepTable({
      root: '/r',
      dryRun: false,
      scanned: 1,
      scannedParked: 0,
      entries: [{ key: 'k', path: '/r/lanes/k', state: 'orphan', outcome: 'failed', reason: 'orphan', failures: [] }],
      trash: [],
      freedBytes: 0,
      tidied: 0,
      problems: [],
      timedOut: false,
      seconds: 0,
    });
    expect(table[1].slice(0, 3)).toEqual(['k', 'orphan', 'failed']);
  });
});
