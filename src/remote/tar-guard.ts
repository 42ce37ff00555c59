import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorMessage } from '../core/errors.js';
import { Dir, MAX_DEPTH, nameText, walkTree, type EntryName } from '../core/remove.js';

/**
 * Stands in for `tar` on a transfer's PATH (`dist/remote/bin/tar` runs it; its own small
 * bundle, so it starts in node's time, not the cache library's). Three things keep an
 * extraction inside its directory and the lane clean, none relying on a parse of the archive:
 *
 * - GNU tar runs without `-P`: it strips a leading `/`, refuses a name with `..`, and keeps a
 *   symlink whose target is absolute or climbs a placeholder while it runs, so nothing is
 *   written through it and nothing lands outside the directory. It runs without the
 *   archive's owners and permission bits (no setuid file, no foreign owner) and without
 *   TAR_OPTIONS.
 * - Its decompressor (`runlane-decompress`, beside this shim) cuts the stream at a byte
 *   bound, so no archive fills the disk, whatever its headers say.
 * - After tar, the extracted tree itself is checked (checkTree): what is on disk decides.
 *
 * The archive is decompressed once, by tar's own pipeline. Other uses of tar (listing,
 * creating) pass through.
 */
export async function tarGuard(args: readonly string[]): Promise<number> {
  const real = process.env.RUNLANE_REAL_TAR ?? '';
  const env = { ...process.env };
  delete env.TAR_OPTIONS;
  if (!args.includes('-xf')) return spawnSync(real, args, { stdio: 'inherit', env }).status ?? 2;
  const plan = extractionPlan(args);
  if (typeof plan === 'string') return refuse(plan);
  const version = spawnSync(real, ['--version'], { encoding: 'utf8', env });
  if (!/GNU tar/.test(version.stdout ?? ''))
    return refuse(`${real} is not GNU tar, whose extraction the guard relies on`);
  const maxBytes = Number(process.env.RUNLANE_MAX_BYTES ?? Infinity);
  // Headers, padding and pax records on top of the files' bytes: generous, still a bound.
  const streamCap = Number.isFinite(maxBytes) ? maxBytes * 2 + 256 * 1048576 : Number.MAX_SAFE_INTEGER;
  const marks = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-guard-'));
  const failedMark = path.join(marks, 'decompress-failed');
  const tar = spawn(
    real,
    [
      '-x',
      '-f',
      plan.archive,
      '-C',
      plan.dir,
      `--use-compress-program=runlane-decompress ${plan.program}`,
      '--no-same-owner',
      '--no-same-permissions',
    ],
    {
      stdio: ['ignore', 'inherit', 'pipe'],
      env: { ...env, RUNLANE_STREAM_CAP: String(streamCap), RUNLANE_DECOMPRESS_FAILED: failedMark },
    },
  );
  let tarError = '';
  tar.stderr.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    if (tarError.length < 4096) tarError += chunk.toString();
  });
  // This process stopped alone (not its group): tar goes with it.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const)
    process.once(signal, () => {
      tar.kill('SIGKILL');
      process.exit(2);
    });
  const code = await new Promise<number | null>((resolve) => {
    tar.once('error', () => resolve(null));
    tar.once('close', (status) => resolve(status));
  });
  let failed = '';
  try {
    failed = fs.readFileSync(failedMark, 'utf8').trim();
  } catch {
    // No mark: the decompressor succeeded (or only saw tar stop reading).
  } finally {
    fs.rmSync(marks, { recursive: true, force: true });
  }
  if (failed) return refuse(`it could not be decompressed (${plan.program} exit ${failed})`);
  // What is on disk names the cause best (a symlink that leads out, a device), even when tar
  // failed on it (a file written through such a symlink fails).
  const problem = checkTree(plan.dir, maxBytes);
  if (problem) return refuse(problem);
  if (code !== 0) {
    const first = tarError.trim().split('\n')[0] ?? '';
    return refuse(`tar could not extract it (exit ${code ?? 'by a signal'}${first ? `: ${first}` : ''})`);
  }
  return 0;
}

/**
 * The extracted tree as it is on disk, walked without following anything: only regular files
 * (no setuid or setgid bit), directories and symlinks whose target is relative and never
 * climbs (`..`), adding up to at most `maxBytes`. A parse of the archive that tar read another
 * way cannot get anything past this.
 */
export function checkTree(top: string, maxBytes: number): string | undefined {
  let root: Dir;
  try {
    root = Dir.openHanded(top);
  } catch (error) {
    return `the extracted directory cannot be opened: ${errorMessage(error)}`;
  }
  // A member "." sets the directory's own mode (tar applies it last): set back, so it stays usable.
  try {
    fs.fchmodSync(root.fd, 0o755);
  } catch (error) {
    root.close();
    return `the extracted directory cannot be restored to mode 755: ${errorMessage(error)}`;
  }
  let total = 0;
  const shown = (dir: Dir, name: EntryName) =>
    JSON.stringify(path.join(path.relative(root.path, dir.path), nameText(name)));
  const problemOf = (dir: Dir, name: EntryName, stat: fs.Stats, depth: number): string | undefined => {
    total += stat.size;
    if (total > maxBytes) return `it holds more than ${maxBytes} bytes (remote-max-size)`;
    if (stat.isSymbolicLink()) {
      const target = fs.readlinkSync(dir.at(name)).toString();
      if (target === '' || target.startsWith('/') || target.split('/').includes('..'))
        return `symlink ${shown(dir, name)} points to ${JSON.stringify(target)}`;
      return undefined;
    }
    if (stat.isFile()) return stat.mode & 0o6000 ? `member ${shown(dir, name)} is setuid or setgid` : undefined;
    if (!stat.isDirectory()) return `member ${shown(dir, name)} is ${kindOf(stat)}`;
    // The walk would not enter it (nor could a delete): refused rather than left unchecked.
    return depth >= MAX_DEPTH ? `${shown(dir, name)} is nested too deep` : undefined;
  };
  try {
    walkTree(
      root,
      (dir, name, stat, depth) => {
        const problem = problemOf(dir, name, stat, depth);
        if (problem) throw new Refused(problem);
      },
      {
        strict: true,
        onMount: (dir, name) => {
          throw new Refused(`member ${shown(dir, name)} is a mount point`);
        },
      },
    );
    return undefined;
  } catch (error) {
    if (error instanceof Refused) return error.message;
    return `the extracted tree cannot be checked: ${errorMessage(error)}`;
  } finally {
    root.close();
  }
}

/** What checkTree found wrong, thrown to end the walk. */
class Refused extends Error {}

function refuse(why: string): number {
  process.stderr.write(`runlane: the archive is refused: ${why}\n`);
  try {
    fs.writeFileSync(process.env.RUNLANE_GUARD_REPORT ?? '', `the archive is refused: ${why}\n`);
  } catch {
    // Reported on stderr all the same.
  }
  return 2;
}

interface ExtractionPlan {
  archive: string;
  dir: string;
  /** The decompressor tar runs (through runlane-decompress): `unzstd` or `gzip`. */
  program: string;
}

/**
 * The extraction the cache library asked for (`-xf ARCHIVE -P -C DIR` and `-z` or
 * `--use-compress-program unzstd [--long=N]`); otherwise a message naming what is not
 * understood, so a new library version fails safe (a cold start, a warning).
 */
export function extractionPlan(args: readonly string[]): ExtractionPlan | string {
  let archive: string | undefined;
  let dir = '.';
  let program: string | undefined;
  const extra: string[] = [];
  const unknown = `runlane does not know the tar arguments ${JSON.stringify(args)}`;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-xf') archive = args[++i];
    else if (arg === '-C') dir = args[++i];
    else if (arg === '-P') continue;
    else if (arg === '-z') program = 'gzip';
    else if (arg === '--use-compress-program' && args[i + 1] === 'unzstd') {
      program = 'unzstd';
      i++;
      while (/^--long=\d+$/.test(args[i + 1] ?? '')) extra.push(args[++i]);
    } else return unknown;
  }
  if (!archive || !dir || !program) return unknown;
  dir = path.resolve(dir);
  return { archive, dir, program: [program, ...extra].join(' ') };
}

function kindOf(stat: fs.Stats): string {
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  return 'not a file, directory or symlink';
}
