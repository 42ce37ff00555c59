import fs from 'node:fs';
import { Command } from 'commander';
import { Layout, type LaneMeta } from '../../core/root/layout.js';
import { humanBytes } from '../../core/common/units.js';
import { type RemoveFailure } from '../../core/delete/remove.js';
import {
  describeFailures,
  shown,
  writeTable,
  STATUS_HEADER,
  statusCells,
  type StatusRow,
} from '../../core/ops/report.js';
import { takeCensus, type Measured } from '../../core/ops/census.js';
import { plural } from '../../core/root/root.js';
import { type SpaceTarget } from '../../core/common/units.js';
import { formatSpace, requiredFree } from '../../core/common/space.js';
import { type Meter } from '../../core/common/progress.js';
import { keepFreeOption, resolveRoot, rootOption, sizeHeapForScans, stderrMeters, terminalWidth } from '../options.js';
import { BatchedWriter } from '../output.js';

type Row = StatusRow & {
  measured?: string;
  job?: string;
  runId?: string;
  retained?: string;
  failures?: RemoveFailure[];
  holderPid?: number;
  leaseUntil?: string;
  trust?: string;
};

/** A status row for a lane (live, orphan, kept or parked), with its size (when known) and owner. */
function laneRow(
  key: string,
  lanePath: string,
  state: string,
  meta: LaneMeta | undefined,
  size: Measured | undefined,
  created?: string,
): Row {
  // Written out, not spread: a status builds 100,000 of them.
  return {
    key,
    path: lanePath,
    state,
    bytes: size?.bytes,
    files: size?.files,
    measured: size?.measured,
    created,
    repository: meta?.repository,
    scope: meta?.scope,
    runId: meta?.runId,
    job: meta?.job,
    retained: meta?.retained,
    // For humans: liveness is the lock's, and the bound counts on the holder's monotonic clock.
    holderPid: meta?.holderPid,
    leaseUntil: meta?.leaseUntil,
    warmFrom: meta?.warmFrom,
    trust: meta?.trust,
  };
}

/**
 * Lines under the status table: lanes by state and their known size, then the file system's
 * free space against the keep-free target the sweep works to.
 */
function statusTotals(root: string, tally: Tally, keepFree: SpaceTarget | undefined): string {
  const counts = ['live', 'orphan', 'kept', 'unknown', 'parked', 'trash']
    .filter((state) => (tally.states.get(state) ?? 0) > 0)
    .map((state) => `${tally.states.get(state)} ${state}`);
  const unsized = tally.rows - tally.sized;
  const size =
    unsized === 0
      ? humanBytes(tally.bytes)
      : `${humanBytes(tally.bytes)} in the ${plural(tally.sized, 'one')} measured (status --sizes measures the other ${unsized})`;
  const stats = fs.statfsSync(root);
  const free = stats.bavail * stats.bsize;
  const total = stats.blocks * stats.bsize;
  const percent = total > 0 ? ((free / total) * 100).toFixed(1) : '?';
  const lanes = `total: ${plural(tally.rows, 'lane')}${counts.length ? ` (${counts.join(', ')})` : ''}, ${size}`;
  let space = `free on the root's file system: ${humanBytes(free)} of ${humanBytes(total)} (${percent}%)`;
  if (keepFree) {
    const wanted = requiredFree(root, keepFree);
    space +=
      free >= wanted
        ? `; keep-free ${formatSpace(keepFree)} (${humanBytes(wanted)}): met`
        : `; keep-free ${formatSpace(keepFree)} (${humanBytes(wanted)}): NOT met, ${humanBytes(wanted - free)} short (a sweep evicts parked, then kept lanes)`;
  }
  return `${lanes}\n${space}`;
}

/** Counts for the totals line, kept as rows go by (the rows themselves need not be kept). */
class Tally {
  rows = 0;
  sized = 0;
  bytes = 0;
  readonly states = new Map<string, number>();

  add(row: Row): void {
    this.rows++;
    this.states.set(row.state, (this.states.get(row.state) ?? 0) + 1);
    if (row.bytes === undefined) return;
    this.sized++;
    this.bytes += row.bytes;
  }
}

/**
 * The lanes, the parked lanes and the trash for `status`; what could not be read, as problems.
 * O(lanes): sizes are those recorded when a lane was kept or parked; `sizes` walks every tree
 * now (live lanes and the trash too), ticking `meter`.
 */
function statusRows(
  root: string,
  sizes: boolean,
  meter: Meter,
  emit?: (row: Row) => void,
): { rows: Row[]; problems: string[] } {
  const layout = new Layout(root);
  const problems: string[] = [];
  const onProblem = (what: string, detail: string) => problems.push(`${what}: ${detail}`);
  // Rows go to `emit` as they are made (JSON streams them: 100,000 lanes never sit in memory
  // at once), else into the table's list.
  const rows: Row[] = [];
  const add = emit ?? ((row: Row) => rows.push(row));
  try {
    takeCensus(layout, { sizes, meter, onProblem }, (entry) => {
      if (entry.problem) problems.push(`the lane ${entry.name}: ${entry.problem}`);
      add(
        entry.area === 'trash'
          ? {
              key: entry.name,
              path: entry.path,
              state: 'trash',
              ...entry.size,
              created: entry.since,
              failures: entry.failures,
            }
          : laneRow(entry.name, entry.path, entry.state, entry.meta, entry.size, entry.since),
      );
    });
    return { rows, problems };
  } finally {
    layout.close();
  }
}

/** `runlane status`: every lane under the root with its state, size, age and owner. */
export function addStatus(program: Command): void {
  program
    .command('status')
    .description(
      'List every lane under the root with its state (live, orphan, kept, parked, trash), size, age and owner.',
    )
    .addOption(rootOption())
    .option(
      '--sizes',
      'measure every lane, parked lane and trash entry now (a walk of every tree, with progress); without it, sizes are those recorded when a lane was kept or parked',
    )
    .addOption(keepFreeOption('the keep-free target to show free space against'))
    .option('--json', 'print {"root": ..., "lanes": [...]} for machines')
    .action((options: { root?: string; json?: boolean; sizes?: boolean; keepFree: SpaceTarget | null }) => {
      sizeHeapForScans();
      const root = resolveRoot(options.root);
      const meter = stderrMeters(Boolean(options.json))('sizing', { item: ['lane', 'lanes'] });
      if (options.json) {
        // Streamed, one lane a line: the output of 100,000 lanes is never one string in memory.
        const out = new BatchedWriter((text) => process.stdout.write(text));
        out.write(`{\n"root": ${JSON.stringify(root)},\n"lanes": [`);
        let first = true;
        const { problems } = statusRows(root, Boolean(options.sizes), meter, (row) => {
          out.write(`${first ? '\n' : ',\n'}${JSON.stringify(row)}`);
          first = false;
        });
        out.write(`\n],\n"problems": ${JSON.stringify(problems)}\n}\n`);
        out.flush();
        if (problems.length > 0) process.exitCode = 1;
        return;
      }
      // Only each row's cells are kept for the table, and counts for the totals.
      const tally = new Tally();
      const cells: string[][] = [STATUS_HEADER];
      const resisting: Row[] = [];
      const { problems } = statusRows(root, Boolean(options.sizes), meter, (row) => {
        tally.add(row);
        cells.push(statusCells(row));
        if (row.failures && row.failures.length > 0) resisting.push(row);
      });
      if (options.sizes) meter.done();
      if (problems.length > 0) process.exitCode = 1;
      for (const problem of problems) process.stderr.write(`runlane: ${shown(problem)}\n`);
      if (tally.rows === 0) process.stdout.write(`no lanes under ${root}\n`);
      else {
        const out = new BatchedWriter((text) => process.stdout.write(text));
        writeTable(cells, terminalWidth(), (line) => out.write(`${line}\n`));
        out.flush();
      }
      process.stdout.write(`${statusTotals(root, tally, options.keepFree ?? undefined)}\n`);
      for (const row of resisting)
        process.stdout.write(`\n${shown(row.path)} resists deletion:\n${describeFailures(row.failures ?? [])}\n`);
    });
}
