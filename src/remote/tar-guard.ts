import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { TarChecker, TarRefusal } from './tar-check.js';

/**
 * Stands in for `tar` on a transfer's PATH (`dist/remote/bin/tar` runs it; its own small
 * bundle, so it starts in node's time, not the cache library's). An extraction runs GNU tar
 * straight from the archive, as the cache library would, but without `-P`: GNU tar then strips
 * a leading `/`, refuses a name with `..`, and makes a symlink whose target is absolute or
 * climbs a placeholder until the end, so nothing it writes while it runs lands outside the
 * directory (a file through such a symlink fails). It runs without the archive's owners and
 * permission bits (no setuid file, no foreign owner) and without any TAR_OPTIONS. Meanwhile a
 * second decompression of the same archive feeds a TarChecker (tar-check.ts), which reads every
 * header: at the first member that is not a plain file, directory or link, whose name or link
 * target is absolute or climbs, or past remote-max-size (RUNLANE_MAX_BYTES), tar is killed and
 * the archive refused; the caller then drops the staging directory whole. Both decompress at
 * once on two cores, so checking costs next to nothing. Other uses (listing, creating) pass
 * through to the real tar.
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
  const tar = spawn(
    real,
    ['-x', '-f', plan.archive, '-C', plan.dir, ...plan.tarArgs, '--no-same-owner', '--no-same-permissions'],
    { stdio: ['ignore', 'inherit', 'inherit'], env },
  );
  const source = spawn(plan.program, plan.programArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const checker = new TarChecker(Number(process.env.RUNLANE_MAX_BYTES ?? Infinity));
  let refusal: string | undefined;
  let sourceError = '';
  source.stderr.on('data', (chunk: Buffer) => {
    if (sourceError.length < 4096) sourceError += chunk.toString();
  });
  source.stdout.on('data', (chunk: Buffer) => {
    if (refusal) return;
    try {
      checker.push(chunk);
    } catch (error) {
      refusal = error instanceof TarRefusal ? error.message : String(error);
      tar.kill('SIGKILL');
      source.kill('SIGKILL');
    }
  });
  const [sourceCode, tarCode] = await Promise.all([exited(source), exited(tar)]);
  if (refusal) return refuse(refusal);
  if (sourceCode !== 0)
    return refuse(`it could not be decompressed (${plan.program} exit ${sourceCode}): ${sourceError.trim()}`);
  if (!checker.complete) return refuse('it is cut off (no end-of-archive marker)');
  return tarCode ?? 2;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (code) => resolve(code));
  });
}

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
  /** How tar decompresses (`-z`, `--use-compress-program=unzstd`). */
  tarArgs: string[];
  /** The same decompression, to stdout, for the checker. */
  program: string;
  programArgs: string[];
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
  if (program === 'gzip') return { archive, dir, tarArgs: ['-z'], program, programArgs: ['-d', '-c', '--', archive] };
  return {
    archive,
    dir,
    tarArgs: [`--use-compress-program=${['unzstd', ...extra].join(' ')}`],
    program,
    programArgs: ['-c', ...extra, '--', archive],
  };
}
