import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { Dir } from '../../src/core/delete/dir.js';
import { removeIn } from '../../src/core/delete/remove.js';
import { removeInParallel } from '../../src/core/delete/parallel.js';
import { startSwapper } from '../helpers/jobs.js';
import { preciousTree, removeAt, treeHash, useScratch } from '../helpers/trees.js';

const scratch = useScratch('runlane-remove-');

describe('the safe delete', () => {
  it('races a process that swaps a directory for a symlink to outside, for seconds: nothing outside changes', async () => {
    const base = fs.mkdtempSync(path.join(scratch(), 'race-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
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
    const base = fs.mkdtempSync(path.join(scratch(), 'prop-'));
    const outside = path.join(base, 'outside');
    preciousTree(outside);
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
    const base = fs.mkdtempSync(path.join(scratch(), 'tick-'));
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
