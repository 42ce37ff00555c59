import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from '@jest/globals';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';
import { MAX_DEPTH } from '../../src/core/delete/dir.js';
import { checkTree, extractionPlan } from '../../src/remote/tar-guard.js';

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
function scratch(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-targuard-'));
  made.push(dir);
  return dir;
}

/**
 * The bundled guard as the cache library runs tar in a restore (`tar -xf ARCHIVE -P -C DIR
 * --use-compress-program unzstd`, the shim's directory first on PATH).
 */
function runGuard(archive: string, into: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(
    process.execPath,
    [
      path.join(ACTION_DIR, 'dist', 'tar-guard', 'index.js'),
      '-xf',
      archive,
      '-P',
      '-C',
      into,
      '--use-compress-program',
      'unzstd',
    ],
    {
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${path.join(ACTION_DIR, 'dist', 'remote', 'bin')}:${process.env.PATH}`,
        RUNLANE_REAL_TAR: '/usr/bin/tar',
        ...env,
      },
    },
  );
}

/**
 * Runs the bundled guard as a restore does (`tar -xf ARCHIVE -P -C DIR --use-compress-program
 * unzstd`, the shim's directory first on PATH) on a zstd archive of `tarBytes`, into a fresh
 * staging directory inside a fresh lane. Returns its status, report and the lane.
 */
function extract(tarBytes: Buffer, maxBytes = 1 << 30) {
  const dir = scratch();
  const archive = path.join(dir, 'a.tzst');
  fs.writeFileSync(archive, execFileSync('zstd', ['-q', '-c'], { input: tarBytes, maxBuffer: 1 << 30 }));
  const lane = path.join(dir, 'lane');
  const staging = path.join(lane, '.runlane-remote');
  fs.mkdirSync(staging, { recursive: true });
  const report = path.join(dir, 'report');
  const run = runGuard(archive, staging, {
    RUNLANE_MAX_BYTES: String(maxBytes),
    RUNLANE_GUARD_REPORT: report,
    TAR_OPTIONS: '-P --same-owner',
  });
  return {
    status: run.status,
    report: fs.existsSync(report) ? fs.readFileSync(report, 'utf8') : '',
    dir,
    staging,
  };
}

/** A tar stream from Python's tarfile: `members` is Python calling add(name, kind, data, **attributes). */
function craft(members: string, format = 'GNU_FORMAT'): Buffer {
  const script = [
    'import io, sys, tarfile',
    `out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.${format})`,
    'def add(name, kind=tarfile.REGTYPE, data=b"", **extra):',
    '    info = tarfile.TarInfo(name); info.type = kind; info.size = len(data) if kind == tarfile.REGTYPE else 0',
    '    for k, v in extra.items(): setattr(info, k, v)',
    '    out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)',
    members,
    'out.close()',
  ].join('\n');
  return execFileSync('python3', ['-c', script], { maxBuffer: 1 << 30 });
}

/** Every path under `dir` that is not a plain file or directory, as `ls -l`'s first letter. */
function oddEntries(dir: string): string[] {
  const out = spawnSync('find', [dir, '!', '-type', 'f', '!', '-type', 'd', '-printf', '%y %P\n'], {
    encoding: 'utf8',
  });
  return out.stdout.split('\n').filter(Boolean);
}

describe('the tar guard, as a restore runs it', () => {
  it('extracts what @actions/cache archives: files, directories, relative links, long names, newlines', () => {
    const dir = scratch();
    const long = `cargo-target/debug/${'deep-name-'.repeat(12)}/${'file-'.repeat(30)}.rlib`;
    fs.mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    fs.writeFileSync(path.join(dir, long), 'x'.repeat(1000));
    fs.writeFileSync(path.join(dir, 'cargo-target/debug/app with space\nand newline'), 'app');
    fs.symlinkSync('deps/lib.so', path.join(dir, 'cargo-target/debug/link'));
    fs.linkSync(path.join(dir, long), path.join(dir, 'cargo-target/debug/hard'));
    const tarBytes = execFileSync('tar', ['-c', '-f', '-', '--posix', '-C', dir, 'cargo-target'], {
      maxBuffer: 1 << 28,
    });
    const result = extract(tarBytes);
    expect(result.report).toBe('');
    expect(result.status).toBe(0);
    expect(fs.readFileSync(path.join(result.staging, long), 'utf8')).toBe('x'.repeat(1000));
    expect(fs.readlinkSync(path.join(result.staging, 'cargo-target/debug/link'))).toBe('deps/lib.so');
    // TAR_OPTIONS from the environment is not honoured: the owner is this process's.
    expect(fs.statSync(path.join(result.staging, long)).uid).toBe(process.getuid?.());
  });

  it('nothing lands outside, and what lands inside is refused: links that lead out, devices, FIFOs, setuid, "."', () => {
    const outside = scratch();
    const cases: [string, RegExp][] = [
      // Written through a symlink the archive made: tar keeps it a placeholder, the write fails.
      [`add("t", tarfile.SYMTYPE, linkname="${outside}")\nadd("t/pwned", data=b"x")`, /symlink "t" points to/],
      [`add("t", tarfile.SYMTYPE, linkname="${outside}")`, /symlink "t" points to/],
      ['add("a", tarfile.SYMTYPE, linkname="..")\nadd("b", tarfile.SYMTYPE, linkname="a/..")', /points to "\.\."/],
      [`add("../../../..${outside}/climbed", data=b"x")`, /tar could not extract it|climb/],
      [`add("${outside}/absolute", data=b"x")`, /./],
      ['add("mem", tarfile.CHRTYPE, devmajor=1, devminor=1)', /member "mem" is a character device/],
      ['add("disk", tarfile.BLKTYPE, devmajor=7, devminor=0)', /member "disk" is a block device/],
      ['add("fifo", tarfile.FIFOTYPE)', /member "fifo" is a FIFO/],
      ['add("h", tarfile.LNKTYPE, linkname="/etc/hostname")', /tar could not extract it/],
    ];
    for (const [members, why] of cases) {
      const result = extract(craft(members));
      expect(fs.readdirSync(outside)).toEqual([]);
      if (members.includes('/absolute')) {
        // A leading / is stripped: the file lands inside, under its full path, and is no danger.
        expect(result.status).toBe(0);
        expect(fs.existsSync(path.join(result.staging, outside, 'absolute'))).toBe(true);
        continue;
      }
      expect(result.status).toBe(2);
      expect(result.report).toMatch(why);
    }
    // A setuid file comes out without the bit (tar runs without the archive's permissions).
    const suid = extract(craft('add("suid", data=b"#!/bin/sh", mode=0o4755)'));
    expect(suid.status).toBe(0);
    expect(fs.statSync(path.join(suid.staging, 'suid')).mode & 0o6000).toBe(0);
    // A member "." cannot take away the staging directory: its mode stays usable.
    const dot = extract(craft('add(".", tarfile.DIRTYPE, mode=0)\nadd("f", data=b"x")'));
    expect(dot.status).toBe(0);
    expect(fs.statSync(dot.staging).mode & 0o777).toBe(0o755);
  });

  it('pax tricks that fool a parser change nothing: what is on disk decides', () => {
    const outside = scratch();
    // Records with blanks after the length, a NUL that cuts a value: tar reads them its own way.
    const members = [
      `add("t/root", tarfile.SYMTYPE, linkname="ok", pax_headers={"linkpath": "/"})`,
      `add("t/up", tarfile.SYMTYPE, linkname="ok", pax_headers={"linkpath": "..\\x00"})`,
    ].join('\n');
    const result = extract(craft(members, 'PAX_FORMAT'));
    expect(result.status).toBe(2);
    expect(result.report).toMatch(/symlink "t\/(root|up)" points to/);
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(oddEntries(outside)).toEqual([]);
  });

  it('a bomb is cut at the stream bound and refused; a corrupt or cut-off archive is refused', () => {
    const bomb = extract(craft('add("zeros", data=bytes(8 << 20))'), 1 << 20);
    expect(bomb.status).toBe(2);
    expect(bomb.report).toMatch(/more than 1048576 bytes/);
    // Past the stream bound (twice the limit and 256 MiB) tar gets nothing more: the disk holds at most that.
    const big = extract(craft('add("zeros", data=bytes(300 << 20))'), 1 << 20);
    expect(big.status).toBe(2);
    const written = Number(spawnSync('du', ['-s', '-B1', big.staging], { encoding: 'utf8' }).stdout.split('\t')[0]);
    // The bound on the stream, and the staging directory's own block.
    expect(written).toBeLessThanOrEqual(2 * (1 << 20) + 256 * 1048576 + 4096);
    expect(written).toBeGreaterThan(0);
    const tarBytes = craft('add("a", data=b"x" * 5000)\nadd("b", data=b"y" * 5000)');
    const cut = extract(tarBytes.subarray(0, 3000));
    expect(cut.status).toBe(2);
    expect(cut.report).toMatch(/tar could not extract it/);
    const dir = scratch();
    const garbage = path.join(dir, 'garbage.tzst');
    fs.writeFileSync(garbage, 'not zstd at all');
    const run = runGuard(garbage, dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/the archive is refused: it could not be decompressed \(unzstd exit 1\)/);
  });

  it('only the arguments @actions/cache uses are understood; anything else is refused, naming them', () => {
    expect(extractionPlan(['-xf', '/a.tzst', '-P', '-C', '/d', '--use-compress-program', 'unzstd'])).toEqual({
      archive: '/a.tzst',
      dir: '/d',
      program: 'unzstd',
    });
    expect(extractionPlan(['-xf', '/a.tgz', '-P', '-C', '/d', '-z'])).toMatchObject({ program: 'gzip' });
    expect(extractionPlan(['-xf', '/a', '-C', '/d', '--use-compress-program', 'sh -c evil'])).toMatch(
      /does not know the tar arguments/,
    );
    expect(extractionPlan(['-xf', '/a', '-C', '/d', '--to-command=sh', '-z'])).toMatch(/does not know/);
  });

  it('the extracted tree itself: size, links that lead out, devices, setuid, as the final say', () => {
    const tree = (build: (dir: string) => void) => {
      const dir = scratch();
      fs.mkdirSync(path.join(dir, 'target/debug'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'target/debug/app'), 'x'.repeat(100));
      fs.symlinkSync('app', path.join(dir, 'target/debug/current'));
      build(dir);
      return dir;
    };
    expect(
      checkTree(
        tree(() => undefined),
        1 << 20,
      ),
    ).toBeUndefined();
    expect(
      checkTree(
        tree(() => undefined),
        50,
      ),
    ).toMatch(/more than 50 bytes/);
    expect(
      checkTree(
        tree((d) => fs.symlinkSync('/', path.join(d, 'target/root'))),
        1 << 20,
      ),
    ).toMatch(/symlink "target\/root" points to "\/"/);
    expect(
      checkTree(
        tree((d) => fs.symlinkSync('a/../..', path.join(d, 'target/up'))),
        1 << 20,
      ),
    ).toMatch(/points to/);
    expect(
      checkTree(
        tree((d) => execFileSync('mkfifo', [path.join(d, 'target/p')])),
        1 << 20,
      ),
    ).toMatch(/member "target\/p" is a FIFO/);
    const suid = tree((d) => {
      fs.writeFileSync(path.join(d, 'target/suid'), '');
      fs.chmodSync(path.join(d, 'target/suid'), 0o4755);
    });
    expect(checkTree(suid, 1 << 20)).toMatch(/setuid/);
    // Nothing is left unchecked: a directory the walk would not enter is refused.
    const deep = tree((d) =>
      fs.mkdirSync(path.join(d, 'target', ...Array(MAX_DEPTH + 1).fill('a')), { recursive: true }),
    );
    expect(checkTree(deep, 1 << 30)).toMatch(/"target(\/a)+" is nested too deep/);
    const mounted = tree((d) => fs.mkdirSync(path.join(d, 'target/m')));
    const elsewhere = scratch();
    fs.writeFileSync(path.join(elsewhere, 'file'), 'x');
    expect(spawnSync('mount', ['--bind', elsewhere, path.join(mounted, 'target/m')]).status).toBe(0);
    try {
      expect(checkTree(mounted, 1 << 20)).toMatch(/member "target\/m" is a mount point/);
    } finally {
      expect(spawnSync('umount', [path.join(mounted, 'target/m')]).status).toBe(0);
    }
    // A bind mount of a directory the walk has already been through is a mount all the same.
    const again = tree((d) => fs.mkdirSync(path.join(d, 'target/debug/loop')));
    const loop = path.join(again, 'target/debug/loop');
    expect(spawnSync('mount', ['--bind', path.join(again, 'target'), loop]).status).toBe(0);
    try {
      expect(checkTree(again, 1 << 20)).toMatch(/member "target\/debug\/loop" is a mount point/);
    } finally {
      expect(spawnSync('umount', [loop]).status).toBe(0);
    }
  });
});
