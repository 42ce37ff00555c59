import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { writeFileAtomic } from '../common/atomic.js';
import { errorCode, errorMessage } from '../common/errors.js';
import { readJsonNoFollow } from '../delete/open-regular.js';
import { type Layout } from './layout.js';
import { currentActor, journal } from './journal.js';
import { Lock } from '../lease/lock.js';
import { describeMount } from '../delete/mounts.js';
import { mountsBelow, removeIn, unlinkIfAny, renameIn, type Privileged, type RemoveFailure } from '../delete/remove.js';
import { type Dir } from '../delete/dir.js';
import { freeBytes } from '../common/space.js';
import { removeInParallel, type Parallel } from '../delete/parallel.js';
import { silentMeters, type Meters, type Tick } from '../common/progress.js';

const FAILED = '.failed.json';

/** Where a trashed lane went, or why it could not be moved (then the caller deletes it in place). */
export type TrashMove = { trashed: string } | { error: string };

/**
 * Renames the entry `name` of `from` (a lane in lanes/ or a parked slot) into the root's
 * trash: O(1) whatever its size, and its path is free at once. The new name keeps the key
 * readable and adds a stamp, so one key trashed twice never collides. A lane with a file
 * system mounted in it is not moved: the in-place delete then removes all but the mount and
 * reports it, and the sweep retries it.
 */
export function moveToTrash(layout: Layout, from: Dir, name: string, key: string): TrashMove {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const target = `${key}~${stamp}-${randomBytes(3).toString('hex')}`;
  try {
    const mounts = mountsBelow(from, name);
    if (mounts.length > 0) {
      const where = mounts.map((mount) => `${mount.mountPoint} from ${describeMount(mount)}`).join(', ');
      return { error: `EBUSY: file systems are mounted in it (${where})` };
    }
    renameIn(from, name, layout.dir('trash'), target);
    return { trashed: path.join(layout.trash, target) };
  } catch (error) {
    const code = errorCode(error);
    return { error: code ? `${code}: ${errorMessage(error)}` : errorMessage(error) };
  }
}

export interface TrashEntry {
  name: string;
  path: string;
  /** Failures recorded by the last attempt to delete it, if any. */
  failures: RemoveFailure[];
  created?: string;
}

/**
 * The trash's entries, with what earlier attempts could not delete: directories (lanes), and
 * anything else that is neither an entry's lock nor its failure record (a file a job planted
 * in `lanes/` and a sweep moved here, or one planted here): all of it is deleted.
 */
export function listTrash(layout: Layout): TrashEntry[] {
  const trash = layout.dirIfAny('trash');
  if (!trash) return [];
  const entries: TrashEntry[] = [];
  for (const name of trash.names().sort()) {
    // Beside each entry (a directory) lie its lock and failure record: never entries themselves.
    if (name.endsWith('.lock') || name.endsWith(FAILED)) continue;
    const stat = trash.lstat(name);
    if (!stat) continue;
    const record = readJsonNoFollow(trash.at(`${name}${FAILED}`)) as { failures?: unknown } | undefined;
    entries.push({
      name,
      path: path.join(layout.trash, name),
      failures: validFailures(record?.failures),
      created: stat.ctime.toISOString(),
    });
  }
  return entries;
}

/** A failure record read back (a job can write in the root): only well-formed entries count. */
function validFailures(value: unknown): RemoveFailure[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (item): item is RemoveFailure =>
      typeof item === 'object' &&
      item !== null &&
      ['path', 'code', 'message', 'hint'].every(
        (field) => typeof (item as Record<string, unknown>)[field] === 'string',
      ),
  );
}

export interface TrashResult {
  name: string;
  path: string;
  outcome: 'deleted' | 'failed' | 'busy' | 'would delete';
  bytes: number;
  failures: RemoveFailure[];
}

export interface EmptyTrashOptions {
  dryRun?: boolean;
  privileged?: Privileged;
  /** Epoch ms after which no new entry is started. */
  deadline?: number;
  /** Progress by entries and bytes, and one summary line; silent when absent. */
  meters?: Meters;
  /** Threads for each entry's delete (see removeInParallel); one when absent. */
  parallel?: Parallel;
}

/**
 * Deletes every trash entry nobody else is deleting (each under its own lock, so the
 * background delete and sweeps share the work without doing it twice). What resists is
 * recorded beside the entry and retried on every later call.
 */
export function emptyTrash(layout: Layout, options: EmptyTrashOptions = {}): TrashResult[] {
  const results: TrashResult[] = [];
  const entries = listTrash(layout);
  if (entries.length === 0) return results;
  const start = freeBytes(layout.root);
  const meter = (options.meters ?? silentMeters)(options.dryRun ? 'trash (dry run)' : 'trash', {
    total: entries.length,
    item: ['entry', 'entries'],
    bytes: options.dryRun ? undefined : () => Math.max(0, freeBytes(layout.root) - start),
  });
  // The entries' locks by one process a small batch (one `flock` each would cost more than
  // deleting small entries); small, so another deleter still shares the rest of the trash.
  for (let start = 0; start < entries.length; start += TRASH_LOCK_BATCH) {
    if (options.deadline !== undefined && Date.now() >= options.deadline) break;
    const batch = entries.slice(start, start + TRASH_LOCK_BATCH);
    let locks: (Lock | undefined | Error)[] = [];
    if (!options.dryRun) {
      try {
        locks = Lock.tryAcquireMany(batch.map((entry) => layout.trashLock(entry.name)));
      } catch {
        // Taken one by one below.
      }
    }
    try {
      batch.forEach((entry, index) => {
        if (options.deadline !== undefined && Date.now() >= options.deadline) return;
        const taken = index < locks.length ? (locks[index] ?? null) : undefined;
        const result = emptyEntry(layout, entry, options, meter.tick, taken);
        if (result) results.push(result);
        meter.item();
      });
    } finally {
      for (const lock of locks) if (lock instanceof Lock) lock.release();
    }
  }
  meter.done();
  return results;
}

const TRASH_LOCK_BATCH = 16;

/** Deletes one trash entry under its lock (see emptyTrash); undefined when it is gone already. */
function emptyEntry(
  layout: Layout,
  entry: TrashEntry,
  options: EmptyTrashOptions,
  tick: Tick,
  taken?: Lock | Error | null,
): TrashResult | undefined {
  const base = { name: entry.name, path: entry.path };
  if (options.dryRun) {
    const bytes = layout.sizeOf('trash', [entry.name], tick).bytes;
    return { ...base, outcome: 'would delete', bytes, failures: entry.failures };
  }
  const trash = layout.dir('trash');
  let lock: Lock | undefined;
  try {
    if (taken instanceof Error) throw taken;
    lock = taken === undefined ? Lock.tryAcquire(layout.trashLock(entry.name)) : (taken ?? undefined);
  } catch (error) {
    const failure = { path: `${entry.path}.lock`, code: errorCode(error) ?? 'ERROR', message: errorMessage(error) };
    return { ...base, outcome: 'failed', bytes: 0, failures: [{ ...failure, hint: 'remove it by hand' }] };
  }
  if (!lock) return { ...base, outcome: 'busy', bytes: 0, failures: [] };
  try {
    if (!trash.exists(entry.name)) return undefined;
    const before = freeBytes(layout.root);
    if (options.parallel && trash.lstat(entry.name)?.isDirectory())
      removeInParallel(trash, entry.name, options.parallel, tick);
    const removal = removeIn(trash, entry.name, options.privileged, tick);
    const bytes = Math.max(0, freeBytes(layout.root) - before);
    // Whatever a job planted where the failure record goes (a directory, say) makes way.
    const record = `${entry.name}${FAILED}`;
    if (trash.lstat(record) && !trash.lstat(record)?.isFile()) removeIn(trash, record);
    if (removal.removed) {
      unlinkIfAny(trash.at(record));
      lock.unlinkWhileHeld();
      journal(layout, { action: 'deleted', key: entry.name, bytes });
      return { ...base, outcome: 'deleted', bytes, failures: [] };
    }
    writeFileAtomic(trash.at(record), `${JSON.stringify({ failures: removal.failures }, null, 2)}\n`);
    const first = removal.failures[0];
    journal(layout, {
      action: 'delete-failed',
      key: entry.name,
      bytes,
      reason: `${removal.failures.length} paths resisted${first ? ` (first: ${first.path}: ${first.code})` : ''}`,
    });
    return { ...base, outcome: 'failed', bytes, failures: removal.failures };
  } catch (error) {
    // One entry's trouble never stops the rest of the trash.
    const failure = { path: entry.path, code: errorCode(error) ?? 'ERROR', message: errorMessage(error) };
    return {
      ...base,
      outcome: 'failed',
      bytes: 0,
      failures: [{ ...failure, hint: 'the sweep retries it every time' }],
    };
  } finally {
    lock.release();
  }
}

/**
 * Starts `runlane empty-trash` detached, at low CPU and I/O priority, to delete the trash
 * after the step has returned and (with `measure`) record the size of the lane post kept or
 * parked. Its environment drops RUNNER_TRACKING_ID, so the runner's orphan cleanup leaves it
 * alone; it ends by itself when the trash is empty. Its stdio is closed so the step does not wait.
 */
export function startBackgroundEmpty(
  cliScript: string,
  root: string,
  privileged: Privileged,
  measure?: string,
): number | undefined {
  const env = { ...process.env };
  delete env.RUNNER_TRACKING_ID;
  // The journal names who started it (post, pre, run), not the CLI it runs as.
  const args = [cliScript, 'empty-trash', '--root', root, '--quiet', '--low-priority', '--by', currentActor()];
  if (privileged) args.push('--privileged', privileged);
  if (measure) args.push('--measure', measure);
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore', env });
  child.unref();
  return child.pid;
}
