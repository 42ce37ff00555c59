import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { Command, Option } from 'commander';
import { errorMessage } from '../../core/common/errors.js';
import { Layout } from '../../core/root/layout.js';
import { recordSize } from '../../core/root/sizes.js';
import { humanBytes } from '../../core/common/units.js';
import { type Privileged } from '../../core/delete/remove.js';
import { describeFailures, shown } from '../../core/ops/report.js';
import { emptyTrash } from '../../core/root/trash.js';
import { ACTORS, setActor, type Actor } from '../../core/root/journal.js';
import { silentMeters } from '../../core/common/progress.js';
import {
  laneKeyArgument,
  option,
  parallelWith,
  privilegedOption,
  resolveRoot,
  rootOption,
  stderrMeters,
  workersOption,
} from '../options.js';

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

/** `runlane empty-trash`: delete what post and the sweep moved into the trash. */
export function addEmptyTrash(program: Command): void {
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
}
