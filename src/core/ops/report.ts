import { ageOf, humanBytes } from '../common/units.js';
import { type RemoveFailure } from '../delete/remove.js';
import { BUSY, type SweepReport } from './sweep.js';
import { plural } from '../root/root.js';

export type Table = string[][];

const SHOWN_FAILURES = 20;

/**
 * Text from disk (a name a job planted, a path, a mount point) made safe for a log line: control
 * characters (newlines above all), `%` and backslashes become \xNN, and the `::` and `##` that start a
 * runner command are broken, so nothing a job names can forge a command in another job's log.
 */
export function shown(text: string): string {
  const hex = (char: string) =>
    [...Buffer.from(char, 'utf8')].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join('');
  return (
    text
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029%\\]/gu, hex)
      .replace(/::/g, ':\\x3a')
      .replace(/##/g, '#\\x23')
  );
}

/** Failures for a warning or a terminal: each path, its error, and what it takes to remove it. */
export function describeFailures(failures: readonly RemoveFailure[]): string {
  const lines = failures.slice(0, SHOWN_FAILURES).map((f) => `  ${shown(f.path)}: ${shown(f.code)} (${shown(f.hint)})`);
  if (failures.length > SHOWN_FAILURES) lines.push(`  … and ${failures.length - SHOWN_FAILURES} more`);
  return lines.join('\n');
}

/** The sweep table's short account of paths that resisted deletion. */
function resisted(failures: readonly RemoveFailure[]): string {
  if (failures.length === 0) return 'it could not be removed; retried every sweep';
  return `${failures.length} paths resisted (first: ${failures[0].path}: ${failures[0].code}); retried every sweep`;
}

/**
 * Whether the sweep's table lists an entry: everything it did or could not do (a lane it would
 * have removed but found locked, too), and live and unknown lanes; kept and parked lanes it
 * left in place are only counted (a root may hold thousands, and a job summary has room for
 * about a megabyte). `--json` lists every lane.
 */
function listed(entry: SweepReport['entries'][number]): boolean {
  if (entry.reason.startsWith(BUSY)) return true;
  return !(entry.outcome === 'left' && (entry.state === 'kept' || entry.state === 'parked'));
}

/** Kept and parked lanes the table leaves out, in words; empty when it lists them all. */
export function sweepTableNote(report: SweepReport): string {
  const hidden = report.entries.filter((entry) => !listed(entry)).length;
  return hidden === 0
    ? ''
    : `(${plural(hidden, 'kept or parked lane')} left in place ${hidden === 1 ? 'is' : 'are'} not listed: runlane status shows them, sweep --json lists every lane)`;
}

/** The sweep's table: one row a lane it looked at, then one a trash entry, with what it did and why. */
export function sweepTable(report: SweepReport): Table {
  const verb = (outcome: string) =>
    report.dryRun && (outcome === 'reaped' || outcome === 'evicted') ? `would be ${outcome}` : outcome;
  // Trash entries this sweep made are shown on their lane's row; the rest are earlier ones.
  const own = new Set(report.entries.map((entry) => entry.trashed));
  const trashRows = report.trash
    .filter((result) => !own.has(result.path))
    .map((result) => [
      result.name,
      'trash',
      result.outcome,
      humanBytes(result.bytes),
      '',
      result.outcome === 'failed'
        ? resisted(result.failures)
        : result.outcome === 'busy'
          ? 'being deleted by another process'
          : 'trash emptied',
    ]);
  return [
    ['lane', 'state', 'outcome', 'size', 'age', 'why'],
    ...report.entries
      .filter(listed)
      .map((entry) => [
        entry.key,
        entry.state,
        verb(entry.outcome),
        entry.bytes === undefined ? '' : humanBytes(entry.bytes),
        ageOf(entry.created),
        entry.failures?.length ? `${entry.reason}; ${resisted(entry.failures)}` : entry.reason,
      ]),
    ...trashRows,
  ];
}

/** One line: what the sweep did in total. */
export function sweepSummary(report: SweepReport): string {
  const count = (outcome: string) => report.entries.filter((entry) => entry.outcome === outcome).length;
  const left = (state: string) =>
    report.entries.filter((entry) => entry.outcome === 'left' && entry.state === state).length;
  const removed = count('reaped') + count('evicted');
  const how = [
    count('reaped') ? `${plural(count('reaped'), 'orphan')} reaped` : '',
    count('evicted') ? `${count('evicted')} evicted` : '',
  ].filter(Boolean);
  const done = report.dryRun
    ? `would remove ${removed}${how.length ? ` (${how.join(', ')})` : ''}, freeing ${humanBytes(report.freedBytes)}`
    : `removed ${removed}${how.length ? ` (${how.join(', ')})` : ''}, freed ${humanBytes(report.freedBytes)}`;
  const stays = ['live', 'kept', 'parked', 'unknown']
    .map((state) => [state, left(state)] as const)
    .filter(([state, n]) => n > 0 || state === 'live')
    .map(([state, n]) => `${n} ${state}`);
  const deletedTrash = report.trash.filter((t) => t.outcome === 'deleted' || t.outcome === 'would delete').length;
  const extra = [
    `left ${stays.join(', ')}`,
    count('failed') ? `${count('failed')} failed` : '',
    report.trash.length
      ? `trash: ${deletedTrash} of ${plural(report.trash.length, 'entry', 'entries')} ${report.dryRun ? 'would be ' : ''}deleted`
      : '',
    report.tidied ? `${plural(report.tidied, 'stale file')} tidied` : '',
    report.problems.length ? `${plural(report.problems.length, 'problem')} (listed below)` : '',
    report.timedOut ? 'stopped at its time bound' : '',
    keepFreeShort(report) ? 'keep-free not reached (see below)' : '',
  ].filter(Boolean);
  const scanned = `${plural(report.scanned, 'lane')} and ${plural(report.scannedParked, 'parked lane')} scanned`;
  return `runlane sweep of ${report.root}: ${scanned}; ${done}; ${extra.join(', ')} (${report.seconds.toFixed(2)} s)${report.dryRun ? ' [dry run: nothing deleted]' : ''}`;
}

/** When the keep-free target still does not hold after the sweep: how far off, and why. */
export function keepFreeShort(report: SweepReport): string | undefined {
  const target = report.keepFree;
  if (!target || target.reached || report.timedOut) return undefined;
  const live = report.entries.filter((entry) => entry.state === 'live').length;
  return `keep-free cannot be reached: ${humanBytes(target.freeBytes)} free on the root's file system, ${humanBytes(target.wantedBytes)} wanted, and nothing the sweep may remove is left (${plural(live, 'live lane')}; the rest of the disk is not runlane's)`;
}

/** One row of `runlane status`: a lane, or an entry in the trash. */
export interface StatusRow {
  key: string;
  path: string;
  state: string;
  /** Size, when known: measured when it was kept or parked, or now with --sizes. */
  bytes?: number;
  files?: number;
  created?: string;
  repository?: string;
  scope?: string;
  /** Where a warm lane came from (its metadata's warmFrom): `<key> (claimed)`, `<key> (remote, ...)`. */
  warmFrom?: string;
}

/** The status table's header; `statusCells` gives each row (`-` for a size not measured). */
export const STATUS_HEADER = ['lane', 'state', 'size', 'files', 'age', 'repository', 'scope', 'warm'];

/** One status row's cells. */
export function statusCells(row: StatusRow, now = Date.now()): string[] {
  return [
    row.key,
    row.state,
    row.bytes === undefined ? '-' : humanBytes(row.bytes),
    row.files === undefined ? '-' : String(row.files),
    ageOf(row.created, now),
    row.repository ?? '',
    row.scope ?? '',
    warmCell(row.warmFrom),
  ];
}

/**
 * How a lane started, in a few words: `claimed`, `copy` or `reflink` (from a parked lane of
 * this host), `remote 1.2 GiB in 3.1 s (390.2 MB/s)` (from the cache service); empty when cold.
 * `status --json` has the whole record, the source entry's key included.
 */
export function warmCell(warmFrom: string | undefined): string {
  if (!warmFrom) return '';
  const remote = /\(remote, (.*)\)$/.exec(warmFrom);
  if (remote) return `remote ${remote[1]}`;
  return /\((claimed|reflink|copy)\)$/.exec(warmFrom)?.[1] ?? 'warm';
}

/** The shortest a shortened first column gets: enough to tell most keys apart. */
const MIN_KEY_WIDTH = 24;
/** Room kept for the last column (free text, which may wrap) when fitting a table. */
const LAST_COLUMN_ROOM = 20;

/** `text` cut to `width` characters by taking out its middle: `acme-widgets.m…46c1e1a27c`. */
export function shortenMiddle(text: string, width: number): string {
  if (text.length <= width) return text;
  const tail = Math.floor((width - 1) / 2);
  return `${text.slice(0, width - 1 - tail)}…${text.slice(text.length - tail)}`;
}

/**
 * A plain-text table with aligned columns, for terminals and logs (its cells escaped with
 * shown()). Given a terminal `width`,
 * the first column (the lane keys, whose ends tell them apart) is shortened in the middle so
 * the table fits; without one (a pipe, a log), nothing is cut, so keys can be copied and grepped.
 */
export function formatTable(raw: Table, width?: number): string {
  const lines: string[] = [];
  writeTable(
    raw.map((row) => [...row]),
    width,
    (line) => lines.push(line),
  );
  return lines.join('\n');
}

/**
 * formatTable line by line into `emit`, for tables of 100,000 rows: the cells are escaped in
 * place (the table is consumed) and no string of the whole table is made.
 */
export function writeTable(table: Table, width: number | undefined, emit: (line: string) => void): void {
  for (const row of table) for (let i = 0; i < row.length; i++) row[i] = shown(row[i] ?? '');
  const widths = table[0].map(() => 0);
  for (const row of table)
    for (let i = 0; i < widths.length; i++) widths[i] = Math.max(widths[i], (row[i] ?? '').length);
  if (width !== undefined && widths.length > 1) {
    const last = widths.length - 1;
    const others = widths.slice(1, last).reduce((sum, each) => sum + each + 2, 0) + 2;
    const room = width - others - Math.min(widths[last], LAST_COLUMN_ROOM);
    const fitted = Math.max(MIN_KEY_WIDTH, room);
    if (fitted < widths[0]) {
      widths[0] = fitted;
      for (const row of table.slice(1)) row[0] = shortenMiddle(row[0] ?? '', fitted);
    }
  }
  for (const row of table)
    emit(
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    );
}
