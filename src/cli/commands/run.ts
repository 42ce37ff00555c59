import { Command } from 'commander';
import { runCommand, type LaneOptions } from '../lane-session.js';
import { laneOptions } from '../options.js';

/** `runlane run -- COMMAND`: a lane for one command, on any CI. */
export function addRun(program: Command): void {
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
}
