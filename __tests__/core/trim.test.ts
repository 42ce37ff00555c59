import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Dir, MAX_DEPTH } from '../../src/core/delete/dir.js';
import { describeTrim, parseWarmMaxSize, trimLane } from '../../src/core/warm/trim.js';

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

const KIB = 1024;
const DAY = 86_400_000;

/** A `lanes` directory holding one lane `l`; returns both paths. */
function lanesDir(): { lanes: string; lane: string } {
  const lanes = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-trim-'));
  made.push(lanes);
  fs.mkdirSync(path.join(lanes, 'l'));
  return { lanes, lane: path.join(lanes, 'l') };
}

/** A file of `kib` KiB whose access and modification times are `ageMs` ago. */
function file(at: string, kib: number, ageMs: number): void {
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.writeFileSync(at, Buffer.alloc(kib * KIB, 1));
  const when = new Date(Date.now() - ageMs);
  fs.utimesSync(at, when, when);
}

/** Disk usage as du counts it (allocated blocks, each inode once), in bytes. */
function du(target: string): number {
  return Number(execFileSync('du', ['-s', '-B1', '-x', target], { encoding: 'utf8' }).split('\t')[0]);
}

function trim(lanes: string, maxBytes: number, stamp: number) {
  const dir = Dir.open(lanes);
  try {
    return trimLane(dir, 'l', maxBytes, stamp);
  } finally {
    dir.close();
  }
}

describe('warm-max-size trimming', () => {
  it('removes files this job did not use, oldest first, until the lane fits; what it used stays', () => {
    const { lanes, lane } = lanesDir();
    const stamp = Date.now() - 60_000;
    // Used by this job (now), and unused at three ages.
    file(path.join(lane, 'target/debug/deps/used-a.rlib'), 256, 0);
    file(path.join(lane, 'target/debug/deps/used-b.rlib'), 256, 0);
    file(path.join(lane, 'target/debug/deps/old-10d.rlib'), 256, 10 * DAY);
    file(path.join(lane, 'target/debug/deps/old-5d.rlib'), 256, 5 * DAY);
    file(path.join(lane, 'target/release/old-2d.rlib'), 256, 2 * DAY);
    const before = du(lane);
    // Room for the used files and one unused one: the two oldest go.
    const result = trim(lanes, before - 2 * 256 * KIB, stamp);
    expect(result.before).toBe(before);
    expect(result.removed).toBe(2);
    expect(result.removedUsed).toBe(0);
    expect(fs.existsSync(path.join(lane, 'target/debug/deps/old-10d.rlib'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'target/debug/deps/old-5d.rlib'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'target/release/old-2d.rlib'))).toBe(true);
    expect(fs.existsSync(path.join(lane, 'target/debug/deps/used-a.rlib'))).toBe(true);
    expect(result.after).toBe(du(lane));
    expect(du(lane)).toBeLessThanOrEqual(before - 2 * 256 * KIB);
    expect(describeTrim(result, before)).toMatch(/removed 2 files/);
    // Within the limit now: a second trim removes nothing.
    const again = trim(lanes, before - 2 * 256 * KIB, stamp);
    expect(again.removed).toBe(0);
    expect(describeTrim(again, before - 2 * 256 * KIB)).toMatch(/within warm-max-size/);
  });

  it('when what this job used is over the limit, used files go too, oldest first, and it says so', () => {
    const { lanes, lane } = lanesDir();
    const stamp = Date.now() - 10 * 60_000;
    file(path.join(lane, 'a'), 256, 60_000);
    file(path.join(lane, 'b'), 256, 0);
    file(path.join(lane, 'old'), 256, DAY);
    const result = trim(lanes, 300 * KIB, stamp);
    expect(fs.existsSync(path.join(lane, 'old'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'a'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'b'))).toBe(true);
    expect(result.removedUsed).toBe(1);
    expect(describeTrim(result, 300 * KIB)).toMatch(/1 of them used by this job.*raise it/);
  });

  it('hard links count once and are removed with every name', () => {
    const { lanes, lane } = lanesDir();
    file(path.join(lane, 'deps/bin-1234'), 512, 3 * DAY);
    fs.mkdirSync(path.join(lane, 'debug'));
    fs.linkSync(path.join(lane, 'deps/bin-1234'), path.join(lane, 'debug/bin'));
    file(path.join(lane, 'new'), 64, 0);
    const before = du(lane);
    const result = trim(lanes, 200 * KIB, Date.now() - 60_000);
    expect(result.before).toBe(before);
    expect(fs.existsSync(path.join(lane, 'deps/bin-1234'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'debug/bin'))).toBe(false);
    expect(fs.existsSync(path.join(lane, 'new'))).toBe(true);
    expect(result.after).toBe(du(lane));
  });

  it('never follows a symlink, never enters a mount, never changes anything outside the lane', () => {
    const { lanes, lane } = lanesDir();
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-trim-outside-'));
    made.push(outside);
    file(path.join(outside, 'precious'), 512, 30 * DAY);
    file(path.join(outside, 'sub/precious'), 512, 30 * DAY);
    const outsideTimes = fs.statSync(path.join(outside, 'precious')).atimeMs;
    fs.symlinkSync(outside, path.join(lane, 'link-dir'));
    fs.symlinkSync(path.join(outside, 'precious'), path.join(lane, 'link-file'));
    fs.mkdirSync(path.join(lane, 'mnt'));
    file(path.join(lane, 'old'), 128, 20 * DAY);
    // A file bind-mounted over a lane file: the mount point cannot be unlinked, and what it
    // shows (outside) is never truncated or removed.
    file(path.join(lane, 'bound'), 4, 40 * DAY);
    execFileSync('mount', ['--bind', outside, path.join(lane, 'mnt')]);
    execFileSync('mount', ['--bind', path.join(outside, 'sub/precious'), path.join(lane, 'bound')]);
    try {
      const result = trim(lanes, 0, Date.now());
      expect(fs.existsSync(path.join(lane, 'old'))).toBe(false);
      expect(result.failed).toBe(1);
    } finally {
      spawnSync('umount', [path.join(lane, 'bound')]);
      spawnSync('umount', [path.join(lane, 'mnt')]);
    }
    // Not even read: its access time is what it was (checked before this test reads it).
    expect(fs.statSync(path.join(outside, 'precious')).atimeMs).toBe(outsideTimes);
    expect(fs.readFileSync(path.join(outside, 'precious')).length).toBe(512 * KIB);
    expect(fs.readFileSync(path.join(outside, 'sub/precious')).length).toBe(512 * KIB);
    expect(fs.lstatSync(path.join(lane, 'link-dir')).isSymbolicLink()).toBe(true);
    expect(fs.lstatSync(path.join(lane, 'link-file')).isSymbolicLink()).toBe(true);
  });

  it('a tree nested deeper than the walk enters is not measured: it counts as over the limit, never as empty', () => {
    const { lanes, lane } = lanesDir();
    const deep = path.join(lane, 'h', ...Array(MAX_DEPTH + 2).fill('d'));
    fs.mkdirSync(deep, { recursive: true });
    file(path.join(deep, 'big'), 2048, 30 * DAY);
    const result = trim(lanes, 1024 * KIB, Date.now());
    expect(result.hidden).toEqual({
      count: 1,
      first: expect.stringMatching(/^"h(\/d)+" nested 400 directories deep$/),
    });
    expect(result.removed).toBe(0);
    expect(describeTrim(result, 1024 * KIB)).toMatch(
      /^not measured: "h(\/d)+" nested 400 directories deep; what runlane cannot see into counts as over warm-max-size 1\.0 MiB, so the lane is not parked$/,
    );
    expect(fs.existsSync(path.join(deep, 'big'))).toBe(true);
  });

  it('a mount on the lane itself is refused whole; a trim out of time stops and says so', () => {
    const { lanes, lane } = lanesDir();
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-trim-outside-'));
    made.push(outside);
    file(path.join(outside, 'precious'), 64, 30 * DAY);
    execFileSync('mount', ['--bind', outside, lane]);
    try {
      expect(() => trim(lanes, 0, Date.now())).toThrow(/mount point/);
    } finally {
      spawnSync('umount', [lane]);
    }
    expect(fs.existsSync(path.join(outside, 'precious'))).toBe(true);
    file(path.join(lane, 'old'), 64, 30 * DAY);
    const dir = Dir.open(lanes);
    try {
      const result = trimLane(dir, 'l', 0, Date.now(), -1);
      expect(result.timedOut).toBe(true);
      expect(result.removed).toBe(0);
      expect(describeTrim(result, 0)).toMatch(/not trimmed: measuring it took longer than/);
    } finally {
      dir.close();
    }
    expect(fs.existsSync(path.join(lane, 'old'))).toBe(true);
  });

  it('warm-max-size: a size, 20G by default, off for none; percentages refused with the value', () => {
    expect(parseWarmMaxSize('warm-max-size', '')).toBe(20 * 1024 ** 3);
    expect(parseWarmMaxSize('warm-max-size', '500M')).toBe(500 * 1024 ** 2);
    expect(parseWarmMaxSize('warm-max-size', 'off')).toBeUndefined();
    expect(() => parseWarmMaxSize('warm-max-size', '10%')).toThrow(/'warm-max-size'.*"10%"/);
    expect(() => parseWarmMaxSize('warm-max-size', '12')).toThrow(/no unit/);
  });
});
