/**
 * src/core/root: the root on disk: its marker and where it is (root.ts), its directories and
 * each lane's metadata (layout.ts), the states of its lanes, decided by their leases
 * (liveness.ts), recorded sizes (sizes.ts), the journal (journal.ts) and the trash, where
 * lanes go by rename to be deleted later (trash.ts). It may import src/core/common, delete,
 * lease and lane.
 */
import fs from 'node:fs';
import path from 'node:path';
import { prepareAtomic, writeFileAtomic, type PreparedWrite } from '../common/atomic.js';
import { errorCode, errorMessage } from '../common/errors.js';
import { readJsonNoFollow } from '../delete/open-regular.js';
import { Dir, isEntryName } from '../delete/dir.js';
import { treeSizeIn, type TreeSize } from '../delete/walk.js';
import { isSafeSegment } from '../lane/sanitize.js';
import type { RunIdentity } from '../lane/key.js';
import type { LockFile } from '../lease/lock.js';

/** What runlane records about a lane, beside it (never inside the user's directory). */
export interface LaneMeta extends Pick<
  RunIdentity,
  'repository' | 'scope' | 'runId' | 'runAttempt' | 'job' | 'matrix'
> {
  version: 1;
  key: string;
  /** ISO time of creation. */
  created: string;
  host: string;
  cleanup: string;
  /** Pid of the lease holder, for the post phase and for humans; liveness is the lock's. */
  holderPid?: number;
  /** When the lease's last bound falls, for humans only (the holder counts on a monotonic clock). */
  leaseUntil?: string;
  /** Kept on purpose (`cleanup: never`, or `on-success` after a failure): not an orphan. */
  retained?: string;
  /** The warm slot (repository, scope, trust class, workflow, job, matrix leg) whose next run may claim it. */
  slot?: string;
  /** The trust class of the run that made it (see the README's security model). */
  trust?: string;
  /** ISO time it was parked for the next run, when it is. */
  parked?: string;
  /** How long its job ran (main to post): what a warm start can save at most. */
  jobMs?: number;
  /** Where this lane came from, when it was started warm. */
  warmFrom?: string;
  /**
   * Its size when it was kept or parked (measured in the background after post, so post stays
   * O(1)): what `status` and `metrics` show without walking the tree.
   */
  bytes?: number;
  files?: number;
  /** ISO time the size was measured. */
  measured?: string;
}

/** The longest key or slot name: leaves room for suffixes (`.lock`, `.json`, trash stamps) under NAME_MAX. */
export const NAME_MAX = 200;

/** A key or slot as runlane makes them: one safe, bounded path segment. */
export function isLaneName(name: string): boolean {
  return isSafeSegment(name, NAME_MAX);
}

/** The root's directories. */
export const AREAS = ['lanes', 'locks', 'meta', 'trash', 'parked'] as const;
export type Area = (typeof AREAS)[number];

/** A directory of the root's layout that is not what runlane made: refused, never followed. */
export class LayoutError extends Error {
  constructor(
    readonly area: string,
    readonly where: string,
    readonly reason: string,
  ) {
    super(`the root's ${area} directory ${where} is refused: ${reason}; runlane will not follow or use it`);
    this.name = 'LayoutError';
  }
}

/** A name that path.join would leave as it is: one component, not `.` or `..`. */
function oneName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes(path.sep);
}

/**
 * The root's layout. Lanes are flat under `lanes/` so a scan is one readdir; each lane's lock
 * and metadata live in sibling directories, at paths that stay put when the lane is renamed.
 *
 * Every directory is opened without following symlinks and checked on the opened descriptor
 * (a directory on the root's device and mount, owned by the root's owner) before anything is
 * read, written or deleted in it; every operation then goes through that descriptor, so a job
 * that swaps `lanes` or `trash` for a symlink to somewhere else gets a refusal, not a write there.
 * Callers close() it when done.
 */
export class Layout {
  /** Paths for humans and for the job (RUNLANE_DIR); operations use the opened directories. */
  readonly lanes: string;
  readonly locks: string;
  readonly meta: string;
  /** Lanes renamed out of the way, waiting for the background delete or the sweep. */
  readonly trash: string;
  /** Lanes of successful jobs, per warm slot, waiting for the next run to claim them. */
  readonly parked: string;
  private rootDir?: Dir;
  private readonly dirs = new Map<Area, Dir>();

  constructor(readonly root: string) {
    this.lanes = path.join(root, 'lanes');
    this.lanesPrefix = this.lanes + path.sep;
    this.locks = path.join(root, 'locks');
    this.locksPrefix = this.locks + path.sep;
    this.meta = path.join(root, 'meta');
    this.trash = path.join(root, 'trash');
    this.parked = path.join(root, 'parked');
  }

  /** The root itself, opened without following its last component. */
  rootHandle(): Dir {
    this.rootDir ??= Dir.open(this.root);
    return this.rootDir;
  }

  /** One of the root's directories, opened and verified; a LayoutError if it is anything else. */
  dir(area: Area): Dir {
    const cached = this.dirs.get(area);
    if (cached) return cached;
    const root = this.rootHandle();
    const where = path.join(this.root, area);
    let dir: Dir;
    try {
      dir = root.openChild(area, { acrossMounts: true });
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOTDIR' || code === 'ELOOP') {
        const stat = root.lstat(area);
        const what = stat?.isSymbolicLink() ? `a symlink to ${safeReadlink(root.at(area))}` : 'not a directory';
        throw new LayoutError(area, where, `it is ${what}`);
      }
      if (code === 'ENOENT') throw Object.assign(new LayoutError(area, where, 'it does not exist'), { code });
      throw new LayoutError(area, where, errorMessage(error));
    }
    const problem = !root.sameMount(dir)
      ? 'another file system is mounted there'
      : dir.stat.uid !== root.stat.uid
        ? `it belongs to uid ${dir.stat.uid}, not to the root's owner (uid ${root.stat.uid})`
        : undefined;
    if (problem) {
      dir.close();
      throw new LayoutError(area, where, problem);
    }
    this.dirs.set(area, dir);
    return dir;
  }

  /** The directory of `area`, or undefined when it does not exist (yet, or any more). */
  dirIfAny(area: Area): Dir | undefined {
    try {
      return this.dir(area);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** The names in `area`; none when it does not exist. */
  names(area: Area): string[] {
    return this.dirIfAny(area)?.names() ?? [];
  }

  /**
   * Creates what is missing of the layout, then verifies all of it; throws the first problem
   * after trying every directory. A directory made by root (a sweep from a root cron job) is
   * given to the root's owner, so the runner user's next job accepts it.
   */
  ensure(): void {
    const root = this.rootHandle();
    const problems: unknown[] = [];
    for (const area of AREAS) {
      try {
        makeOwnedDir(root, area);
        this.dir(area);
      } catch (error) {
        problems.push(error);
      }
    }
    if (problems.length > 0) throw problems[0];
  }

  lane(key: string): string {
    // One name (every key and directory entry is): the lanes directory's string joined to the
    // key's, shared rather than copied, which is 10 MB less on a sweep of 100,000 lanes.
    return oneName(key) ? this.lanesPrefix + key : path.join(this.lanes, key);
  }

  private readonly lanesPrefix: string;

  parkedLane(slot: string, key: string): string {
    return path.join(this.parked, slot, key);
  }

  /**
   * The slot directory `parked/<slot>`, opened and verified like the layout's own; with
   * `create`, made when missing. Undefined when it does not exist.
   */
  slotDir(slot: string, create = false): Dir | undefined {
    const parked = this.dir('parked');
    if (create) makeOwnedDir(parked, slot);
    let dir: Dir;
    try {
      dir = parked.openChild(slot, { acrossMounts: true });
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw new LayoutError('parked slot', path.join(this.parked, slot), errorMessage(error));
    }
    if (!parked.sameMount(dir) || dir.stat.uid !== parked.stat.uid) {
      dir.close();
      throw new LayoutError('parked slot', path.join(this.parked, slot), 'another mount or owner');
    }
    return dir;
  }

  /**
   * The size of `lanes/<key>`, `trash/<name>` or `parked/<slot>/<key>`, walked through the
   * verified directories (see treeSizeIn); zero when it cannot be reached.
   */
  sizeOf(
    area: 'lanes' | 'trash' | 'parked',
    names: readonly string[],
    tick?: (entries: number, bytes: number) => void,
  ): TreeSize {
    try {
      if (area === 'parked') {
        const [slot, key] = names;
        const dir = this.slotDir(slot);
        try {
          return dir ? treeSizeIn(dir, key, tick) : { bytes: 0, files: 0 };
        } finally {
          dir?.close();
        }
      }
      return treeSizeIn(this.dir(area), names[0], tick);
    } catch {
      return { bytes: 0, files: 0 };
    }
  }

  /** Whether the lane of `key` exists, in lanes/ or parked in its slot. */
  laneExists(key: string): boolean {
    if (this.dirIfAny('lanes')?.exists(key)) return true;
    const slot = this.readMeta(key)?.slot;
    if (slot === undefined) return false;
    const dir = this.slotDir(slot);
    try {
      return dir?.exists(key) ?? false;
    } finally {
      dir?.close();
    }
  }

  lock(key: string): LockFile {
    const name = `${key}.lock`;
    // A scan builds one for every lane: joined by hand where the name is one (path.join costs
    // a tenth of a `status` of 100,000 lanes).
    return {
      at: this.dir('locks').at(name),
      shown: oneName(key) ? this.locksPrefix + name : path.join(this.locks, name),
    };
  }

  private readonly locksPrefix: string;

  /** The lock beside a trash entry, taken by whoever deletes it. */
  trashLock(name: string): LockFile {
    return { at: this.dir('trash').at(`${name}.lock`), shown: path.join(this.trash, `${name}.lock`) };
  }

  metaFile(key: string): string {
    return this.dir('meta').at(`${key}.json`);
  }

  /** A lane's metadata, validated like input (a job can write beside its lane); undefined if none. */
  readMeta(key: string): LaneMeta | undefined {
    return this.readMetaFile(this.metaFile(key), key);
  }

  /** The metadata of `key` in the file `file` (a path, or a name relative to the current directory). */
  readMetaFile(file: string, key: string): LaneMeta | undefined {
    return validMeta(readJsonNoFollow(file), key);
  }

  /** Atomic; callers hold the lane's lease. */
  writeMeta(meta: LaneMeta): void {
    writeFileAtomic(this.metaFile(meta.key), metaText(meta));
  }

  /** A metadata write made ready (written and synced) ahead, to be put in place later. */
  prepareMeta(meta: LaneMeta): PreparedWrite {
    return prepareAtomic(this.metaFile(meta.key), metaText(meta));
  }

  close(): void {
    for (const dir of this.dirs.values()) dir.close();
    this.dirs.clear();
    this.rootDir?.close();
    this.rootDir = undefined;
  }
}

/** mkdir of `name` in `parent` unless it exists; a new one made by root goes to the parent's owner. */
function makeOwnedDir(parent: Dir, name: string): void {
  try {
    fs.mkdirSync(parent.at(name), { mode: 0o755 });
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return;
    throw error;
  }
  if (process.geteuid?.() !== 0 || parent.stat.uid === 0) return;
  const made = parent.openChild(name);
  try {
    fs.fchownSync(made.fd, parent.stat.uid, parent.stat.gid);
  } finally {
    made.close();
  }
}

function safeReadlink(target: string): string {
  try {
    return JSON.stringify(fs.readlinkSync(target));
  } catch {
    return '?';
  }
}

const OPTIONAL_STRINGS = ['retained', 'trust', 'parked', 'warmFrom', 'leaseUntil', 'measured'] as const;
const STRINGS = ['repository', 'scope', 'runId', 'runAttempt', 'job', 'matrix', 'created', 'host', 'cleanup'] as const;

/** Metadata as runlane writes it, or undefined: wrong types, another key, or a slot that is not one segment. */
export function validMeta(value: unknown, key: string): LaneMeta | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const meta = value as Record<string, unknown>;
  if (meta.key !== key || meta.version !== 1) return undefined;
  if (!STRINGS.every((name) => typeof meta[name] === 'string')) return undefined;
  if (!OPTIONAL_STRINGS.every((name) => meta[name] === undefined || typeof meta[name] === 'string')) return undefined;
  if (meta.slot !== undefined && (typeof meta.slot !== 'string' || !isLaneName(meta.slot))) return undefined;
  for (const name of ['holderPid', 'jobMs', 'bytes', 'files'] as const) {
    const value = meta[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= 0)) return undefined;
  }
  return meta as unknown as LaneMeta;
}

export { isEntryName };

function metaText(meta: LaneMeta): string {
  return `${JSON.stringify(meta, null, 2)}\n`;
}
