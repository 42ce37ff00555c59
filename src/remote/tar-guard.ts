import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorMessage } from '../core/common/errors.js';
import { memberProblem } from './select.js';
import { Dir, MAX_DEPTH, nameText, type EntryName } from '../core/delete/dir.js';
import { walkTree } from '../core/delete/walk.js';

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
 * The archive is decompressed once, by tar's own pipeline. An upload's archive is created by
 * createArchive, from what runlane selected (RUNLANE_SAVE_MEMBERS) in the lane post holds
 * open (RUNLANE_SAVE_DIR), never from the cache library's glob. Listing passes through.
 */
export async function tarGuard(args: readonly string[]): Promise<number> {
  const real = process.env.RUNLANE_REAL_TAR ?? '';
  const env = { ...process.env };
  delete env.TAR_OPTIONS;
  if (args.includes('-cf')) return createArchive(real, args, env);
  if (!args.includes('-xf')) return spawnSync(real, args, { stdio: 'inherit', env }).status ?? 2;
  const plan = extractionPlan(args);
  if (typeof plan === 'string') return refuse(plan);
  const notGnu = notGnuTar(real, env, 'extraction');
  if (notGnu) return refuse(notGnu);
  const maxBytes = Number(process.env.RUNLANE_MAX_BYTES ?? Infinity);
  const maxEntries = Number(process.env.RUNLANE_MAX_ENTRIES ?? Infinity);
  const { code, overEntries, failed, tarError } = await extract(real, plan, env, maxBytes, maxEntries);
  if (overEntries) return refuse(`it holds more than ${maxEntries} entries (remote-max-entries)`);
  if (failed) return refuse(`it could not be decompressed (${plan.program} exit ${failed})`);
  // What is on disk names the cause best (a symlink that leads out, a device), even when tar
  // failed on it (a file written through such a symlink fails).
  const problem = checkTree(plan.dir, maxBytes, maxEntries);
  if (problem) return refuse(problem);
  if (code !== 0) {
    const first = tarError.trim().split('\n')[0] ?? '';
    return refuse(`tar could not extract it (exit ${code ?? 'by a signal'}${first ? `: ${first}` : ''})`);
  }
  return 0;
}

/**
 * Runs the real tar on the archive: its decompressor capped at a byte bound, stopped at the
 * first member over `maxEntries`, killed if this process is stopped.
 */
async function extract(
  real: string,
  plan: ExtractionPlan,
  env: NodeJS.ProcessEnv,
  maxBytes: number,
  maxEntries: number,
): Promise<{ code: number | null; overEntries: boolean; failed: string; tarError: string }> {
  // Headers, padding and pax records on top of the files' bytes: generous, still a bound.
  const streamCap = Number.isFinite(maxBytes) ? maxBytes * 2 + 256 * 1048576 : Number.MAX_SAFE_INTEGER;
  const marks = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-guard-'));
  const failedMark = path.join(marks, 'decompress-failed');
  const tar = spawn(real, extractArgs(plan), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, RUNLANE_STREAM_CAP: String(streamCap), RUNLANE_DECOMPRESS_FAILED: failedMark },
  });
  let extracted = 0;
  let overEntries = false;
  tar.stdout.on('data', (chunk: Buffer) => {
    for (let at = chunk.indexOf(10); at >= 0; at = chunk.indexOf(10, at + 1)) extracted++;
    if (extracted > maxEntries && !overEntries) {
      overEntries = true;
      tar.kill('SIGKILL');
    }
  });
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
  return { code, overEntries, failed, tarError };
}

function extractArgs(plan: ExtractionPlan): string[] {
  return [
    '-x',
    '-f',
    plan.archive,
    '-C',
    plan.dir,
    `--use-compress-program=runlane-decompress ${plan.program}`,
    '--no-same-owner',
    '--no-same-permissions',
    // One line per member as it is extracted (names quoted, so one line each): counted,
    // and tar is stopped at the first member over remote-max-entries.
    '--verbose',
  ];
}

/**
 * The extracted tree as it is on disk, walked without following anything: only regular files
 * (no setuid or setgid bit), directories and symlinks whose target is relative and never
 * climbs (`..`), adding up to at most `maxBytes` in at most `maxEntries` entries. A parse of
 * the archive that tar read another way cannot get anything past this.
 */
export function checkTree(top: string, maxBytes: number, maxEntries = Infinity): string | undefined {
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
  let entries = 0;
  const shown = (dir: Dir, name: EntryName) =>
    JSON.stringify(path.join(path.relative(root.path, dir.path), nameText(name)));
  const problemOf = (dir: Dir, name: EntryName, stat: fs.Stats, depth: number): string | undefined => {
    total += stat.size;
    if (total > maxBytes) return `it holds more than ${maxBytes} bytes (remote-max-size)`;
    if (++entries > maxEntries) return `it holds more than ${maxEntries} entries (remote-max-entries)`;
    const problem = memberProblem(dir, name, stat, shown(dir, name));
    if (problem || !stat.isDirectory()) return problem;
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
 * The tar arguments the cache library passes for `op`: the archive (`-xf` or `-cf`), `-C DIR`,
 * `-P`, and `-z` or `--use-compress-program unzstd|zstd|zstdmt [--long=N]`; for a creation
 * also `--posix`, `--exclude ARCHIVE` and `--files-from MANIFEST`. Anything else is a message
 * naming what is not understood, so a new library version fails safe (a cold start, a
 * warning, no upload).
 */
function parseTarArgs(
  args: readonly string[],
  op: 'extract' | 'create',
): { archive: string; dir: string; program: string[] } | string {
  const creating = op === 'create';
  const compressor = creating ? /^zstd(mt)?$/ : /^unzstd$/;
  let archive: string | undefined;
  let dir = '.';
  let program: string[] | undefined;
  const unknown = `runlane does not know the tar arguments ${JSON.stringify(args)}`;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === (creating ? '-cf' : '-xf')) archive = args[++i];
    else if (arg === '-C') dir = args[++i];
    else if (arg === '-P' || (creating && arg === '--posix')) continue;
    else if (creating && (arg === '--exclude' || arg === '--files-from')) i++;
    else if (arg === '-z') program = ['gzip'];
    else if (arg === '--use-compress-program' && compressor.test(args[i + 1] ?? '')) {
      program = [args[++i]];
      while (/^--long=\d+$/.test(args[i + 1] ?? '')) program.push(args[++i]);
    } else return unknown;
  }
  if (!archive || !dir || !program) return unknown;
  return { archive, dir, program };
}

/** The extraction asked for (see parseTarArgs), its directory resolved. */
export function extractionPlan(args: readonly string[]): ExtractionPlan | string {
  const parsed = parseTarArgs(args, 'extract');
  if (typeof parsed === 'string') return parsed;
  return { archive: parsed.archive, dir: path.resolve(parsed.dir), program: parsed.program.join(' ') };
}

/** Refuses unless `real` is GNU tar, whose behaviour (`what`) the guard relies on. */
function notGnuTar(real: string, env: NodeJS.ProcessEnv, what: string): string | undefined {
  const version = spawnSync(real, ['--version'], { encoding: 'utf8', env });
  return /GNU tar/.test(version.stdout ?? '') ? undefined : `${real} is not GNU tar, whose ${what} the guard relies on`;
}

/**
 * Creates an upload's archive from the members runlane selected (selectArchived, in post),
 * reading the lane only through the directory post holds open: each member's parent is
 * opened from it one directory at a time, never following a symlink (a directory swapped for
 * one meanwhile ends the upload), and GNU tar is handed that opened parent (`-C
 * /proc/<pid>/fd/<n>`) and the member's own name, so no path it resolves crosses a directory
 * runlane did not open. Below a member, tar's own walk opens every directory and file
 * relative to its parent with O_NOFOLLOW: a symlink is archived as the symlink it is. The
 * member names the archive holds are the lane-relative ones (`--transform` puts the parent's
 * path back), as the cache library's own archive would hold them. Members under one parent
 * are one tar run; several parents are appended into one uncompressed archive first.
 */
function createArchive(real: string, args: readonly string[], env: NodeJS.ProcessEnv): number {
  const plan = parseTarArgs(args, 'create');
  if (typeof plan === 'string') return refuse(plan);
  const notGnu = notGnuTar(real, env, 'creation');
  if (notGnu) return refuse(notGnu);
  const archive = path.resolve(plan.archive);
  let members: string[];
  try {
    members = JSON.parse(fs.readFileSync(env.RUNLANE_SAVE_MEMBERS ?? '', 'utf8')) as string[];
    if (!Array.isArray(members) || members.length === 0 || !members.every(isMemberName)) throw new Error('bad list');
  } catch (error) {
    return refuse(`runlane's list of what to archive cannot be read: ${errorMessage(error)}`);
  }
  let lane: Dir;
  try {
    lane = Dir.openHanded(env.RUNLANE_SAVE_DIR ?? '');
  } catch (error) {
    return refuse(`the lane cannot be opened: ${errorMessage(error)}`);
  }
  const groups = byParent(members);
  const direct = groups.size === 1;
  const plain = direct ? archive : `${archive}.runlane.tar`;
  const lists = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-create-'));
  try {
    let first = true;
    for (const [parent, names] of groups) {
      const problem = withOpened(lane, parent, (dir) => {
        const list = path.join(lists, 'names');
        fs.writeFileSync(list, names.map((name) => `${name}\0`).join(''));
        const tarArgs = [
          first ? '-c' : '-r',
          '-f',
          plain,
          '--posix',
          '--one-file-system',
          '-C',
          dir.selfForChild(),
          '--null',
          '--verbatim-files-from',
          '--no-unquote',
          '-T',
          list,
        ];
        // Member names relative to the lane: the parent's path before each (not before symlink targets).
        if (parent) tarArgs.push(`--transform=s|^|${parent.replace(/[\\|&]/g, '\\$&')}/|S`);
        if (direct) tarArgs.push(`--use-compress-program=${plan.program.join(' ')}`);
        const out = spawnSync(real, tarArgs, { stdio: ['ignore', 'inherit', 'inherit'], env });
        return out.status === 0 ? undefined : `tar could not archive the lane (exit ${out.status ?? out.signal})`;
      });
      if (problem) return refuse(problem);
      first = false;
    }
    const problem = direct ? undefined : compress(plain, archive, plan.program, env);
    return problem ? refuse(problem) : 0;
  } finally {
    lane.close();
    fs.rmSync(lists, { recursive: true, force: true });
  }
}

/** Members grouped by their parent directory (`''` for the lane's own), in the order given. */
function byParent(members: readonly string[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const member of members) {
    const cut = member.lastIndexOf('/');
    const parent = cut < 0 ? '' : member.slice(0, cut);
    const names = groups.get(parent) ?? [];
    if (names.length === 0) groups.set(parent, names);
    names.push(member.slice(cut + 1));
  }
  return groups;
}

/** Compresses the uncompressed archive `plain` into `archive` with `program`, then removes it; why not, if it failed. */
function compress(plain: string, archive: string, program: string[], env: NodeJS.ProcessEnv): string | undefined {
  const input = fs.openSync(plain, 'r');
  const output = fs.openSync(archive, 'w');
  try {
    const out = spawnSync(program[0], [...program.slice(1), '-c'], { stdio: [input, output, 'inherit'], env });
    return out.status === 0
      ? undefined
      : `${program[0]} could not compress the archive (exit ${out.status ?? out.signal})`;
  } finally {
    fs.closeSync(input);
    fs.closeSync(output);
    fs.rmSync(plain, { force: true });
  }
}

/** A lane-relative member name as selectArchived makes them: `.`, or names without `..` or empty parts. */
function isMemberName(member: unknown): boolean {
  if (typeof member !== 'string' || member.includes('\0')) return false;
  if (member === '.') return true;
  return member.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** Runs `body` with the lane's directory `relative` opened from the lane one name at a time. */
function withOpened(lane: Dir, relative: string, body: (dir: Dir) => string | undefined): string | undefined {
  const opened: Dir[] = [];
  try {
    let dir = lane;
    for (const part of relative ? relative.split('/') : []) {
      try {
        dir = dir.openChild(part);
      } catch (error) {
        return `the lane changed during the upload: ${JSON.stringify(relative)} is no longer a directory in it (${errorMessage(error)})`;
      }
      opened.push(dir);
    }
    return body(dir);
  } finally {
    for (const dir of opened.reverse()) dir.close();
  }
}
