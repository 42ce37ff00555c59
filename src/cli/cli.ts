import { Command, CommanderError } from 'commander';
import { errorMessage } from '../core/common/errors.js';
import { shown } from '../core/ops/report.js';
import { VERSION } from '../core/common/version.js';
import { RUNLANE_FAILED } from './lane-session.js';

import { addStatus } from './commands/status.js';
import { addSweep } from './commands/sweep.js';
import { addEmptyTrash } from './commands/empty-trash.js';
import { addLog } from './commands/log.js';
import { addMetrics } from './commands/metrics.js';
import { addRun } from './commands/run.js';
import { addEnv } from './commands/env.js';
import { addClose } from './commands/close.js';

/** The commands, in the order the help lists them; each lives in commands/<name>.ts. */
const COMMANDS = [addStatus, addSweep, addEmptyTrash, addLog, addMetrics, addRun, addEnv, addClose];

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

  program.enablePositionalOptions();
  for (const add of COMMANDS) add(program);
  return program;
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
