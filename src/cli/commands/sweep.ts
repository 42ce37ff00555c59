import { Command, Option } from 'commander';
import { type Privileged } from '../../core/delete/remove.js';
import { shown, formatTable, keepFreeShort, sweepSummary, sweepTable, sweepTableNote } from '../../core/ops/report.js';
import { sweep } from '../../core/ops/sweep.js';
import { parseDuration, type SpaceTarget } from '../../core/common/units.js';
import {
  keepFreeOption,
  option,
  parallelWith,
  privilegedOption,
  resolveRoot,
  rootOption,
  sizeHeapForScans,
  stderrMeters,
  terminalWidth,
  workersOption,
} from '../options.js';
import { writeJson } from '../output.js';

/** `runlane sweep`: reap what dead jobs left, evict by age and by free space, empty the trash. */
export function addSweep(program: Command): void {
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
}
