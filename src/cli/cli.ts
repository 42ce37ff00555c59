import fs from 'node:fs';
import v8 from 'node:v8';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { SettingError, errorMessage } from '../core/common/errors.js';
import { forEachLane } from '../core/root/liveness.js';
import { Layout, isLaneName, type LaneMeta } from '../core/root/layout.js';
import { recordSize, recordedSize } from '../core/root/sizes.js';
import { humanBytes } from '../core/common/units.js';
import { type Privileged, type RemoveFailure } from '../core/delete/remove.js';
import { type TreeSize } from '../core/delete/walk.js';
import {
  describeFailures,
  shown,
  formatTable,
  writeTable,
  STATUS_HEADER,
  statusCells,
  keepFreeShort,
  sweepSummary,
  sweepTable,
  sweepTableNote,
  type StatusRow,
} from '../core/ops/report.js';
import { emptyTrash, listTrash } from '../core/root/trash.js';
import { listParked } from '../core/warm/warm.js';
import { checkRoot, findRoot, plural, requireMarkedRoot, rootSetting } from '../core/root/root.js';
import { VERSION } from '../core/common/version.js';
import { ACTORS, readJournal, setActor, type Actor } from '../core/root/journal.js';
import { sweep } from '../core/ops/sweep.js';
import { parseDuration, parseSpace, type SpaceTarget } from '../core/common/units.js';
import { formatSpace, requiredFree } from '../core/common/space.js';
import { metersTo, silentMeters, type Meter, type Meters } from '../core/common/progress.js';
import type { Parallel } from '../core/delete/parallel.js';
import { bundled } from '../core/common/bundles.js';
import { closeCommand, envCommand, runCommand, RUNLANE_FAILED, type EnvFormat, type LaneOptions } from './run.js';

/** Commander parsers that turn a SettingError into a usage error naming the option. */
function option<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError(error instanceof SettingError ? usageReason(error) : errorMessage(error));
    }
  };
}

/** After commander's "argument 'X' is invalid.": the reason as a sentence, then what is accepted. */
function usageReason(error: SettingError): string {
  const reason = error.reason ? `${error.reason[0].toUpperCase()}${error.reason.slice(1)}. ` : '';
  return `${reason}Accepted: ${error.accepted}.`;
}

function resolveRoot(given: string | undefined): string {
  const choice = findRoot(given, process.env, process.cwd());
  if (!choice) {
    throw new Error(
      "no root: pass --root DIR, set RUNLANE_ROOT, or run inside a runner's directory whose _work/_runlane runlane made",
    );
  }
  const setting = rootSetting(choice);
  const resolved = checkRoot(choice.path, { home: os.homedir() }, setting);
  requireMarkedRoot(resolved, setting);
  return resolved;
}

const rootOption = () =>
  new Option(
    '--root <dir>',
    'the runlane root (default: $RUNLANE_ROOT, else the _work/_runlane of the runner directory you are in)',
  );
const privilegedOption = () =>
  new Option('--privileged <how>', "remove what the runner user cannot through passwordless 'sudo -n'").choices([
    'sudo',
  ]);

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

/** A size and when it was measured (when the lane was kept or parked, or now with --sizes). */
type Measured = TreeSize & { measured: string };

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
  const part = <T>(what: string, body: () => T[]): T[] => {
    try {
      return body();
    } catch (error) {
      problems.push(`${what}: ${errorMessage(error)}`);
      return [];
    }
  };
  const measure = (area: 'lanes' | 'parked' | 'trash', names: string[], meta?: LaneMeta): Measured | undefined => {
    if (!sizes) {
      const recorded = recordedSize(meta);
      return recorded && { ...recorded, measured: meta?.measured as string };
    }
    const size = layout.sizeOf(area, names, meter.tick);
    meter.item();
    return { ...size, measured: new Date().toISOString() };
  };
  // Rows go to `emit` as they are made (JSON streams them: 100,000 lanes never sit in memory
  // at once), else into the table's list.
  const rows: Row[] = [];
  const add = emit ?? ((row: Row) => rows.push(row));
  try {
    // The lane listing goes on without metadata (lanes then `unknown` or `live`): say why.
    part('metadata', () => {
      layout.dirIfAny('meta');
      return [];
    });
    const parked = part('parked lanes', () => listParked(layout));
    const trash = part('trash', () => listTrash(layout));
    if (sizes) meter.setTotal(layout.names('lanes').length + parked.length + trash.length);
    part('lanes', () => {
      forEachLane(layout, (lane) => {
        if (lane.problem) problems.push(`the lane ${lane.key}: ${lane.problem}`);
        add(laneRow(lane.key, lane.path, lane.state, lane.meta, measure('lanes', [lane.key], lane.meta), lane.created));
      });
      return [];
    });
    for (const lane of parked) {
      const size = measure('parked', [lane.slot, lane.key], lane.meta);
      add(laneRow(lane.key, lane.path, 'parked', lane.meta, size, lane.parked));
    }
    for (const entry of trash) {
      const size = measure('trash', [entry.name]);
      add({
        key: entry.name,
        path: entry.path,
        state: 'trash',
        ...size,
        created: entry.created,
        failures: entry.failures,
      });
    }
    return { rows, problems };
  } finally {
    layout.close();
  }
}

/** Collects small writes into chunks of about 64 KiB, for output of many lines. */
class BatchedWriter {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly sink: (text: string) => void) {}

  write(text: string): void {
    this.parts.push(text);
    this.size += text.length;
    if (this.size >= 65_536) this.flush();
  }

  flush(): void {
    if (this.parts.length > 0) this.sink(this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }
}

/**
 * A JSON object on stdout, its `lists` written one element a line as they are serialised:
 * a report on 100,000 lanes is never one string in memory.
 */
function writeJson(value: Record<string, unknown>, lists: readonly string[]): void {
  const out = new BatchedWriter((text) => process.stdout.write(text));
  const fields = Object.entries(value).filter(([, field]) => field !== undefined);
  out.write('{');
  fields.forEach(([name, field], index) => {
    out.write(`${index === 0 ? '\n' : ',\n'}${JSON.stringify(name)}: `);
    if (lists.includes(name) && Array.isArray(field)) {
      out.write('[');
      field.forEach((item, position) => out.write(`${position === 0 ? '\n' : ',\n'}${JSON.stringify(item)}`));
      out.write(field.length > 0 ? '\n]' : ']');
    } else out.write(JSON.stringify(field));
  });
  out.write('\n}\n');
  out.flush();
}

/**
 * A scan of 100,000 lanes keeps about 25 MB alive but makes much short-lived garbage; V8's
 * default heap growth let the process reach 160 MB of RSS for it. Sized for memory (set
 * before the scan allocates), it stays near 120 MB. Set for status, sweep and metrics only.
 */
function sizeHeapForScans(): void {
  v8.setFlagsFromString('--optimize-for-size');
}

/** --keep-free for sweep, status and metrics: `off` (or 0) gives null. */
const keepFreeOption = (what: string) =>
  new Option('--keep-free <space>', `${what}: 10% or 20G (G = GiB), or off`)
    .argParser(
      option((value): SpaceTarget | null => {
        const target = parseSpace('--keep-free', value);
        return ('bytes' in target ? target.bytes : target.percent) === 0 ? null : target;
      }),
    )
    .default({ percent: 10 } as SpaceTarget, '10%');

/**
 * Progress for an operator: live lines on stderr when it is a terminal, a line per phase when
 * it is not (a log); nothing with --json, whose stdout is for machines and stderr for errors.
 */
function stderrMeters(json: boolean): Meters {
  if (json) return silentMeters;
  return metersTo((text) => process.stderr.write(text), Boolean(process.stderr.isTTY));
}

/** Threads a delete uses: `--workers`, 4 by default (deletes wait on the disk more than on a CPU). */
const DEFAULT_WORKERS = 4;
const workersOption = () =>
  new Option('--workers <n>', 'threads deleting each big trash entry at once (1 to 16; 1: one thread)')
    .argParser(
      option((value) => {
        const n = Number(value);
        if (!/^\d+$/.test(value) || n < 1 || n > 16)
          throw new SettingError('--workers', value, 'a whole number from 1 to 16');
        return n;
      }),
    )
    .default(DEFAULT_WORKERS, String(DEFAULT_WORKERS));
const parallelWith = (workers: number): Parallel => ({ script: bundled('delete-worker'), workers });

/** The terminal's width when stdout is one (tables are then fitted to it), else undefined. */
function terminalWidth(): number | undefined {
  return process.stdout.isTTY ? process.stdout.columns : undefined;
}

/** Records a lane's size (see recordSize); a failure is a message, never the command's failure. */
function measureQuietly(layout: Layout, key: string, quiet: boolean): void {
  try {
    recordSize(layout, key);
  } catch (error) {
    if (!quiet) process.stderr.write(`runlane: could not measure ${key}: ${shown(errorMessage(error))}\n`);
  }
}

interface EmptyTrashOptions {
  root?: string;
  privileged?: Privileged;
  json?: boolean;
  quiet?: boolean;
  by?: Actor;
  measure?: string;
  lowPriority?: boolean;
  workers: number;
}

/** A lane key given on the command line: only a name runlane makes, never a path. */
function laneKeyArgument(setting: string, value: string): string {
  if (!isLaneName(value)) throw new SettingError(setting, value, 'a lane key as status lists it');
  return value;
}

/**
 * Nice 10 and best-effort I/O priority 7 for this process and the threads it starts later
 * (both are inherited at creation): a background delete then yields to the jobs on the host.
 * Where ionice is missing, the CPU priority alone applies.
 */
function lowerPriority(): void {
  try {
    os.setPriority(10);
  } catch {
    // Already lower, or not permitted: it stays as it is.
  }
  spawnSync('ionice', ['-c', '2', '-n', '7', '-p', String(process.pid)], { stdio: 'ignore' });
}

export function buildCli(): Command {
  const program = new Command('runlane')
    .description(
      'Isolated, leased per-run directories (lanes) for CI runners: inspect them and sweep what dead jobs left.',
    )
    .version(VERSION)
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true })
    // Usage errors throw (runCli gives them exit status 2) instead of exiting with 1, the
    // status that means "something could not be removed". Subcommands inherit this.
    .exitOverride();

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

  program
    .command('sweep')
    .description(
      "Reap orphan lanes (nobody holds their lease), remove kept and parked lanes past --max-age, then parked and kept lanes oldest first while free space is below --keep-free, and empty the trash. Never touches a live lane. Refuses a root without runlane's marker.",
    )
    .addOption(rootOption())
    .option('--dry-run', 'report what would be removed, delete nothing')
    .addOption(
      new Option('--max-age <duration>', 'remove kept and parked lanes older than this (30m, 6h, 7d, 2w)')
        .argParser(option((v) => parseDuration('--max-age', v)))
        .default(parseDuration('--max-age', '7d'), '7d'),
    )
    .addOption(keepFreeOption("free space to keep on the root's file system"))
    .addOption(privilegedOption())
    .addOption(workersOption())
    .option('--json', 'print the report as JSON')
    .action(
      (options: {
        root?: string;
        dryRun?: boolean;
        maxAge: number;
        keepFree: SpaceTarget | null;
        privileged?: Privileged;
        json?: boolean;
        workers: number;
      }) => {
        sizeHeapForScans();
        const root = resolveRoot(options.root);
        const report = sweep({
          root,
          dryRun: Boolean(options.dryRun),
          maxAgeMs: options.maxAge,
          keepFree: options.keepFree ?? undefined,
          privileged: options.privileged ?? '',
          meters: stderrMeters(Boolean(options.json)),
          parallel: parallelWith(options.workers),
        });
        if (options.json) {
          writeJson(report as unknown as Record<string, unknown>, ['entries', 'trash']);
        } else {
          const table = sweepTable(report);
          if (table.length > 1) process.stdout.write(`${formatTable(table, terminalWidth())}\n`);
          const note = sweepTableNote(report);
          if (note) process.stdout.write(`${note}\n`);
          process.stdout.write(`${sweepSummary(report)}\n`);
          const short = keepFreeShort(report);
          if (short) process.stdout.write(`${short}\n`);
        }
        for (const problem of report.problems) process.stderr.write(`runlane: ${shown(problem)}\n`);
        const failed = [...report.entries, ...report.trash].some((item) => item.outcome === 'failed');
        if (failed || report.problems.length > 0) process.exitCode = 1;
      },
    );

  program
    .command('empty-trash')
    .description(
      'Delete what post and the sweep moved into the trash (post starts this in the background). Entries another process is deleting are skipped; what resists is recorded and retried.',
    )
    .addOption(rootOption())
    .addOption(privilegedOption())
    .option('--json', 'print the results as JSON')
    .option('--quiet', 'print nothing (for the background delete)')
    .addOption(
      new Option('--by <who>', 'who the journal names as having started this delete (post starts it as post)').choices(
        ACTORS,
      ),
    )
    .addOption(
      new Option(
        '--measure <key>',
        'then record the size of the kept or parked lane KEY in its metadata, for status (post passes the lane it kept or parked)',
      ).argParser(option((value) => laneKeyArgument('--measure', value))),
    )
    .addOption(workersOption())
    .option(
      '--low-priority',
      'run at nice 10 and best-effort I/O priority 7, so the next job is not slowed (post uses it)',
    )
    .action((options: EmptyTrashOptions) => {
      if (options.by) setActor(options.by);
      const root = resolveRoot(options.root);
      if (options.lowPriority) lowerPriority();
      const layout = new Layout(root);
      let results;
      try {
        const meters = options.quiet ? silentMeters : stderrMeters(Boolean(options.json));
        results = emptyTrash(layout, {
          privileged: options.privileged ?? '',
          meters,
          parallel: parallelWith(options.workers),
        });
        // Space first; the measurement is for reports, and its trouble never stops the delete.
        if (options.measure) measureQuietly(layout, options.measure, Boolean(options.quiet));
      } finally {
        layout.close();
      }
      if (results.some((result) => result.outcome === 'failed')) process.exitCode = 1;
      if (options.quiet) return;
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ root, trash: results }, null, 2)}\n`);
        return;
      }
      for (const result of results) {
        process.stdout.write(`${shown(result.path)}: ${result.outcome}, ${humanBytes(result.bytes)} freed\n`);
        if (result.failures.length > 0) process.stdout.write(`${describeFailures(result.failures)}\n`);
      }
      if (results.length === 0) process.stdout.write(`the trash of ${root} is empty\n`);
    });
  program
    .command('log')
    .description(
      'What runlane did to lanes, from the journal under the root: every removal, trash delete, park, claim, copy, eviction and reap, with when, why, how many bytes and by whom (post, pre, main, run, the CLI).',
    )
    .addOption(rootOption())
    .option('--key <text>', 'only records whose key contains this')
    .addOption(
      new Option('--since <duration>', 'only records newer than this (30m, 6h, 7d)').argParser(
        option((v) => parseDuration('--since', v)),
      ),
    )
    .option('--json', 'print the records as JSON lines')
    .action((options: { root?: string; key?: string; since?: number; json?: boolean }) => {
      const root = resolveRoot(options.root);
      const layout = new Layout(root);
      let records;
      try {
        records = readJournal(layout);
      } finally {
        layout.close();
      }
      const after = options.since === undefined ? '' : new Date(Math.max(0, Date.now() - options.since)).toISOString();
      const shownRecords = records.filter(
        (record) => (!options.key || record.key.includes(options.key)) && record.time >= after,
      );
      if (options.json) {
        for (const record of shownRecords) process.stdout.write(`${JSON.stringify(record)}\n`);
        return;
      }
      if (shownRecords.length === 0) {
        process.stdout.write(
          `no journal records under ${shown(root)}${options.key || options.since ? ' that match' : ''}\n`,
        );
        return;
      }
      const table = [
        ['time', 'action', 'key', 'bytes', 'by', 'why'],
        ...shownRecords.map((record) => [
          record.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
          record.action,
          record.key,
          record.bytes === undefined ? '' : humanBytes(record.bytes),
          `${record.by}@${record.host}`,
          [record.reason, record.detail].filter(Boolean).join('; '),
        ]),
      ];
      process.stdout.write(`${formatTable(table)}\n`);
    });

  program
    .command('metrics')
    .description(
      "Print Prometheus metrics of the root (lanes by state, free space against keep-free, oldest live lane, reaps by reason, delete failures, the last sweep), or write them for node_exporter's textfile collector.",
    )
    .addOption(rootOption())
    .addOption(keepFreeOption('the keep-free target to report against'))
    .option('--sizes', 'also measure every lane (a tree walk each: slow on big roots)')
    .option('--textfile <path>', 'write to this file atomically instead of printing (e.g. .../textfile/runlane.prom)')
    .action(async (options: { root?: string; keepFree: SpaceTarget | null; sizes?: boolean; textfile?: string }) => {
      sizeHeapForScans();
      const root = resolveRoot(options.root);
      // prom-client is loaded only here: every other command (and runlane run) starts without it.
      const { metricsText, writeTextfile } = await import('../core/ops/metrics.js');
      const text = await metricsText(root, {
        keepFree: options.keepFree ?? undefined,
        sizes: Boolean(options.sizes),
      });
      if (options.textfile) writeTextfile(path.resolve(options.textfile), text);
      else process.stdout.write(text);
    });

  program.enablePositionalOptions();
  laneOptions(
    program
      .command('run')
      .usage('[options] -- COMMAND [ARGS...]')
      .description(
        "Open a lane, run COMMAND in it with the lane's variables (RUNLANE_DIR, the presets', --env), then close it as the Action's post does. COMMAND runs under a keeper that ends every process it started, however they detach, when COMMAND exits (before the lane is closed or parked) or when runlane dies by any cause; the lease lasts until the last of them is gone. Exits with COMMAND's status (128+N for signal N), 127 if COMMAND is not found, 126 if it cannot run, 125 if runlane itself fails (then nothing runs).",
      )
      .argument('<command...>', 'the command and its arguments, after --')
      .passThroughOptions()
      .option(
        '--grace <duration>',
        'after a forwarded SIGINT/SIGTERM/SIGHUP, SIGKILL the command this much later; also what processes COMMAND leaves get between SIGTERM and SIGKILL',
        '10s',
      )
      .exitOverride(),
  ).action(async (command: string[], options: LaneOptions & { grace: string }) => {
    process.exitCode = await runCommand(command, options, options.grace);
  });

  laneOptions(
    program
      .command('env')
      .description(
        "Open a lane for tools that cannot be wrapped and print its variables (and RUNLANE_KEY). A detached holder keeps its lease until 'runlane close KEY' or --lease-timeout (default 6h).",
      )
      .addOption(
        new Option('--format <format>', 'shell (export lines), json, github (for $GITHUB_ENV) or dotenv')
          .choices(['shell', 'json', 'github', 'dotenv'])
          .default('shell'),
      )
      .exitOverride(),
  ).action(async (options: LaneOptions & { format: EnvFormat }) => {
    process.exitCode = await envCommand(options, options.format);
  });

  program
    .command('close')
    .description(
      "End a lane that 'runlane env' opened: remove it (or keep or defer it, per --cleanup), release its lease.",
    )
    .argument('<key>', 'the lane key (RUNLANE_KEY)')
    .addOption(rootOption())
    .option('--cleanup <when>', 'always | on-success | never | defer', 'always')
    .option('--failed', 'the job failed (for --cleanup on-success)')
    .addOption(privilegedOption())
    .option('--quiet', 'print nothing')
    .action(
      (
        key: string,
        options: { root?: string; cleanup: string; failed?: boolean; privileged?: Privileged; quiet?: boolean },
      ) => {
        process.exitCode = closeCommand(resolveRoot(options.root), key, options);
      },
    );
  return program;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** The options `run` and `env` share: where, what to point at the lane, warm, cleanup, identity. */
function laneOptions(command: Command): Command {
  return command
    .option(
      '--root <dir>',
      "the runlane root (default: $RUNLANE_ROOT, else the runner's _work/_runlane, else ~/.cache/runlane)",
    )
    .option(
      '--preset <names>',
      'presets to point at the lane (cargo, tmp, pytest, go, ...), comma-separated; repeatable',
      collect,
      [],
    )
    .option(
      '--env <NAME[=subdir]>',
      'an application variable to point at the lane (or a subdirectory); repeatable',
      collect,
      [],
    )
    .option(
      '--link <path[=subdir]>',
      'a path of the work tree to turn into a symlink into the lane; repeatable',
      collect,
      [],
    )
    .option('--warm', 'start from a parked lane of the same slot, and park this one on success')
    .option(
      '--warm-from <list>',
      'where a warm start may come from, in order: same, base, or branch names',
      'same,base',
    )
    .option('--warm-keep <n>', 'parked lanes kept per slot', '1')
    .option('--warm-key <text>', 'added to the warm slot: text, {rustc}, {env:NAME}, {hash:GLOB}')
    .option(
      '--warm-max-size <size>',
      'trim a lane to this before it is parked (least recently used first), or off',
      '20G',
    )
    .option('--cleanup <when>', 'always | on-success | never | defer', 'always')
    .option('--scope <scope>', 'override the detected scope: a branch name, refs/..., or pr:N')
    .option('--run <id>', 'override the detected run id')
    .option('--job <name>', 'override the detected job name')
    .option('--key <template>', 'the key template ({repo}, {scope}, {run}, {attempt}, {job}, {matrix})')
    .option('--matrix <json>', "this leg's matrix values as JSON")
    .option(
      '--lease-timeout <duration>',
      'env: a last bound of the lease (30m, 6h), or none; run: none only (its lease ends with runlane)',
    )
    .addOption(privilegedOption())
    .option('--quiet', 'print nothing of its own');
}

/** Commands whose own failures exit 125, so they never pass for COMMAND's status. */
const WRAPPERS = new Set(['run', 'env']);

/**
 * Exit statuses: 0 done; 1 something could not be removed (or a problem was found and
 * skipped); 2 a usage or root error, or any failure of runlane itself (run and env: 125).
 */
export async function runCli(argv: readonly string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv as string[]);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') {
      // `runlane --help` is 0; `runlane` alone (help shown for want of a command) is a usage error.
      process.exitCode = (error as CommanderError).exitCode === 0 ? 0 : 2;
      return;
    }
    if (!(error instanceof CommanderError)) process.stderr.write(`runlane: ${shown(errorMessage(error))}\n`);
    process.exitCode = WRAPPERS.has(argv[2] ?? '') ? RUNLANE_FAILED : 2;
  }
}
