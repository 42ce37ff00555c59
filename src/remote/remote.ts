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
  /** Why nothing was transferred (a miss, an entry that exists, the service's error). */
  note?: string;
}

export async function remoteMain(argv: readonly string[]): Promise<void> {
  if (argv[0] === 'tar-guard') {
    process.exit(tarGuard(argv.slice(1)));
  }
  const request = JSON.parse(fs.readFileSync(0, 'utf8')) as RemoteRequest;
  // Archives hold paths relative to the lane, so an entry restores into any lane on any host.
  process.chdir(request.dir);
  process.env.GITHUB_WORKSPACE = request.dir;
  const answer = request.op === 'restore' ? await restore(request) : await save(request);
  fs.writeSync(3, `${JSON.stringify(answer)}\n`);
}

async function restore(request: RemoteRequest): Promise<RemoteAnswer> {
  const key = await cache.restoreCache([...request.paths], request.key, request.restoreKeys);
  return key ? { key } : { key: '', note: 'no entry for this job' };
}

async function save(request: RemoteRequest): Promise<RemoteAnswer> {
  // An entry under the exact key is immutable: found, it is not uploaded again.
  const existing = await cache.restoreCache([...request.paths], request.key, [], { lookupOnly: true });
  if (existing === request.key) return { key: '', note: 'an entry with this exact key exists already' };
  const id = await cache.saveCache([...request.paths], request.key);
  return id === -1 ? { key: '', note: 'the cache service did not take it (see above)' } : { key: request.key };
}

/**
 * Stands in for `tar` on the transfer's PATH. An extraction first lists the archive and
 * refuses any member that could land outside the directory: an absolute name, a `..`
 * component, or a link whose target is absolute or climbs. GNU tar with `-P` (as the cache
 * library runs it) writes through a symlink the archive itself made, so an entry another job
 * uploaded could otherwise write anywhere the runner user may. Everything else passes through.
 */
function tarGuard(args: string[]): number {
  const real = process.env.RUNLANE_REAL_TAR ?? '';
  const extract = args.indexOf('-xf');
  if (extract >= 0) {
    const listing = args.map((arg) => (arg === '-xf' ? '-tvf' : arg));
    const at = listing.indexOf('-C');
    if (at >= 0) listing.splice(at, 2);
    const listed = spawnSync(real, [...listing, '--quoting-style=c'], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (listed.status !== 0) {
      process.stderr.write(`runlane: the archive could not be listed (tar exit ${listed.status})\n`);
      return 2;
    }
    const bad = unsafeMember(listed.stdout);
    if (bad) {
      process.stderr.write(`runlane: the archive is refused: ${bad}\n`);
      return 2;
    }
  }
  const run = spawnSync(real, args, { stdio: 'inherit' });
  return run.status ?? 2;
}

/** The first member of a `tar -tv --quoting-style=c` listing that could escape, described; undefined if none. */
export function unsafeMember(listing: string): string | undefined {
  for (const line of listing.split('\n')) {
    if (line.trim() === '') continue;
    const quoted = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((match) => unescapeC(match[1]));
    if (quoted.length === 0) return `a member listed without a quoted name: ${JSON.stringify(line)}`;
    const [name, target] = quoted;
    if (escapes(name)) return `member ${JSON.stringify(name)} is absolute or climbs out`;
    if (target !== undefined) {
      const link = line.startsWith('l') ? 'symlink' : 'hard link';
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
