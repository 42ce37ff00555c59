/** The read-only walk of a tree through opened directories, as the delete walks it, and its size. */
import fs from 'node:fs';
import path from 'node:path';
import { errorCode, errorMessage } from '../common/errors.js';
import { Dir, MAX_DEPTH, nameText, type EntryName } from './dir.js';
import { currentMounts, mountsUnder, type Mount } from './mounts.js';

export interface TreeSize {
  bytes: number;
  files: number;
}

/**
 * Disk usage of the entry `name` of `parent` (allocated blocks, as `du` counts), walked like a
 * delete (see walkTree). Read-only; what cannot be read counts as itself.
 */
export function treeSizeIn(parent: Dir, name: EntryName, tick?: (entries: number, bytes: number) => void): TreeSize {
  const total: TreeSize = { bytes: 0, files: 0 };
  const count = (stat: fs.Stats) => {
    total.bytes += stat.blocks * 512;
    tick?.(1, stat.blocks * 512);
    if (!stat.isDirectory()) total.files++;
  };
  const stat = parent.lstat(name);
  if (!stat) return total;
  count(stat);
  if (!stat.isDirectory()) return total;
  let top: Dir;
  try {
    top = parent.openChild(name);
  } catch {
    return total;
  }
  try {
    if (parent.sameMount(top) && top.stat.ino === stat.ino) walkTree(top, (_dir, _name, each) => count(each));
  } catch {
    // An unreadable directory counts as its own size only.
  } finally {
    top.close();
  }
  return total;
}

/** What walkTree does where a plain walk would skip something. */
export interface WalkOptions {
  /**
   * Below the top: a directory that cannot be opened or read, an entry that cannot be looked
   * at, a directory that is not the one its entry showed (a swap) or is met twice: skipped,
   * or with `strict`, the walk stops with an error. The top's own listing always throws.
   */
  strict?: boolean;
  /** A directory on another mount (never entered): told here, then skipped. */
  onMount?: (dir: Dir, name: EntryName) => void;
  /**
   * Without `strict`: what the walk could not see into, told here, then skipped: a directory
   * that cannot be opened or listed (`name` undefined: `dir` itself), an entry that cannot be
   * looked at, a directory at MAX_DEPTH. A measure that must not take these for empty counts them.
   */
  onHidden?: (dir: Dir, name: EntryName | undefined, why: string) => void;
}

/**
 * Walks the tree below the opened directory `top`, depth first, calling `each` for every
 * entry with its lstat (a directory before what it holds; `depth` 0 for the top's own
 * entries): through opened directories (names resolve inside them, as openat would), never
 * following a symlink, never entering another mount, each directory once (one moved by a
 * racing process and met again is skipped), and no directory at depth MAX_DEPTH or more
 * (as the delete walker). `each` returns false to keep the walk out of a directory, and may
 * throw to stop it. Entries gone meanwhile are not reported.
 */
export function walkTree(
  top: Dir,
  each: (dir: Dir, name: EntryName, stat: fs.Stats, depth: number) => boolean | void,
  options: WalkOptions = {},
): void {
  const seen = new Set<number>([top.stat.ino]);
  // The mount points below the top, from the mount table (no file system is asked): their
  // names are never looked at, since an lstat of a FUSE mount's root asks its daemon, which
  // a job may have left never answering. A mount made during the walk is caught by openChild.
  const mountPoints = mountPointsBelow(top);
  const visit = (dir: Dir, depth: number) => {
    let entries: fs.Dirent<string>[] | fs.Dirent<Buffer>[];
    try {
      entries = dir.entries();
    } catch (error) {
      if (options.strict || dir === top) throw error;
      options.onHidden?.(dir, undefined, `cannot be listed (${errorCode(error) ?? errorMessage(error)})`);
      return;
    }
    if (mountPoints.size > 0) {
      let here: string | undefined;
      try {
        here = dir.realPath();
      } catch {
        // Unknown: every entry is looked at as usual.
      }
      const kept: (fs.Dirent<string> | fs.Dirent<Buffer>)[] = [];
      for (const entry of entries) {
        if (here !== undefined && mountPoints.has(path.join(here, nameText(entry.name))))
          options.onMount?.(dir, entry.name);
        else kept.push(entry);
      }
      entries = kept as fs.Dirent<string>[];
    }
    // An entry that cannot be looked at (a directory without search permission): unknown.
    const lstat = (look: () => fs.Stats | undefined, name: EntryName): fs.Stats | undefined => {
      try {
        return look();
      } catch (error) {
        if (options.strict) throw error;
        options.onHidden?.(dir, name, `cannot be looked at (${errorCode(error) ?? errorMessage(error)})`);
        return undefined;
      }
    };
    // A directory's names looked up from inside it at once; one by one where the process
    // cannot change directory (a worker thread, a directory it may not enter).
    const stats =
      dir.within(() =>
        entries.map((entry) => lstat(() => fs.lstatSync(entry.name, { throwIfNoEntry: false }), entry.name)),
      ) ?? entries.map((entry) => lstat(() => dir.lstat(entry.name), entry.name));
    for (let i = 0; i < entries.length; i++) {
      const { name } = entries[i];
      const stat = stats[i];
      if (!stat) continue;
      if (each(dir, name, stat, depth) === false || !stat.isDirectory()) continue;
      if (depth >= MAX_DEPTH) {
        options.onHidden?.(dir, name, `nested ${MAX_DEPTH} directories deep`);
        continue;
      }
      let child: Dir;
      try {
        child = dir.openChild(name);
      } catch (error) {
        // Another mount: refused by its handle, before anything in it was asked.
        const code = errorCode(error);
        if (code === 'EBUSY') options.onMount?.(dir, name);
        else if (options.strict && code !== 'ENOENT') throw error;
        else if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR')
          options.onHidden?.(dir, name, `cannot be opened (${code ?? errorMessage(error)})`);
        continue;
      }
      try {
        // A mount first: a bind mount of a directory already walked is still a mount.
        if (!top.sameMount(child)) {
          options.onMount?.(dir, name);
          continue;
        }
        // The directory opened must be the one measured, and new to this walk.
        if (child.stat.ino !== stat.ino || seen.has(child.stat.ino)) {
          if (options.strict) throw new Error(`${child.path} changed while it was walked`);
          continue;
        }
        seen.add(child.stat.ino);
        visit(child, depth + 1);
      } finally {
        child.close();
      }
    }
  };
  visit(top, 0);
}

/** The mount table, read at most once a second (a status --sizes walks every lane). */
let mountTable: { at: number; mounts: Mount[] } | undefined;

/** The mount points strictly below an opened directory, as this process sees them. */
function mountPointsBelow(top: Dir): Set<string> {
  try {
    if (!mountTable || Date.now() - mountTable.at > 1000) mountTable = { at: Date.now(), mounts: currentMounts() };
    const real = top.realPath();
    return new Set(
      mountsUnder(real, mountTable.mounts)
        .map((mount) => mount.mountPoint)
        .filter((point) => point !== real),
    );
  } catch {
    return new Set();
  }
}
