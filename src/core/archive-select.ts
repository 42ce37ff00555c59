import fs from 'node:fs';
import path from 'node:path';
import { minimatch } from 'minimatch';
import { Dir, MAX_DEPTH, nameText, walkTree, type EntryName } from './remove.js';

/**
 * What an upload archives of a lane, decided by runlane through the lane's opened directory
 * (never by path, never following a symlink), not by the cache library's glob, which follows
 * symlinks: a `cargo-target/debug` that is a symlink to a directory outside the root is
 * archived as the symlink it is, and nothing behind it is read or counted.
 *
 * The selection means what `@actions/cache` makes of the same paths: each included pattern's
 * matches are taken whole (a matched directory with all it holds), and a match that an
 * excluded (`!`) pattern also matches is dropped. Directories are entered only on the way to
 * a match. The bytes are what tar reads: the size of every regular file of every member.
 */
export interface Selection {
  /** Lane-relative paths of the matches, in walk order; `.` for the whole lane. */
  members: string[];
  /** The bytes tar reads for them: regular files' sizes. */
  bytes: number;
  /** Names that could not be taken (not valid UTF-8, unreadable directories on the way). */
  skipped: number;
  /** What the count could not see into (unreadable, nested MAX_DEPTH deep): tar would read or fail on it uncounted. */
  hidden: number;
  /** The first member that a restore would refuse (see memberProblem): such an entry is not uploaded. */
  problem?: string;
}

/**
 * What a restore refuses in an archive's tree (the tar guard's checkTree) and an upload
 * therefore never sends: a symlink whose target is absolute or climbs (`..`), a setuid or
 * setgid file, anything but a regular file, a directory or a symlink. `shown` names it.
 */
export function memberProblem(dir: Dir, name: EntryName, stat: fs.Stats, shown: string): string | undefined {
  if (stat.isSymbolicLink()) {
    const target = fs.readlinkSync(dir.at(name)).toString();
    if (target === '' || target.startsWith('/') || target.split('/').includes('..'))
      return `symlink ${shown} points to ${JSON.stringify(target)}`;
    return undefined;
  }
  if (stat.isFile()) return stat.mode & 0o6000 ? `member ${shown} is setuid or setgid` : undefined;
  return stat.isDirectory() ? undefined : `member ${shown} is ${kindOf(stat)}`;
}

function kindOf(stat: fs.Stats): string {
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  return 'not a file, directory or symlink';
}

const OPTIONS = { dot: true } as const;

function normalise(pattern: string): string {
  return pattern
    .split('/')
    .filter((part) => part !== '' && part !== '.')
    .join('/');
}

export function selectArchived(lane: Dir, paths: readonly string[]): Selection {
  const includes = paths.filter((entry) => !entry.startsWith('!')).map(normalise);
  const excludes = paths.filter((entry) => entry.startsWith('!')).map((entry) => normalise(entry.slice(1)));
  const selection: Selection = { members: [], bytes: 0, skipped: 0, hidden: 0 };
  if (includes.includes('')) {
    selection.members.push('.');
    countInto(selection, lane, '');
    return selection;
  }
  const matches = (relative: string, partial = false) =>
    includes.some((pattern) => minimatch(relative, pattern, { ...OPTIONS, partial }));
  const excluded = (relative: string) => excludes.some((pattern) => minimatch(relative, pattern, OPTIONS));
  const visit = (dir: Dir, prefix: string, depth: number) => {
    let names: string[];
    try {
      names = dir.names();
    } catch {
      selection.skipped++;
      return;
    }
    for (const name of names.sort()) {
      if (name.includes('\uFFFD')) {
        selection.skipped++;
        continue;
      }
      const relative = prefix ? `${prefix}/${name}` : name;
      let stat: fs.Stats | undefined;
      try {
        stat = dir.lstat(name);
      } catch {
        selection.skipped++;
        continue;
      }
      if (!stat) continue;
      if (matches(relative)) {
        if (excluded(relative)) continue;
        selection.members.push(relative);
        selection.problem ??= memberProblem(dir, name, stat, JSON.stringify(relative));
        if (stat.isDirectory()) countBelow(selection, dir, name, relative);
        else if (stat.isFile()) selection.bytes += stat.size;
        continue;
      }
      if (!stat.isDirectory() || depth >= MAX_DEPTH || !matches(relative, true)) continue;
      let child: Dir;
      try {
        child = dir.openChild(name);
      } catch {
        // A symlink swapped in, another mount: nothing of it is archived.
        selection.skipped++;
        continue;
      }
      try {
        visit(child, relative, depth + 1);
      } finally {
        child.close();
      }
    }
  };
  visit(lane, '', 0);
  return selection;
}

function countBelow(selection: Selection, parent: Dir, name: string, relative: string): void {
  let top: Dir;
  try {
    top = parent.openChild(name);
  } catch {
    return;
  }
  try {
    countInto(selection, top, relative);
  } finally {
    top.close();
  }
}

/**
 * Adds what tar reads below an opened directory: its regular files' sizes (symlinks are not
 * followed, other mounts not entered: tar runs with --one-file-system); a directory too deep
 * for the walk is counted as hidden, never as empty; the first entry a restore would refuse
 * is the selection's problem.
 */
function countInto(selection: Selection, top: Dir, relative: string): void {
  try {
    walkTree(
      top,
      (dir, name, stat) => {
        if (stat.isFile()) selection.bytes += stat.size;
        if (!selection.problem) {
          const inner = path.relative(top.path, path.join(dir.path, nameText(name)));
          selection.problem = memberProblem(dir, name, stat, JSON.stringify(path.join(relative, inner)));
        }
      },
      { onHidden: () => selection.hidden++ },
    );
  } catch {
    // The top cannot be listed: tar cannot read it either (and fails the upload).
  }
}
