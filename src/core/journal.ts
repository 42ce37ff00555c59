import fs from 'node:fs';
import os from 'node:os';
import type { Layout } from './layout.js';

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

/**
 * Appends one record: one write(2) of one line to a file opened with O_APPEND (and never
 * through a symlink), so concurrent writers never interleave a line and a crash loses at most
 * the record being written. Rotation by size keeps one older file. A journal that cannot be
 * written never fails what it records.
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
    const file = root.at(JOURNAL);
    const size = fs.lstatSync(file, { throwIfNoEntry: false })?.size ?? 0;
    if (size >= JOURNAL_MAX_BYTES) fs.renameSync(file, root.at(JOURNAL_OLD));
    const fd = fs.openSync(
      file,
      fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
      0o644,
    );
    try {
      fs.writeSync(fd, `${JSON.stringify(record)}\n`);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // The journal is a record for humans; nothing waits on it.
  }
}

/** The journal's records, oldest first (the rotated file, then the current one); torn lines skipped. */
export function readJournal(layout: Layout): JournalRecord[] {
  const records: JournalRecord[] = [];
  const root = layout.rootHandle();
  for (const name of [JOURNAL_OLD, JOURNAL]) {
    let text = '';
    try {
      const fd = fs.openSync(root.at(name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        text = fs.readFileSync(fd, 'utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const value = JSON.parse(line) as JournalRecord;
        if (typeof value.time === 'string' && typeof value.action === 'string' && typeof value.key === 'string')
          records.push(value);
      } catch {
        // A torn or foreign line: skipped.
      }
    }
  }
  return records;
}
