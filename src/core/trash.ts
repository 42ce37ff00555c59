import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readJson, writeFileAtomic } from './atomic.js';
import { errorCode, errorMessage } from './errors.js';
import { readdirOrEmpty, type Layout } from './layout.js';
import { Lock } from './lease.js';
import { removeTree, treeSize, type Privileged, type RemoveFailure } from './remove.js';
import { freeBytes } from './space.js';

const FAILED = '.failed.json';

/** Where a trashed lane went, or why it could not be moved (then it was deleted in place). */
export type TrashMove = { trashed: string } | { error: string };

/**
 * Renames a lane into the root's trash: O(1) whatever its size, and its path is free at once.
 * The name keeps the key readable and adds a stamp, so one key trashed twice never collides.
 */
export function moveToTrash(layout: Layout, source: string, key: string): TrashMove {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const target = path.join(layout.trash, `${key}~${stamp}-${randomBytes(3).toString('hex')}`);
  try {
    fs.mkdirSync(layout.trash, { recursive: true, mode: 0o755 });
    fs.renameSync(source, target);
    return { trashed: target };
  } catch (error) {
    return { error: `${errorCode(error) ?? 'ERROR'}: ${errorMessage(error)}` };
  }
}

export interface TrashEntry {
  name: string;
  path: string;
  /** Failures recorded by the last attempt to delete it, if any. */
  failures: RemoveFailure[];
  created?: string;
}

/** The trash's entries (directories), with what earlier attempts could not delete. */
export function listTrash(layout: Layout): TrashEntry[] {
  const entries: TrashEntry[] = [];
  for (const name of readdirOrEmpty(layout.trash).sort()) {
    const entryPath = path.join(layout.trash, name);
    // Beside each entry (a directory) may lie its lock and failure record: files, skipped.
    const stat = fs.lstatSync(entryPath, { throwIfNoEntry: false });
    if (!stat?.isDirectory()) continue;
    const record = readJson<{ failures: RemoveFailure[] }>(`${entryPath}${FAILED}`);
    entries.push({ name, path: entryPath, failures: record?.failures ?? [], created: stat.ctime.toISOString() });
  }
  return entries;
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
}

/**
 * Deletes every trash entry nobody else is deleting (each under its own lock, so the
 * background delete and sweeps share the work without doing it twice). What resists is
 * recorded beside the entry and retried on every later call.
 */
export function emptyTrash(layout: Layout, options: EmptyTrashOptions = {}): TrashResult[] {
  const results: TrashResult[] = [];
  for (const entry of listTrash(layout)) {
    if (options.deadline !== undefined && Date.now() >= options.deadline) break;
    const base = { name: entry.name, path: entry.path };
    if (options.dryRun) {
      results.push({ ...base, outcome: 'would delete', bytes: treeSize(entry.path).bytes, failures: entry.failures });
      continue;
    }
    const lock = Lock.tryAcquire(`${entry.path}.lock`);
    if (!lock) {
      results.push({ ...base, outcome: 'busy', bytes: 0, failures: [] });
      continue;
    }
    try {
      if (!fs.existsSync(entry.path)) continue;
      const before = freeBytes(layout.root);
      const removal = removeTree(entry.path, layout.root, options.privileged);
      const bytes = Math.max(0, freeBytes(layout.root) - before);
      if (removal.removed) {
        fs.rmSync(`${entry.path}${FAILED}`, { force: true });
        lock.unlinkWhileHeld();
        results.push({ ...base, outcome: 'deleted', bytes, failures: [] });
      } else {
        writeFileAtomic(`${entry.path}${FAILED}`, `${JSON.stringify({ failures: removal.failures }, null, 2)}\n`);
        results.push({ ...base, outcome: 'failed', bytes, failures: removal.failures });
      }
    } finally {
      lock.release();
    }
  }
  return results;
}

/**
 * Starts `runlane empty-trash` detached, to delete the trash after the step has returned.
 * Its environment drops RUNNER_TRACKING_ID, so the runner's orphan cleanup leaves it alone;
 * it ends by itself when the trash is empty. Its stdio is closed so the step does not wait.
 */
export function startBackgroundEmpty(cliScript: string, root: string, privileged: Privileged): number | undefined {
  const env = { ...process.env };
  delete env.RUNNER_TRACKING_ID;
  const args = [cliScript, 'empty-trash', '--root', root, '--quiet'];
  if (privileged) args.push('--privileged', privileged);
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore', env });
  child.unref();
  return child.pid;
}
