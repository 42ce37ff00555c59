import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from '@jest/globals';
import { TarChecker } from '../../src/remote/tar-check.js';

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
function scratch(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-tarcheck-'));
  made.push(dir);
  return dir;
}

/** An archive GNU tar makes of `names` in `dir` (extra options first, e.g. --format, -P). */
function archive(dir: string, names: string[], options: string[] = []): Buffer {
  return execFileSync('tar', ['-c', '-f', '-', '-C', dir, ...options, ...names], { maxBuffer: 1 << 28 });
}

/**
 * Feeds `data` through a checker in chunks of odd sizes (headers split across them), as a
 * pipe delivers it. Returns what passed on to tar, and the refusal if there was one.
 */
function check(data: Buffer, maxBytes?: number): { passed: Buffer; refusal?: string; complete: boolean } {
  const checker = new TarChecker(maxBytes);
  const passed: Buffer[] = [];
  const sizes = [1, 7, 511, 512, 513, 4096, 65536];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const chunk = data.subarray(at, at + sizes[i % sizes.length]);
    at += chunk.length;
    try {
      passed.push(checker.push(chunk));
    } catch (error) {
      return { passed: Buffer.concat(passed), refusal: (error as Error).message, complete: false };
    }
  }
  return { passed: Buffer.concat(passed), complete: checker.complete };
}

describe('the tar check between the decompressor and tar', () => {
  it('passes what @actions/cache archives: files, directories, relative links, long names in pax and GNU form', () => {
    const dir = scratch();
    const long = `cargo-target/debug/${'deep-name-'.repeat(12)}/${'file-'.repeat(30)}.rlib`;
    fs.mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    fs.writeFileSync(path.join(dir, long), 'x'.repeat(1000));
    fs.writeFileSync(path.join(dir, 'cargo-target/debug/app with space\nand newline'), 'app');
    fs.symlinkSync('deps/lib.so', path.join(dir, 'cargo-target/debug/link'));
    fs.symlinkSync(`${'t'.repeat(150)}`, path.join(dir, 'cargo-target/long-target-link'));
    fs.linkSync(path.join(dir, long), path.join(dir, 'cargo-target/debug/hard'));
    for (const format of ['--format=posix', '--format=gnu']) {
      const data = archive(dir, ['cargo-target'], [format]);
      const result = check(data);
      expect(result.refusal).toBeUndefined();
      expect(result.complete).toBe(true);
      // Everything up to the end marker passes, unchanged: tar extracts exactly the archive.
      expect(data.subarray(0, result.passed.length).equals(result.passed)).toBe(true);
      const listed = spawnSync('tar', ['-t', '-f', '-'], { input: result.passed, encoding: 'utf8' });
      expect(listed.stdout).toContain(long);
    }
    // ustar splits a long name into prefix and name: both are read.
    const split = `ustar/${'p'.repeat(80)}/${'f'.repeat(60)}`;
    fs.mkdirSync(path.join(dir, path.dirname(split)), { recursive: true });
    fs.writeFileSync(path.join(dir, split), 'u');
    expect(check(archive(dir, [split], ['--format=ustar'])).refusal).toBeUndefined();
    const outside = scratch();
    const absolute = path.join(outside, 'q'.repeat(80), 'f'.repeat(60));
    fs.mkdirSync(path.dirname(absolute));
    fs.writeFileSync(absolute, 'u');
    expect(check(archive(dir, [absolute], ['--format=ustar', '-P'])).refusal).toMatch(/absolute or climbs out/);
  });

  it('refuses absolute names, climbing names and links that lead out, before tar sees them', () => {
    const dir = scratch();
    fs.mkdirSync(path.join(dir, 'a/b'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a/ok'), 'ok');
    fs.writeFileSync(path.join(dir, 'x'), 'secret');
    fs.symlinkSync('/etc', path.join(dir, 'a/abs-link'));
    fs.symlinkSync('../../..', path.join(dir, 'a/climb-link'));
    fs.linkSync(path.join(dir, 'x'), path.join(dir, 'a/b/hard'));
    const cases: [Buffer, RegExp][] = [
      [archive(dir, ['a/ok', path.join(dir, 'x')], ['-P']), /member ".*\/x" is absolute or climbs out/],
      [archive(path.join(dir, 'a/b'), ['../ok'], ['-P']), /member "\.\.\/ok" is absolute or climbs out/],
      [archive(dir, ['a/ok', 'a/abs-link']), /symlink "a\/abs-link" points to "\/etc"/],
      [archive(dir, ['a/climb-link']), /symlink "a\/climb-link" points to "\.\.\/\.\.\/\.\."/],
      [archive(dir, ['x', path.join(dir, 'a/b/hard')], ['-P']), /is absolute or climbs out|hard link/],
    ];
    for (const [data, refusal] of cases) {
      const result = check(data);
      expect(result.refusal).toMatch(refusal);
      // The bad member's header never passed on.
      expect(result.passed.includes(Buffer.from('abs-link'))).toBe(false);
      expect(result.passed.includes(Buffer.from('climb-link'))).toBe(false);
    }
    // A long absolute name, in pax and in GNU form.
    const deep = path.join(dir, 'a', 'n'.repeat(120));
    fs.writeFileSync(deep, 'deep');
    for (const format of ['--format=posix', '--format=gnu'])
      expect(check(archive(dir, [deep], ['-P', format])).refusal).toMatch(/is absolute or climbs out/);
  });

  it('refuses devices, FIFOs and sparse files; a bomb past maxBytes; a cut-off or corrupt stream', () => {
    const dir = scratch();
    execFileSync('mknod', [path.join(dir, 'null'), 'c', '1', '3']);
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    expect(check(archive(dir, ['null'])).refusal).toMatch(/"null" is a character device/);
    expect(check(archive(dir, ['fifo'])).refusal).toMatch(/"fifo" is a FIFO/);
    const sparse = path.join(dir, 'sparse');
    fs.writeFileSync(sparse, '');
    fs.truncateSync(sparse, 1 << 20);
    fs.appendFileSync(sparse, 'end');
    expect(check(archive(dir, ['sparse'], ['-S', '--format=posix'])).refusal).toMatch(/sparse/);
    expect(check(archive(dir, ['sparse'], ['-S', '--format=gnu'])).refusal).toMatch(/sparse/);
    fs.writeFileSync(path.join(dir, 'a'), Buffer.alloc(6000));
    fs.writeFileSync(path.join(dir, 'b'), Buffer.alloc(6000));
    const two = archive(dir, ['a', 'b']);
    expect(check(two, 11_999).refusal).toMatch(/more than 11999 bytes/);
    expect(check(two, 12_000).refusal).toBeUndefined();
    // Cut off: never complete. A flipped header byte: a wrong checksum.
    expect(check(two.subarray(0, 7000)).complete).toBe(false);
    const corrupt = Buffer.from(two);
    corrupt[10] ^= 0x20;
    expect(check(corrupt).refusal).toMatch(/checksum/);
    // A size field that is not a number.
    const badSize = Buffer.from(two);
    badSize.write('9999999999x', 124, 'latin1');
    expect(check(badSize).refusal).toMatch(/checksum|size/);
    // Data after a lone zero block is refused (tar would stop there, or go on with -i).
    const lone = Buffer.concat([two.subarray(0, 512 * 13), Buffer.alloc(512), two.subarray(512 * 13)]);
    expect(check(lone).refusal).toMatch(/lone zero block/);
    // Nothing after the end marker passes on.
    const trailing = Buffer.concat([two, archive(dir, ['fifo'])]);
    const result = check(trailing);
    expect(result.refusal).toBeUndefined();
    expect(result.passed.length).toBeLessThanOrEqual(two.length);
    expect(result.passed.includes(Buffer.from('fifo'))).toBe(false);
  });
});
