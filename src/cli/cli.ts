import os from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SettingError, errorMessage } from '../core/errors.js';
import { listLanes } from '../core/lane.js';
import { treeSize } from '../core/remove.js';
import { formatTable, statusTable, sweepSummary, sweepTable } from '../core/report.js';
import { checkRoot, requireMarkedRoot } from '../core/root.js';
import { sweep } from '../core/sweep.js';
import { parseDuration, parseSpace, type SpaceTarget } from '../core/units.js';

/** Commander parsers that turn a SettingError into a usage error naming the option. */
function option<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError(
        error instanceof SettingError ? `${error.reason ?? ''} Accepted: ${error.accepted}.` : errorMessage(error),
      );
    }
  };
}

function resolveRoot(given: string | undefined): string {
  const root = given ?? process.env.RUNLANE_ROOT;
  if (!root) throw new Error('no root: pass --root DIR or set RUNLANE_ROOT');
  const resolved = checkRoot(root, { home: os.homedir() });
  requireMarkedRoot(resolved);
  return resolved;
}

const rootOption = () => new Option('--root <dir>', 'the runlane root (default: $RUNLANE_ROOT)');

export function buildCli(): Command {
  const program = new Command('runlane')
    .description(
      'Isolated, leased per-run directories (lanes) for CI runners: inspect them and sweep what dead jobs left.',
    )
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true });

  program
    .command('status')
    .description('List every lane under the root: its state (live, orphan, kept), size, age and owner.')
    .addOption(rootOption())
    .option('--json', 'print {"root": ..., "lanes": [...]} for machines')
    .action((options: { root?: string; json?: boolean }) => {
      const root = resolveRoot(options.root);
      const lanes = listLanes(root).map((lane) => ({ ...lane, ...treeSize(lane.path) }));
      if (options.json) {
        const out = lanes.map((lane) => ({
          key: lane.key,
          path: lane.path,
          state: lane.state,
          created: lane.created ?? null,
          bytes: lane.bytes,
          files: lane.files,
          repository: lane.meta?.repository ?? null,
          scope: lane.meta?.scope ?? null,
          runId: lane.meta?.runId ?? null,
          job: lane.meta?.job ?? null,
          retained: lane.meta?.retained ?? null,
        }));
        process.stdout.write(`${JSON.stringify({ root, lanes: out }, null, 2)}\n`);
        return;
      }
      process.stdout.write(lanes.length === 0 ? `no lanes under ${root}\n` : `${formatTable(statusTable(lanes))}\n`);
    });

  program
    .command('sweep')
    .description(
      "Reap orphan lanes (nobody holds their lease), remove kept lanes past --max-age, then kept lanes oldest first while free space is below --keep-free. Never touches a live lane. Refuses a root without runlane's marker.",
    )
    .addOption(rootOption())
    .option('--dry-run', 'report what would be removed, delete nothing')
    .option(
      '--max-age <duration>',
      'remove kept lanes older than this (30m, 6h, 7d, 2w)',
      option((v) => parseDuration('--max-age', v)),
      parseDuration('max-age', '7d'),
    )
    .option(
      '--keep-free <space>',
      "free space to keep on the root's file system: 10% or 20G; 0 turns it off",
      option((v) => parseSpace('--keep-free', v)),
      { percent: 10 } as SpaceTarget,
    )
    .option('--json', 'print the report as JSON')
    .action((options: { root?: string; dryRun?: boolean; maxAge: number; keepFree: SpaceTarget; json?: boolean }) => {
      const root = resolveRoot(options.root);
      const off = 'bytes' in options.keepFree ? options.keepFree.bytes === 0 : options.keepFree.percent === 0;
      const progress = process.stderr.isTTY
        ? (done: number, total: number) => process.stderr.write(`\rsweeping ${done}/${total} lanes`)
        : undefined;
      const report = sweep({
        root,
        dryRun: Boolean(options.dryRun),
        maxAgeMs: options.maxAge,
        keepFree: off ? undefined : options.keepFree,
        onProgress: progress,
      });
      if (progress) process.stderr.write('\r\x1b[K');
      if (options.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      if (report.entries.length > 0) process.stdout.write(`${formatTable(sweepTable(report))}\n`);
      process.stdout.write(`${sweepSummary(report)}\n`);
      if (report.entries.some((entry) => entry.outcome === 'failed')) process.exitCode = 1;
    });
  return program;
}

export async function runCli(argv: readonly string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv as string[]);
  } catch (error) {
    process.stderr.write(`runlane: ${errorMessage(error)}\n`);
    process.exitCode = 2;
  }
}
