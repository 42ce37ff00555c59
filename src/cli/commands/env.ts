import { Command, Option } from 'commander';
import { envCommand, type EnvFormat, type LaneOptions } from '../lane-session.js';
import { laneOptions } from '../options.js';

/** `runlane env`: a lane for tools that cannot be wrapped, its variables printed. */
export function addEnv(program: Command): void {
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
}
