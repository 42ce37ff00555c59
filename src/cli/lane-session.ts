import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { bundled } from '../core/common/bundles.js';
import { detectIdentity, slotParts, type Identity } from '../core/lane/ci-identity.js';
import { planExports, shellQuote, type Export } from '../core/lane/env-plan.js';
import { errorMessage, SettingError } from '../core/common/errors.js';
import { DEFAULT_KEY_TEMPLATE, laneKey, parseKeyTemplate, parseMatrix } from '../core/lane/key.js';
import {
  closeActionFor,
  closeLane,
  describeClose,
  openLane,
  startAfterClose,
  type CloseResult,
  type OpenedLane,
} from '../core/job/job.js';
import { parseEnvRequests, parseLinkRequests } from '../core/lane/requests.js';
import { isLaneName, Layout } from '../core/root/layout.js';
import { makeLinks, planLinks, removeLinks, type LinkPlan } from '../core/job/links.js';
import { parsePresets } from '../core/lane/presets.js';
import type { Privileged } from '../core/delete/remove.js';
import { setActor } from '../core/root/journal.js';
import { shown } from '../core/ops/report.js';
import { startCommand, type CommandEnd, type RunningCommand } from './keeper.js';
import { checkRoot, chooseRoot, rootSetting } from '../core/root/root.js';
import { parseDuration } from '../core/common/units.js';
import { warmSlot } from '../core/warm/warm.js';
import { describeWarm, parseWarmFrom, parseWarmKeep, startWarm } from '../core/warm/start.js';
import { CLEANUPS } from '../action/constants.js';
import { parseWarmKey, resolveWarmKey } from '../core/warm/key.js';
import { describeTrim, parseWarmMaxSize, trimForPark } from '../core/warm/trim.js';

/** Exit status of `runlane run` and `runlane env` when runlane itself fails (as `env` and `timeout` use). */
export const RUNLANE_FAILED = 125;

/** The options `run` and `env` share. */
export interface LaneOptions {
  root?: string;
  preset: string[];
  env: string[];
  link: string[];
  warm?: boolean;
  warmFrom?: string;
  warmKeep?: string;
  warmKey?: string;
  warmMaxSize?: string;
  cleanup: string;
  scope?: string;
  run?: string;
  job?: string;
  key?: string;
  matrix?: string;
  leaseTimeout?: string;
  privileged?: Privileged;
  quiet?: boolean;
}

interface Plan {
  root: string;
  /** What errors about the root name (`--root` or `RUNLANE_ROOT`). */
  rootSetting: string;
  identity: Identity;
  key: string;
  lanePath: string;
  exports: Export[];
  links: LinkPlan[];
  warmFrom: string[];
  warmKeep: number;
  /** `--warm-max-size`: a parked lane is trimmed to this; undefined for `off`. */
  warmMaxBytes?: number;
  cleanup: string;
  leaseMs: number | null;
}

/** The git work tree containing `cwd` (what a `git clean` there would delete), if any. */
function workTree(cwd: string): string | undefined {
  const out = spawnSync('git', ['rev-parse', '--show-toplevel'], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out.status === 0 && out.stdout.trim() ? out.stdout.trim() : undefined;
}

/** Everything `run` and `env` need, checked before anything is created; errors name the flag and value. */
export function planLane(options: LaneOptions, env: NodeJS.ProcessEnv, cwd: string, defaultLease: string): Plan {
  const home = env.HOME || os.homedir();
  const tree = workTree(cwd);
  const choice = chooseRoot(options.root ? path.resolve(options.root) : '', env, home);
  const setting = rootSetting(choice);
  const root = checkRoot(choice.path, { home, workspace: tree }, setting);
  if (!(CLEANUPS as readonly string[]).includes(options.cleanup)) {
    throw new SettingError('--cleanup', options.cleanup, CLEANUPS.join(' | '));
  }
  const matrix = options.matrix ?? '';
  parseMatrix(matrix);
  const identity = detectIdentity(env, cwd, { scope: options.scope, run: options.run, job: options.job, matrix });
  // Two `runlane run` in one CI job (the same job id) are two invocations: each gets a lane.
  identity.invocation = `${identity.invocation}/${randomBytes(8).toString('hex')}`;
  const key = laneKey(parseKeyTemplate(options.key ?? DEFAULT_KEY_TEMPLATE), identity);
  const lanePath = new Layout(root).lane(key);
  const exports = planExports(
    lanePath,
    parsePresets(options.preset.join(',')),
    parseEnvRequests(options.env.join('\n')),
    env,
  );
  const links = planLinks(tree ?? cwd, parseLinkRequests(options.link.join('\n')), lanePath);
  const warmFrom = parseWarmFrom('--warm-from', options.warmFrom ?? '');
  const warmKeep = parseWarmKeep('--warm-keep', options.warmKeep ?? '');
  const warmKey = parseWarmKey('--warm-key', options.warmKey ?? '');
  const warmMaxBytes = parseWarmMaxSize('--warm-max-size', options.warmMaxSize ?? '');
  if (options.warm) {
    const resolved = resolveWarmKey(warmKey, { env, workspace: tree ?? cwd, trust: identity.trust });
    if (resolved.hash) identity.warmKey = resolved.hash;
  }
  const lease = options.leaseTimeout ?? defaultLease;
  if (defaultLease === 'none' && lease !== 'none') {
    throw new SettingError(
      '--lease-timeout',
      lease,
      'none, for runlane run',
      "runlane run's lease ends with runlane itself; bound COMMAND with timeout(1) instead",
    );
  }
  const leaseMs = lease === 'none' ? null : parseDuration('--lease-timeout', lease);
  return {
    root,
    rootSetting: setting,
    identity,
    key,
    lanePath,
    exports,
    links,
    warmFrom,
    warmKeep,
    warmMaxBytes,
    cleanup: options.cleanup,
    leaseMs,
  };
}

/** Opens the planned lane; `selfHeld`: this process holds the lease (its death ends it). */
async function openPlanned(
  plan: Plan,
  options: LaneOptions,
  selfHeld: boolean,
): Promise<{ lane: OpenedLane; notes: string[] }> {
  const notes: string[] = [];
  const id = plan.identity;
  const lane = await openLane({
    root: plan.root,
    rootSetting: plan.rootSetting,
    key: plan.key,
    meta: {
      repository: id.repository,
      scope: id.scope,
      runId: id.runId,
      runAttempt: id.runAttempt,
      job: id.job,
      matrix: id.matrix.trim(),
      cleanup: plan.cleanup,
      trust: id.trust,
    },
    holderScript: selfHeld ? undefined : bundled('holder'),
    workerPid: 0,
    leaseMs: plan.leaseMs,
    dirs: [...plan.exports.map((variable) => variable.dir), ...plan.links.map((link) => link.target)],
    populate: options.warm
      ? (layout, key) => startWarm(layout, plan.warmFrom, id, key, notes, id.baseBranch)
      : undefined,
  });
  makeLinks(plan.links);
  return { lane, notes };
}

const say = (options: LaneOptions, text: string) => {
  if (!options.quiet) process.stderr.write(`runlane: ${shown(text)}\n`);
};

/** Closes a lane as post does: park on success with warm, else by `cleanup`; the trash goes in the background. */
function closePlanned(plan: Plan, options: LaneOptions, lane: OpenedLane, success: boolean): CloseResult {
  for (const problem of removeLinks(plan.links)) say(options, `link ${problem}`);
  let { action, reason } = closeActionFor(plan.cleanup, success ? 'success' : 'failure', options.warm ?? false);
  const park = options.warm ? { slot: warmSlot(slotParts(plan.identity)), keep: plan.warmKeep } : undefined;
  if (action === 'park' && plan.warmMaxBytes !== undefined) {
    try {
      const trimmed = trimForPark(plan.root, plan.key, plan.warmMaxBytes);
      if (trimmed) say(options, `warm lane ${describeTrim(trimmed, plan.warmMaxBytes)}`);
      if (trimmed?.hidden) ({ action, reason } = closeActionFor(plan.cleanup, success ? 'success' : 'failure', false));
    } catch (error) {
      say(options, `the lane could not be trimmed to --warm-max-size: ${errorMessage(error)}`);
    }
  }
  const lease = lane.lock ? { lock: lane.lock } : { holderPid: lane.holderPid };
  const result = closeLane(plan.root, plan.key, lease, action, reason, options.privileged ?? '', park);
  const pid = startAfterClose(bundled('cli'), plan.root, plan.key, result, options.privileged ?? '');
  say(options, `lane ${plan.lanePath}: ${describeClose(result, reason, { pid })}`);
  return result;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `runlane run [options] -- COMMAND [ARGS...]`: opens a lane, runs COMMAND in it (its own
 * process group under runlane's keeper, the lane's variables in its environment, the current
 * directory), then closes the lane as post does. This process and the keeper hold the lease:
 * when runlane dies by any cause the keeper kills all COMMAND started and the lease ends with
 * the last of them; when COMMAND exits, what it left is ended before the lane is closed.
 * Returns COMMAND's exit status (128+N for a death by signal N), 127 when it cannot be found,
 * 126 when it cannot be run, 125 when runlane fails (then nothing runs).
 */
export async function runCommand(command: string[], options: LaneOptions, graceText: string): Promise<number> {
  let plan: Plan;
  let graceMs: number;
  let opened: { lane: OpenedLane; notes: string[] };
  setActor('run');
  try {
    graceMs = parseDuration('--grace', graceText);
    plan = planLane(options, process.env, process.cwd(), 'none');
    process.title = `runlane-run ${plan.key}`;
    opened = await openPlanned(plan, options, true);
  } catch (error) {
    process.stderr.write(`runlane: ${errorMessage(error)}\n`);
    return RUNLANE_FAILED;
  }
  const { lane, notes } = opened;
  for (const note of notes) say(options, note);
  say(
    options,
    `lane ${lane.path} (${plan.identity.system}, ${plan.identity.scope}, warm: ${lane.warm ? describeWarm(lane.warm) : 'false'})`,
  );
  const env = { ...process.env };
  for (const variable of plan.exports) env[variable.name] = variable.value;

  const running = startCommand(command, { env, graceMs, lockFd: lane.lock!.descriptor });
  const forwarding = forwardSignals(running, options, graceMs, graceText);
  const end = await running.done;
  forwarding.exited();
  const status = end.status;
  reportEnd(command, running, end, options);
  try {
    closePlanned(plan, options, lane, status === 0);
  } catch (error) {
    process.stderr.write(`runlane: closing the lane failed (the sweep reaps it): ${errorMessage(error)}\n`);
  } finally {
    forwarding.stop();
  }
  return status;
}

/**
 * Passes runlane's SIGINT, SIGTERM and SIGHUP to COMMAND's process group; a second SIGINT, or
 * the grace period running out, escalates to SIGKILL. Once COMMAND is gone (`exited`) the lane
 * is being closed (milliseconds): a late signal must not kill runlane halfway through, so the
 * handlers stay, doing nothing, until `stop`.
 */
function forwardSignals(running: RunningCommand, options: LaneOptions, graceMs: number, graceText: string) {
  let signalled = 0;
  let killTimer: NodeJS.Timeout | undefined;
  let exited = false;
  const forward = (signal: NodeJS.Signals) => {
    if (exited) return;
    signalled++;
    if (signalled > 1 && signal === 'SIGINT') {
      say(options, `${signal} again: COMMAND's process group is killed (SIGKILL)`);
      return running.signal('SIGKILL');
    }
    running.signal(signal);
    if (killTimer) return;
    say(
      options,
      `${signal}: passed to COMMAND's process group; a second SIGINT, or ${graceText} (--grace) from now, kills it`,
    );
    killTimer = setTimeout(() => running.signal('SIGKILL'), graceMs);
  };
  for (const signal of SIGNALS) process.on(signal, forward);
  return {
    exited() {
      exited = true;
      if (killTimer) clearTimeout(killTimer);
    },
    stop() {
      for (const each of SIGNALS) process.off(each, forward);
    },
  };
}

/** How COMMAND ended, when there is more to say than its status: why it could not run, what it left. */
function reportEnd(command: string[], running: RunningCommand, end: CommandEnd, options: LaneOptions): void {
  if (end.problem) {
    const status = end.status;
    const what = status === 126 || status === 127 ? `cannot run ${shown(command[0])}` : 'COMMAND';
    process.stderr.write(`runlane: ${what}: ${shown(end.problem)}\n`);
  }
  if (running.limit) say(options, `note: ${running.limit}`);
  if (end.ended > 0) {
    const needed = end.killed > 0 ? `, ${end.killed} needed SIGKILL` : '';
    const processes = end.ended === 1 ? '1 process' : `${end.ended} processes`;
    say(options, `COMMAND left ${processes} running: ended them (SIGTERM${needed}) before closing the lane`);
  }
}

export type EnvFormat = 'shell' | 'json' | 'github' | 'dotenv';

/**
 * `runlane env`: opens a lane for tools that cannot be wrapped and prints its variables. Its
 * lease is held by a detached holder until `runlane close KEY` or --lease-timeout (default 6h).
 */
export async function envCommand(options: LaneOptions, format: EnvFormat): Promise<number> {
  try {
    const plan = planLane(options, process.env, process.cwd(), '6h');
    const { lane, notes } = await openPlanned(plan, options, false);
    for (const note of notes) say(options, note);
    const variables = [
      ...plan.exports.map((variable) => [variable.name, variable.value] as const),
      ['RUNLANE_KEY', plan.key] as const,
    ];
    process.stdout.write(formatVariables(variables, format));
    say(options, `lane ${lane.path} leased to pid ${lane.holderPid}; end it with: runlane close ${plan.key}`);
    return 0;
  } catch (error) {
    process.stderr.write(`runlane: ${errorMessage(error)}\n`);
    return RUNLANE_FAILED;
  }
}

/** Variables in one of the formats tools read: POSIX `export`, JSON, GitHub's env file, dotenv. */
export function formatVariables(variables: readonly (readonly [string, string])[], format: EnvFormat): string {
  if (format === 'json') return `${JSON.stringify(Object.fromEntries(variables), null, 2)}\n`;
  return variables
    .map(([name, value]) => {
      if (format === 'shell') return `export ${name}=${shellQuote(value)}\n`;
      if (format === 'dotenv') return `${name}=${JSON.stringify(value)}\n`;
      // GitHub's file command: a heredoc with a delimiter the value cannot contain.
      let delimiter = 'RUNLANE_EOF';
      while (value.includes(delimiter)) delimiter += '_';
      return `${name}<<${delimiter}\n${value}\n${delimiter}\n`;
    })
    .join('');
}

/** `runlane close KEY`: ends a lane `runlane env` opened, as post would. */
export function closeCommand(
  root: string,
  key: string,
  options: { cleanup: string; failed?: boolean; privileged?: Privileged; quiet?: boolean },
): number {
  if (!isLaneName(key)) throw new SettingError('KEY', key, 'a lane key as `runlane env` printed it (RUNLANE_KEY)');
  if (!(CLEANUPS as readonly string[]).includes(options.cleanup))
    throw new SettingError('--cleanup', options.cleanup, CLEANUPS.join(' | '));
  const layout = new Layout(root);
  let holderPid: number | undefined;
  try {
    holderPid = layout.readMeta(key)?.holderPid;
  } finally {
    layout.close();
  }
  if (holderPid === undefined) throw new Error(`no lane ${key} under ${root}`);
  const { action, reason } = closeActionFor(options.cleanup, options.failed ? 'failure' : 'success');
  const result = closeLane(root, key, { holderPid }, action, reason, options.privileged ?? '');
  const pid = startAfterClose(bundled('cli'), root, key, result, options.privileged ?? '');
  if (!options.quiet) {
    const lanePath = shown(path.join(root, 'lanes', key));
    process.stderr.write(`runlane: lane ${lanePath}: ${describeClose(result, reason, { pid })}; lease released\n`);
  }
  return result.failures.length > 0 ? 1 : 0;
}
