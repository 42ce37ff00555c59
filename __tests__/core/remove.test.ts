import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { describeMount, mountsUnder, parseMountinfo } from '../../src/core/delete/mounts.js';
import { Layout } from '../../src/core/root/layout.js';
import { Dir, MAX_DEPTH } from '../../src/core/delete/dir.js';
import { walkTree } from '../../src/core/delete/walk.js';
import { sweepTable } from '../../src/core/ops/report.js';
import { emptyTrash } from '../../src/core/root/trash.js';
import { preciousTree, removeAt, treeHash, useScratch } from '../helpers/trees.js';

const scratch = useScratch('runlane-remove-');

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
    const base = fs.mkdtempSync(path.join(scratch(), 'modes-'));
    const tree = path.join(base, 'lane');
    fs.mkdirSync(path.join(tree, 'mod', 'pkg@v1', 'inner'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'mod', 'pkg@v1', 'inner', 'go.mod'), 'module x');
    fs.chmodSync(path.join(tree, 'mod', 'pkg@v1', 'inner'), 0o555);
    fs.chmodSync(path.join(tree, 'mod', 'pkg@v1'), 0o000);
    const report = removeAt(base, 'lane');
    expect(report).toEqual({ removed: true, failures: [] });
  });

  it('removes a tree nested far deeper than the walker holds descriptors for (1000 levels): moved up, MAX_DEPTH at a time', () => {
    const base = fs.mkdtempSync(path.join(scratch(), 'deep-'));
    const levels = Array(1000).fill('a');
    fs.mkdirSync(path.join(base, 'lane', ...levels), { recursive: true });
    fs.writeFileSync(path.join(base, 'lane', ...levels, 'bottom'), 'x');
    fs.writeFileSync(path.join(base, 'lane', ...levels.slice(0, MAX_DEPTH + 5), 'middle'), 'x');
    expect(removeAt(base, 'lane')).toEqual({ removed: true, failures: [] });
    expect(fs.readdirSync(base)).toEqual([]);
  });

  it('bind mounts at and below the depth where directories are moved up are never entered: what they show stays, the rest goes', () => {
    const base = fs.mkdtempSync(path.join(scratch(), 'deep-mount-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
    const before = treeHash(outside);
    const levels = Array(MAX_DEPTH + 10).fill('a');
    const mountPoint = path.join(base, 'root', 'lane', ...levels, 'cache');
    fs.mkdirSync(mountPoint, { recursive: true });
    fs.writeFileSync(path.join(base, 'root', 'lane', ...levels, 'own.o'), 'x');
    // One at exactly MAX_DEPTH, where a directory would be moved up (a mount point cannot be).
    const atDepth = path.join(base, 'root', 'lane', ...levels.slice(0, MAX_DEPTH - 1), 'm');
    fs.mkdirSync(atDepth);
    expect(spawnSync('mount', ['--bind', outside, mountPoint]).status).toBe(0);
    expect(spawnSync('mount', ['--bind', outside, atDepth]).status).toBe(0);
    let report: ReturnType<typeof removeAt>;
    try {
      report = removeAt(path.join(base, 'root'), 'lane');
    } finally {
      // The mount moved up with the directory above it: unmount it wherever it is now.
      const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
      for (const line of mounts) {
        const target = line.split(' ')[4];
        if (target?.startsWith(path.join(base, 'root'))) spawnSync('umount', [target]);
      }
    }
    expect(report.removed).toBe(false);
    expect(report.failures).toEqual([
      expect.objectContaining({ code: 'EBUSY', message: expect.stringMatching(/a file system is mounted here/) }),
      expect.objectContaining({ code: 'EBUSY', message: expect.stringMatching(/a file system is mounted here/) }),
    ]);
    expect(treeHash(outside)).toBe(before);
  });

  it('never enters a bind mount of the same device: the mount is reported with its source, the rest removed', () => {
    const base = fs.mkdtempSync(path.join(scratch(), 'bind-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
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
    const base = fs.mkdtempSync(path.join(scratch(), 'walk-mount-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
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
    const base = fs.mkdtempSync(path.join(scratch(), 'onlane-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
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
});

describe('names and records a job can plant', () => {
  it('deletes entries whose names are not UTF-8', () => {
    const base = fs.mkdtempSync(path.join(scratch(), 'bytes-'));
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
    const root = fs.mkdtempSync(path.join(scratch(), 'records-'));
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
