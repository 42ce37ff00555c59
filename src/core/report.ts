import { humanBytes, type RemoveFailure } from './remove.js';
import type { SweepReport } from './sweep.js';
import { plural } from './root.js';
import { humanDuration } from './units.js';

export type Table = string[][];

/** Age of an ISO timestamp, for humans ("3h 5m"); "?" when unknown. */
export function ageOf(created: string | undefined, now = Date.now()): string {
  const time = created ? Date.parse(created) : NaN;
  return Number.isNaN(time) ? '?' : humanDuration(now - time);
}

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
    ...report.entries.map((entry) => [
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
  const live = report.entries.filter((entry) => entry.state === 'live').length;
  const removed = count('reaped') + count('evicted');
  const done = report.dryRun
    ? `would remove ${removed} (${humanBytes(report.freedBytes)})`
    : `removed ${removed}, freed ${humanBytes(report.freedBytes)}`;
  const extra = [
    `${live} live`,
    `${count('kept') - live} kept`,
    count('failed') ? `${count('failed')} failed` : '',
    report.trash.length
      ? `trash: ${report.trash.filter((t) => t.outcome === 'deleted' || t.outcome === 'would delete').length} of ${plural(report.trash.length, 'entry', 'entries')} ${report.dryRun ? 'would be ' : ''}deleted`
      : '',
    report.tidied ? `${plural(report.tidied, 'stale file')} tidied` : '',
    report.problems.length ? `${plural(report.problems.length, 'problem')} (listed below)` : '',
    report.timedOut ? 'stopped at its time bound' : '',
  ].filter(Boolean);
  return `runlane sweep of ${report.root}: ${plural(report.scanned, 'lane')} scanned, ${done}; ${extra.join(', ')} (${report.seconds.toFixed(2)} s)${report.dryRun ? ' [dry run: nothing deleted]' : ''}`;
}

/** One row of `runlane status`: a lane, or an entry in the trash. */
export interface StatusRow {
  key: string;
  path: string;
  state: string;
  bytes: number;
  files: number;
  created?: string;
  repository?: string;
  scope?: string;
}

/** The status table: one row a lane or trash entry. */
export function statusTable(rows: readonly StatusRow[]): Table {
  return [
    ['lane', 'state', 'size', 'files', 'age', 'repository', 'scope'],
    ...rows.map((row) => [
      row.key,
      row.state,
      humanBytes(row.bytes),
      String(row.files),
      ageOf(row.created),
      row.repository ?? '',
      row.scope ?? '',
    ]),
  ];
}

/** A plain-text table with aligned columns, for terminals and logs. */
export function formatTable(raw: Table): string {
  const table = raw.map((row) => row.map((cell) => shown(cell ?? '')));
  const widths = table[0].map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  return table
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
