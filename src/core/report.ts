import type { LaneEntry } from './lane.js';
import { humanBytes } from './remove.js';
import type { SweepReport } from './sweep.js';
import { humanDuration } from './units.js';

export type Table = string[][];

/** Age of an ISO timestamp, for humans ("3h 5m"); "?" when unknown. */
export function ageOf(created: string | undefined, now = Date.now()): string {
  const time = created ? Date.parse(created) : NaN;
  return Number.isNaN(time) ? '?' : humanDuration(now - time);
}

/** The sweep's table: one row a lane it looked at, with what it did and why. */
export function sweepTable(report: SweepReport): Table {
  const verb = (outcome: string) =>
    report.dryRun && (outcome === 'reaped' || outcome === 'evicted') ? `would be ${outcome}` : outcome;
  return [
    ['lane', 'state', 'outcome', 'size', 'age', 'why'],
    ...report.entries.map((entry) => [
      entry.key,
      entry.state,
      verb(entry.outcome),
      entry.bytes === undefined ? '' : humanBytes(entry.bytes),
      ageOf(entry.created),
      entry.failures?.length
        ? `${entry.reason}; ${entry.failures.length} paths resisted (first: ${entry.failures[0].path}: ${entry.failures[0].code})`
        : entry.reason,
    ]),
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
    report.tidied ? `${report.tidied} stale files tidied` : '',
    report.timedOut ? 'stopped at its time bound' : '',
  ].filter(Boolean);
  return `runlane sweep of ${report.root}: ${report.scanned} lanes scanned, ${done}; ${extra.join(', ')} (${report.seconds.toFixed(2)} s)${report.dryRun ? ' [dry run: nothing deleted]' : ''}`;
}

/** The status table: one row a lane. */
export function statusTable(lanes: readonly (LaneEntry & { bytes: number; files: number })[]): Table {
  return [
    ['lane', 'state', 'size', 'files', 'age', 'repository', 'scope'],
    ...lanes.map((lane) => [
      lane.key,
      lane.state,
      humanBytes(lane.bytes),
      String(lane.files),
      ageOf(lane.created),
      lane.meta?.repository ?? '?',
      lane.meta?.scope ?? '?',
    ]),
  ];
}

/** A plain-text table with aligned columns, for terminals and logs. */
export function formatTable(table: Table): string {
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
