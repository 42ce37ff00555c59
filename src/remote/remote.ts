import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import * as cache from '@actions/cache';

/**
 * The remote tier's transfers, run in a child process of main or post (`dist/remote`), so that
 * `@actions/cache` and its HTTP stack load only when a transfer happens, and a hung service or
 * tar is bounded by killing one process group. The request comes as JSON on stdin; the answer
 * goes as one JSON line to fd 3, apart from the log (stdout), where `@actions/cache` writes its
 * own notices and masks.
 */
export interface RemoteRequest {
  op: 'restore' | 'save';
  /** The directory the archive's paths are relative to (a staging directory, or the lane). */
  dir: string;
  paths: string[];
  key: string;
  restoreKeys: string[];
}

export interface RemoteAnswer {
  /** restore: the key of the entry restored; save: the key saved. Empty when nothing was. */
  key: string;
  /** Why nothing was transferred when that is no failure (a miss, an entry that exists). */
  note?: string;
  /** What failed (an entry that could not be restored, an upload the service refused). */
  error?: string;
}

export async function remoteMain(argv: readonly string[]): Promise<void> {
  if (argv[0] === 'tar-guard') {
    process.exit(tarGuard(argv.slice(1)));
  }
  watchOwnEnd();
  const request = JSON.parse(fs.readFileSync(0, 'utf8')) as RemoteRequest;
  // Archives hold paths relative to the lane, so an entry restores into any lane on any host.
  process.chdir(request.dir);
  process.env.GITHUB_WORKSPACE = request.dir;
  const answer = request.op === 'restore' ? await restore(request) : await save(request);
  fs.writeSync(3, `${JSON.stringify(answer)}\n`);
}

/**
 * The transfer ends with the step that started it: past its own deadline, or as soon as its
 * parent is gone (main killed or cancelled), it kills its whole process group (tar, zstd), so
 * nothing writes into a lane that post has since removed.
 */
function watchOwnEnd(): void {
  // The parent's pid as main gave it: read here, it could already be the reaper's if main
  // died while this bundle was loading.
  const parent = Number(process.env.RUNLANE_PARENT_PID ?? process.ppid);
  const deadline = Date.now() + Number(process.env.RUNLANE_TRANSFER_MS ?? 600_000);
  const end = () => {
    try {
      process.kill(0, 'SIGKILL');
    } finally {
      process.exit(9);
    }
  };
  const check = () => {
    if (process.ppid !== parent || Date.now() >= deadline) end();
  };
  check();
  setInterval(check, 500).unref();
}

async function restore(request: RemoteRequest): Promise<RemoteAnswer> {
  // Looked up first, so an entry that exists but cannot be restored (refused by the guard,
  // corrupt, cut off) is reported as the failure it is, not as a miss.
  const found = await cache.restoreCache([...request.paths], request.key, request.restoreKeys, { lookupOnly: true });
  if (!found) return { key: '', note: 'no entry for this job' };
  const key = await cache.restoreCache([...request.paths], request.key, request.restoreKeys);
  if (key) return { key };
  let why = 'see the warning above';
  try {
    why = fs.readFileSync(process.env.RUNLANE_GUARD_REPORT ?? '', 'utf8').trim() || why;
  } catch {
    // The guard said nothing: the download or tar failed another way.
  }
  return { key: '', error: `the entry ${found} could not be restored: ${why}` };
}

async function save(request: RemoteRequest): Promise<RemoteAnswer> {
  // An entry under the exact key is immutable: found, it is not uploaded again.
  const existing = await cache.restoreCache([...request.paths], request.key, [], { lookupOnly: true });
  if (existing === request.key) return { key: '', note: 'an entry with this exact key exists already' };
  const id = await cache.saveCache([...request.paths], request.key);
  return id === -1
    ? { key: '', error: 'the cache service did not take it (see the warning above)' }
    : { key: request.key };
}

/**
 * Stands in for `tar` on the transfer's PATH. An extraction first lists the archive and
 * refuses it unless every member is a plain file, directory, symlink or hard link whose name
 * (and link target) stays inside the directory, and the total fits RUNLANE_MAX_BYTES (no
 * decompression bomb). GNU tar with `-P`, as the cache library runs it, writes through a
 * symlink the archive itself made, so the extraction then runs without `-P` (a leading `/` is
 * stripped, `..` refused), without the archive's owners and permission bits (no setuid file,
 * no foreign owner), and without any TAR_OPTIONS from the environment.
 */
function tarGuard(args: string[]): number {
  const real = process.env.RUNLANE_REAL_TAR ?? '';
  const env = { ...process.env };
  delete env.TAR_OPTIONS;
  const extract = args.indexOf('-xf');
  if (extract < 0) return spawnSync(real, args, { stdio: 'inherit', env }).status ?? 2;
  const refuse = (why: string) => {
    process.stderr.write(`runlane: the archive is refused: ${why}\n`);
    try {
      fs.writeFileSync(process.env.RUNLANE_GUARD_REPORT ?? '', `the archive is refused: ${why}\n`);
    } catch {
      // Reported on stderr all the same.
    }
    return 2;
  };
  const withoutDir = args.filter((arg) => arg !== '-P');
  const at = withoutDir.indexOf('-C');
  const listing = withoutDir.map((arg) => (arg === '-xf' ? '-tvf' : arg));
  if (at >= 0) listing.splice(at, 2);
  const listed = spawnSync(real, [...listing, '--quoting-style=c', '--numeric-owner'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  if (listed.status !== 0) return refuse(`it could not be listed (tar exit ${listed.status}): ${listed.stderr.trim()}`);
  const bad = unsafeMember(listed.stdout, Number(process.env.RUNLANE_MAX_BYTES ?? Infinity));
  if (bad) return refuse(bad);
  const extraction = [...withoutDir, '--no-same-owner', '--no-same-permissions'];
  return spawnSync(real, extraction, { stdio: 'inherit', env }).status ?? 2;
}

/** One line of `tar -tv --quoting-style=c --numeric-owner`: type, mode, uid/gid, size, date, time, name, link. */
const LISTED =
  /^([-dlh])[-rwxsStT]{9} \d+\/\d+ +(\d+) \S+ \S+ "((?:[^"\\]|\\.)*)"(?: (->|link to) "((?:[^"\\]|\\.)*)")?$/;

/**
 * The first reason to refuse a listing, or undefined: a line that is not a plain file,
 * directory, symlink or hard link in the expected form (devices, fifos, anything tar prints
 * differently), a name that is absolute or climbs, a link whose target does, or more than
 * `maxBytes` in all.
 */
export function unsafeMember(listing: string, maxBytes = Infinity): string | undefined {
  let total = 0;
  for (const line of listing.split('\n')) {
    if (line === '') continue;
    const match = LISTED.exec(line);
    if (!match) return `a member that is not a file, directory or link, or not listed as one: ${JSON.stringify(line)}`;
    const [, type, size, rawName, how, rawTarget] = match;
    const name = unescapeC(rawName);
    total += Number(size);
    if (total > maxBytes) return `it holds more than ${maxBytes} bytes (remote-max-size)`;
    if (escapes(name)) return `member ${JSON.stringify(name)} is absolute or climbs out`;
    if (how !== undefined) {
      const target = unescapeC(rawTarget ?? '');
      const link = type === 'l' ? 'symlink' : 'hard link';
      if (escapes(target)) return `${link} ${JSON.stringify(name)} points to ${JSON.stringify(target)}`;
    }
  }
  return undefined;
}

function escapes(name: string): boolean {
  return name.startsWith('/') || name.split('/').includes('..');
}

function unescapeC(text: string): string {
  return text.replace(/\\([0-7]{3}|.)/g, (_, code: string) => {
    if (/^[0-7]{3}$/.test(code)) return String.fromCharCode(parseInt(code, 8));
    return (
      ({ n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', b: '\b', a: '\x07' } as Record<string, string>)[code] ?? code
    );
  });
}
