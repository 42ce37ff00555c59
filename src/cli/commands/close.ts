import { Command } from 'commander';
import { type Privileged } from '../../core/delete/remove.js';
import { closeCommand } from '../lane-session.js';
import { privilegedOption, resolveRoot, rootOption } from '../options.js';

/** `runlane close KEY`: end a lane that `runlane env` opened. */
export function addClose(program: Command): void {
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
}
