import v8 from 'node:v8';
import os from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SettingError, errorMessage } from '../core/common/errors.js';
import { isLaneName } from '../core/root/layout.js';
import { checkRoot, findRoot, requireMarkedRoot, rootSetting } from '../core/root/root.js';
import { parseSpace, type SpaceTarget } from '../core/common/units.js';
import { metersTo, silentMeters, type Meters } from '../core/common/progress.js';
import type { Parallel } from '../core/delete/parallel.js';
import { bundled } from '../core/common/bundles.js';

/** Commander parsers that turn a SettingError into a usage error naming the option. */
export function option<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError(error instanceof SettingError ? usageReason(error) : errorMessage(error));
    }
  };
}

/** After commander's "argument 'X' is invalid.": the reason as a sentence, then what is accepted. */
export function usageReason(error: SettingError): string {
  const reason = error.reason ? `${error.reason[0].toUpperCase()}${error.reason.slice(1)}. ` : '';
  return `${reason}Accepted: ${error.accepted}.`;
}

export function resolveRoot(given: string | undefined): string {
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

export const rootOption = () =>
  new Option(
    '--root <dir>',
    'the runlane root (default: $RUNLANE_ROOT, else the _work/_runlane of the runner directory you are in)',
  );
export const privilegedOption = () =>
  new Option('--privileged <how>', "remove what the runner user cannot through passwordless 'sudo -n'").choices([
    'sudo',
  ]);

/**
 * A scan of 100,000 lanes keeps about 25 MB alive but makes much short-lived garbage; V8's
 * default heap growth let the process reach 160 MB of RSS for it. Sized for memory (set
 * before the scan allocates), it stays near 120 MB. Set for status, sweep and metrics only.
 */
export function sizeHeapForScans(): void {
  v8.setFlagsFromString('--optimize-for-size');
}

/** --keep-free for sweep, status and metrics: `off` (or 0) gives null. */
export const keepFreeOption = (what: string) =>
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
export function stderrMeters(json: boolean): Meters {
  if (json) return silentMeters;
  return metersTo((text) => process.stderr.write(text), Boolean(process.stderr.isTTY));
}

/** Threads a delete uses: `--workers`, 4 by default (deletes wait on the disk more than on a CPU). */
export const DEFAULT_WORKERS = 4;
export const workersOption = () =>
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
export const parallelWith = (workers: number): Parallel => ({ script: bundled('delete-worker'), workers });

/** The terminal's width when stdout is one (tables are then fitted to it), else undefined. */
export function terminalWidth(): number | undefined {
  return process.stdout.isTTY ? process.stdout.columns : undefined;
}

/** A lane key given on the command line: only a name runlane makes, never a path. */
export function laneKeyArgument(setting: string, value: string): string {
  if (!isLaneName(value)) throw new SettingError(setting, value, 'a lane key as status lists it');
  return value;
}

export const collect = (value: string, previous: string[]) => [...previous, value];

/** The options `run` and `env` share: where, what to point at the lane, warm, cleanup, identity. */
export function laneOptions(command: Command): Command {
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
