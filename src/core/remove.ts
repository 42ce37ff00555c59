import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { errorCode, errorMessage } from './errors.js';
import { resolveExisting } from './root.js';

/** A path that could not be removed, and why (EACCES: another owner; EPERM: immutable; EBUSY: a mount). */
export interface RemoveFailure {
  path: string;
  code: string;
  message: string;
  /** What it takes to remove it, for the human reading the report. */
  hint: string;
}

/** `sudo`: retry what the runner user cannot remove through passwordless `sudo -n`. */
export type Privileged = '' | 'sudo';

export interface RemoveReport {
  removed: boolean;
  failures: RemoveFailure[];
}

/** Throws unless `target` lies strictly inside `root`, as given and as resolved. */
export function assertInside(target: string, root: string): void {
  const rel = path.relative(root, target);
  const realRel = path.relative(resolveExisting(root), resolveExisting(path.dirname(target)));
  const outside = (r: string) => r === '' || r === '..' || r.startsWith('../') || path.isAbsolute(r);
  if (outside(rel) || (realRel !== '' && outside(realRel))) {
    throw new Error(`refusing to remove ${target}: it is not inside the root ${root}`);
  }
}

/**
 * Removes a tree without ever following a symlink or leaving its file system, and without
 * stopping at the first file it cannot remove. `rm -rf --one-file-system` does the bulk at
 * native speed; when anything is left (read-only directories for a non-root user, a root-
 * owned or immutable file, a mount), a walk makes directories writable, retries, and
 * records each path that still resists with its error.
 */
export function removeTree(target: string, root: string, privileged: Privileged = ''): RemoveReport {
  assertInside(target, root);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(target);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return { removed: true, failures: [] };
    throw error;
  }
  if (!stat.isDirectory()) {
    const failures: RemoveFailure[] = [];
    unlinkRecorded(target, failures);
    return { removed: failures.length === 0, failures };
  }
  spawnSync('rm', ['-rf', '--one-file-system', '--', target], { stdio: 'ignore' });
  if (!exists(target)) return { removed: true, failures: [] };
  let failures: RemoveFailure[] = [];
  walkRemove(target, stat.dev, failures);
  if (failures.length > 0 && privileged === 'sudo') {
    const notes = new Map(failures.map((failure) => [failure.path, removeWithSudo(failure.path, root)]));
    failures = [];
    if (exists(target)) walkRemove(target, stat.dev, failures);
    for (const failure of failures) {
      const note = notes.get(failure.path);
      if (note) failure.hint = `${note}; ${failure.hint}`;
    }
  }
  return { removed: !exists(target), failures };
}

/** One `sudo -n rm` of a path the runner user could not remove; says why it did not help. */
function removeWithSudo(target: string, root: string): string | undefined {
  assertInside(target, root);
  const result = spawnSync('sudo', ['-n', 'rm', '-rf', '--one-file-system', '--', target], { encoding: 'utf8' });
  if (result.error) return `sudo is not available (${errorCode(result.error) ?? result.error.message})`;
  if (result.status !== 0) return `sudo -n rm failed: ${(result.stderr || '').trim() || `exit ${result.status}`}`;
  return undefined;
}

function exists(target: string): boolean {
  try {
    fs.lstatSync(target);
    return true;
  } catch {
    return false;
  }
}

function record(failures: RemoveFailure[], target: string, error: unknown): void {
  const code = errorCode(error) ?? 'ERROR';
  failures.push({ path: target, code, message: errorMessage(error), hint: hintFor(target, code) });
}

/** What an administrator needs to know to remove a path that resisted. */
function hintFor(target: string, code: string): string {
  if (code === 'EACCES') {
    let owner = 'another user';
    try {
      const parent = fs.lstatSync(path.dirname(target));
      owner = `uid ${parent.uid}`;
    } catch {
      // Keep the generic wording.
    }
    return `its directory belongs to ${owner}, not to the runner user (uid ${process.getuid?.() ?? '?'}); files a 'docker run' left as root look like this: an administrator must remove it, or set privileged-cleanup: sudo`;
  }
  if (code === 'EPERM') {
    return 'immutable or append-only (chattr +i / +a): an administrator must run chattr -i on it; the sweep retries it every time';
  }
  if (code === 'EBUSY' || code === 'EXDEV')
    return 'a file system is mounted here: unmount it, then the sweep removes the rest';
  return 'the sweep retries it every time';
}

function unlinkRecorded(target: string, failures: RemoveFailure[]): void {
  try {
    fs.unlinkSync(target);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') record(failures, target, error);
  }
}

/** Makes a directory we own searchable and writable, so its entries can be removed. */
function openUp(dir: string): void {
  try {
    fs.chmodSync(dir, (fs.lstatSync(dir).mode & 0o7777) | 0o700);
  } catch {
    // The failure that matters is reported by the operation that needed it.
  }
}

function walkRemove(dir: string, device: number, failures: RemoveFailure[]): void {
  const stat = fs.lstatSync(dir);
  if (stat.dev !== device) {
    failures.push({
      path: dir,
      code: 'EXDEV',
      message: 'another file system is mounted here',
      hint: hintFor(dir, 'EXDEV'),
    });
    return;
  }
  openUp(dir);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    record(failures, dir, error);
    return;
  }
  for (const entry of entries) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) walkRemove(child, device, failures);
    else unlinkRecorded(child, failures);
  }
  try {
    fs.rmdirSync(dir);
  } catch (error) {
    // ENOTEMPTY only repeats what the entries' own failures already say.
    if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'ENOENT') record(failures, dir, error);
  }
}

export interface TreeSize {
  bytes: number;
  files: number;
}

/** Disk usage of a tree (allocated blocks, as `du` counts), never following symlinks. */
export function treeSize(target: string): TreeSize {
  const total: TreeSize = { bytes: 0, files: 0 };
  const pending = [target];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(current);
    } catch {
      continue;
    }
    total.bytes += stat.blocks * 512;
    if (!stat.isDirectory()) {
      total.files++;
      continue;
    }
    try {
      for (const name of fs.readdirSync(current)) pending.push(path.join(current, name));
    } catch {
      // An unreadable directory counts as its own size only.
    }
  }
  return total;
}

/** Human-readable bytes: 0 B, 512 B, 1.5 KiB, 20.0 GiB. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
