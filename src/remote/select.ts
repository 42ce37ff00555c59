import fs from 'node:fs';
import path from 'node:path';
import { minimatch } from 'minimatch';
import { Dir, nameText, type EntryName } from '../core/delete/dir.js';
import { walkTree } from '../core/delete/walk.js';

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
  /** Directories the walk could not see into (unreadable, nested MAX_DEPTH deep): their size is unknown. */
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

/**
 * One walk of the lane (walkTree: through opened directories, never following a symlink,
 * never entering another mount): a directory is entered only on the way to a match or inside
 * one, and every entry inside a match is counted. What the walk cannot see into (a directory
 * it cannot open or list, one nested MAX_DEPTH deep) is hidden, never taken for empty.
 */
export function selectArchived(lane: Dir, paths: readonly string[]): Selection {
  const includes = paths.filter((entry) => !entry.startsWith('!')).map(normalise);
  const excludes = paths.filter((entry) => entry.startsWith('!')).map((entry) => normalise(entry.slice(1)));
  const selection: Selection = { members: [], bytes: 0, hidden: 0 };
  const whole = includes.includes('');
  if (whole) selection.members.push('.');
  const matches = (relative: string, partial = false) =>
    includes.some((pattern) => minimatch(relative, pattern, { ...OPTIONS, partial }));
  const excluded = (relative: string) => excludes.some((pattern) => minimatch(relative, pattern, OPTIONS));
  // The member being walked (`its/path/`): the walk is depth first, a directory's entries
  // right after it, so what follows it with this prefix lies inside it.
  let inside = whole ? '' : undefined;
  const take = (dir: Dir, name: EntryName, stat: fs.Stats, relative: string) => {
    if (stat.isFile()) selection.bytes += stat.size;
    selection.problem ??= memberProblem(dir, name, stat, JSON.stringify(relative));
  };
  walkTree(
    lane,
    (dir, name, stat) => {
      const relative = path.relative(lane.path, path.join(dir.path, nameText(name)));
      if (inside !== undefined && relative.startsWith(inside)) return take(dir, name, stat, relative);
      inside = undefined;
      // A name that is not valid UTF-8 cannot be named to tar as a member (inside one it is archived).
      if (typeof name !== 'string') return false;
      if (matches(relative)) {
        if (excluded(relative)) return false;
        selection.members.push(relative);
        take(dir, name, stat, relative);
        inside = `${relative}/`;
        return undefined;
      }
      return stat.isDirectory() && matches(relative, true) ? undefined : false;
    },
    { onHidden: () => selection.hidden++ },
  );
  return selection;
}
