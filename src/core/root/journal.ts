import fs from 'node:fs';
import os from 'node:os';
import { errorCode } from '../common/errors.js';
import type { Layout } from './layout.js';
import { Lock } from '../lease/lock.js';
import { openRegular, type OpenedFile } from '../delete/open-regular.js';
import { removeIn, renameIn } from '../delete/remove.js';
import { type Dir } from '../delete/dir.js';

/** The journal: one JSON line per thing done to a lane, under the root. */
export const JOURNAL = 'journal.jsonl';
/** Where the journal goes when it reaches JOURNAL_MAX_BYTES; the one before that is dropped. */
export const JOURNAL_OLD = 'journal.1.jsonl';
export const JOURNAL_MAX_BYTES = 4 * 1024 * 1024;

/** Who acts: each adapter says so once, at its start. */
export type Actor = 'main' | 'post' | 'pre' | 'sweep' | 'cli' | 'run';
let actor: Actor = 'cli';

export function setActor(who: Actor): void {
  actor = who;
}

export function currentActor(): Actor {
  return actor;
}

export const ACTORS: readonly Actor[] = ['main', 'post', 'pre', 'sweep', 'cli', 'run'];

export type JournalAction =
  | 'trashed'
  | 'deleted'
  | 'delete-failed'
  | 'parked'
  | 'kept'
  | 'deferred'
  | 'claimed'
  | 'copied'
  | 'evicted'
  | 'reaped'
  | 'swept';

export interface JournalRecord {
  /** ISO time. */
  time: string;
  action: JournalAction;
  /** The lane's key, or a trash entry's name. */
  key: string;
  reason?: string;
  bytes?: number;
  /** Where it went (a trash entry, a parked slot) or came from (a claim's source). */
  detail?: string;
  /** How long it took (a sweep). */
  seconds?: number;
  by: Actor;
  host: string;
  pid: number;
}

const ACTIONS: readonly JournalAction[] = [
  'trashed',
  'deleted',
  'delete-failed',
  'parked',
  'kept',
  'deferred',
  'claimed',
  'copied',
  'evicted',
  'reaped',
  'swept',
];
const C = fs.constants;

/**
 * Opens a journal file only if it is what runlane writes: a regular file of the root's owner
 * with one link (a FIFO would block, a hard link could lead outside the root). Something else
 * there is removed (it is inside the root) when `clear` is set.
 */
function openJournal(root: Dir, name: string, flags: number, clear: boolean): number | undefined {
  let opened: OpenedFile;
  try {
    opened = openRegular(root.at(name), flags & ~C.O_CREAT, (flags & C.O_CREAT) !== 0);
  } catch (error) {
    if (clear && errorCode(error) !== 'ENOENT') removeIn(root, name);
    return undefined;
  }
  const { fd, stat } = opened;
  if (stat.nlink === 1 && stat.uid === root.stat.uid) return fd;
  fs.closeSync(fd);
  if (clear) removeIn(root, name);
  return undefined;
}

/**
 * Appends one record: one write(2) of one line to a file opened with O_APPEND (never through a
 * symlink, never a FIFO or a hard link), so concurrent writers never interleave a line and a
 * crash loses at most the record being written. Rotation by size keeps one older file, under
 * a lock so two writers never rotate twice. A journal that cannot be written never fails what
 * it records.
 */
export function journal(layout: Layout, entry: Omit<JournalRecord, 'time' | 'by' | 'host' | 'pid'>): void {
  const record: JournalRecord = {
    time: new Date().toISOString(),
    ...entry,
    by: actor,
    host: os.hostname(),
    pid: process.pid,
  };
  try {
    const root = layout.rootHandle();
    if ((root.lstat(JOURNAL)?.size ?? 0) >= JOURNAL_MAX_BYTES) rotate(layout, root);
    const open = () => openJournal(root, JOURNAL, C.O_WRONLY | C.O_APPEND | C.O_CREAT, true);
    // Whatever a job planted there is gone after the first try: the second makes the file.
    const fd = open() ?? open();
    if (fd === undefined) return;
    try {
      fs.writeSync(fd, `${JSON.stringify(record)}\n`);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // The journal is a record for humans; nothing waits on it.
  }
}

function rotate(layout: Layout, root: Dir): void {
  const lock = Lock.tryAcquire({ at: root.at('journal.lock'), shown: `${layout.root}/journal.lock` });
  if (!lock) return;
  try {
    if ((root.lstat(JOURNAL)?.size ?? 0) < JOURNAL_MAX_BYTES) return;
    const old = root.lstat(JOURNAL_OLD);
    if (old && !old.isFile()) removeIn(root, JOURNAL_OLD);
    renameIn(root, JOURNAL, root, JOURNAL_OLD);
  } finally {
    lock.release();
  }
}

const optionalString = (value: unknown) => value === undefined || typeof value === 'string';
const optionalAmount = (value: unknown) =>
  value === undefined || (typeof value === 'number' && Number.isFinite(value) && value >= 0);

/** The form runlane writes times in (Date.prototype.toISOString): what else Date.parse takes does not count. */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

/** How much of each journal file is read: a rotation's worth and a margin, from its end. */
const READ_WINDOW = JOURNAL_MAX_BYTES + 64 * 1024;

/**
 * A record as runlane writes it (any job can append lines; only well-formed ones count). Its
 * time is an ISO-8601 instant, normalised, so records compare as strings and as numbers alike.
 */
function validRecord(value: unknown, now: number): value is JournalRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  const time = typeof record.time === 'string' && ISO_INSTANT.test(record.time) ? Date.parse(record.time) : NaN;
  if (!Number.isNaN(time)) record.time = new Date(time).toISOString();
  return (
    !Number.isNaN(time) &&
    time <= now + 5 * 60_000 &&
    ACTIONS.includes(record.action as JournalAction) &&
    ACTORS.includes(record.by as Actor) &&
    typeof record.key === 'string' &&
    optionalString(record.reason) &&
    optionalString(record.detail) &&
    optionalString(record.host) &&
    optionalAmount(record.bytes) &&
    optionalAmount(record.seconds)
  );
}

/**
 * The journal's well-formed records, oldest first (the rotated file, then the current one).
 * Each file is read from its end, at most READ_WINDOW bytes: runlane rotates at
 * JOURNAL_MAX_BYTES, so that is all it wrote there, and a file a job grew (a sparse 600 MB
 * one) costs no more than that and never becomes one string.
 */
export function readJournal(layout: Layout): JournalRecord[] {
  const records: JournalRecord[] = [];
  const root = layout.rootHandle();
  const now = Date.now();
  for (const name of [JOURNAL_OLD, JOURNAL]) {
    const fd = openJournal(root, name, C.O_RDONLY, false);
    if (fd === undefined) continue;
    let text: string;
    try {
      text = readTail(fd);
    } finally {
      fs.closeSync(fd);
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const value = JSON.parse(line) as unknown;
        if (validRecord(value, now)) records.push(value);
      } catch {
        // A torn or foreign line: skipped.
      }
    }
  }
  return records;
}

/** The last READ_WINDOW bytes of the open file `fd`, from the first line that starts in them. */
function readTail(fd: number): string {
  const size = fs.fstatSync(fd).size;
  const start = Math.max(0, size - READ_WINDOW);
  const buffer = Buffer.alloc(Math.min(size, READ_WINDOW));
  let filled = 0;
  while (filled < buffer.length) {
    const read = fs.readSync(fd, buffer, filled, buffer.length - filled, start + filled);
    if (read === 0) break;
    filled += read;
  }
  let from = 0;
  if (start > 0) {
    // The window starts inside a line: that line is cut, so it does not count.
    const newline = buffer.indexOf(10);
    from = newline < 0 || newline >= filled ? filled : newline + 1;
  }
  return buffer.toString('utf8', from, filled);
}
