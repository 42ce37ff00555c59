import os from 'node:os';
import * as core from './toolkit.js';
import { SettingError } from '../core/common/errors.js';
import { parseKeyTemplate, parseMatrix } from '../core/lane/key.js';
import { parseEnvRequests, parseLinkRequests, type EnvRequest, type LinkRequest } from '../core/lane/requests.js';
import { parsePresets } from '../core/lane/presets.js';
import type { Privileged } from '../core/delete/remove.js';
import { checkRoot, chooseRoot } from '../core/root/root.js';
import { parseDuration, parseSpace, type SpaceTarget } from '../core/common/units.js';
import { parseWarmFrom, parseWarmKeep } from '../core/warm/start.js';
import { parseWarmKey, type WarmKeyTemplate } from '../core/warm/key.js';
import { parseWarmMaxSize } from '../core/warm/trim.js';
import { parseRemote, parseRemotePaths, parseRemoteSave, type RemoteSave } from '../remote/plan.js';
import { CLEANUPS, Inputs, MODES, type Cleanup, type Mode } from './constants.js';
import { platformOf, type Platform } from './identity.js';

/** Every setting of the action, validated; built in one place before anything is created. */
export interface Settings {
  mode: Mode;
  root: string;
  rootSource: string;
  presets: string[];
  env: EnvRequest[];
  links: LinkRequest[];
  keyTemplate: string;
  matrix: string;
  cleanup: Cleanup;
  jobStatus: string;
  /** The lease's hard bound on the monotonic clock; null for `none`. */
  leaseTimeoutMs: number | null;
  workspace?: string;
  maxAgeMs: number;
  /** Undefined when turned off (`0`). */
  keepFree?: SpaceTarget;
  dryRun: boolean;
  /** pre's time bound for its sweep; 0 turns it off. */
  preSweepMs: number;
  privileged: Privileged;
  warm: boolean;
  /** Where to start warm from, in order: `same` (claim), `base` or a branch (copy). */
  warmFrom: string[];
  warmKeep: number;
  /** Whether post may park a successful job's lane (`warm-if`); claiming is not affected. */
  warmIf: boolean;
  /** What `warm-key` adds to the slot (resolved in main). */
  warmKey: WarmKeyTemplate;
  /** `warm-max-size`: a parked or uploaded lane is trimmed to this; undefined for `off`. */
  warmMaxBytes?: number;
  /** The remote tier (the forge's cache service): `auto` is on with warm and a configured service. */
  remote: 'auto' | 'off';
  remoteSave: RemoteSave;
  remoteMaxBytes: number;
  /** `remote-max-entries`: a restore of more files, directories and symlinks than this is refused. */
  remoteMaxEntries: number;
  /** Lane-relative paths (and !excludes) that override the presets' selection. */
  remotePaths: string[];
  remoteTimeoutMs: number;
}

/** A size in bytes (`4G`, `512M`; G = GiB); a percentage or `off` is refused. */
function sizeInput(input: string, value: string): number {
  const target = parseSpace(input, value);
  if (!('bytes' in target) || target.bytes <= 0)
    throw new SettingError(input, value, 'a size like 4G, 512M or 1.5T (G = GiB)');
  return target.bytes;
}

/** A whole number of 1 or more (digits, `_` or `,` between groups allowed: 1_000_000). */
function countInput(input: string, value: string): number {
  const text = value.trim();
  const count = /^\d{1,3}([,_]?\d{3})*$|^\d+$/.test(text) ? Number(text.replace(/[,_]/g, '')) : NaN;
  if (!Number.isSafeInteger(count) || count < 1)
    throw new SettingError(input, value, 'a whole number of 1 or more, like 1000000');
  return count;
}

function booleanInput(input: string, fallback: boolean): boolean {
  const value = core.getInput(input).trim().toLowerCase();
  if (value === '') return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new SettingError(input, value, 'true | false');
}

function preSweep(value: string): number {
  const text = value.trim();
  if (text === '') return 10_000;
  if (text === 'off' || text === 'false') return 0;
  if (text === '0')
    throw new SettingError(Inputs.PreSweep, value, 'a duration like 10s or 1m, or off', 'write off to turn it off');
  return parseDuration(Inputs.PreSweep, text);
}

/**
 * The lease's last bound, for `auto`: above the longest a job can run on its runner plus the
 * cancel and post window, so it never cuts a job short. GitHub: a self-hosted job may run
 * 5 days (`timeout-minutes` up to that; the default is 360 minutes), then the cancel (about
 * 10 s) and post. act_runner and the Forgejo runner end a job at their `runner.timeout`
 * (3 h by default), and give post a few minutes after a cancel.
 */
export const AUTO_LEASE_MS: Record<Platform, number> = {
  github: 5 * 86_400_000 + 3_600_000,
  gitea: 3 * 3_600_000 + 1_800_000,
  forgejo: 3 * 3_600_000 + 1_800_000,
};

function leaseTimeout(value: string, platform: Platform): number | null {
  const text = value.trim();
  if (text === '' || text === 'auto') return AUTO_LEASE_MS[platform];
  if (text === 'none') return null;
  return parseDuration(Inputs.LeaseTimeout, text);
}

function keepFree(value: string): SpaceTarget | undefined {
  const target = parseSpace(Inputs.KeepFree, value.trim() || '10%');
  const off = 'bytes' in target ? target.bytes === 0 : target.percent === 0;
  return off ? undefined : target;
}

function oneOf<T extends string>(input: string, allowed: readonly T[], fallback: T): T {
  const value = core.getInput(input).trim();
  if (value === '') return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new SettingError(input, value, allowed.join(' | '));
  }
  return value as T;
}

export function getSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const home = env.HOME || os.homedir();
  const workspace = env.GITHUB_WORKSPACE || undefined;
  const choice = chooseRoot(core.getInput(Inputs.Root), env, home);
  const matrix = core.getInput(Inputs.Matrix);
  parseMatrix(matrix);
  return {
    mode: oneOf(Inputs.Mode, MODES, 'lane'),
    root: checkRoot(choice.path, { home, workspace }),
    rootSource: choice.source,
    presets: parsePresets(core.getInput(Inputs.Presets)),
    env: parseEnvRequests(core.getInput(Inputs.Env)),
    links: parseLinkRequests(core.getInput(Inputs.Link)),
    keyTemplate: parseKeyTemplate(core.getInput(Inputs.Key)),
    matrix,
    cleanup: oneOf(Inputs.Cleanup, CLEANUPS, 'always'),
    jobStatus: core.getInput(Inputs.JobStatus).trim(),
    leaseTimeoutMs: leaseTimeout(core.getInput(Inputs.LeaseTimeout), platformOf(env)),
    workspace,
    maxAgeMs: parseDuration(Inputs.MaxAge, core.getInput(Inputs.MaxAge) || '7d'),
    keepFree: keepFree(core.getInput(Inputs.KeepFree)),
    dryRun: booleanInput(Inputs.DryRun, false),
    preSweepMs: preSweep(core.getInput(Inputs.PreSweep)),
    warm: booleanInput(Inputs.Warm, false),
    warmFrom: parseWarmFrom(Inputs.WarmFrom, core.getInput(Inputs.WarmFrom)),
    warmKeep: parseWarmKeep(Inputs.WarmKeep, core.getInput(Inputs.WarmKeep)),
    warmIf: booleanInput(Inputs.WarmIf, true),
    warmKey: parseWarmKey(Inputs.WarmKey, core.getInput(Inputs.WarmKey)),
    warmMaxBytes: parseWarmMaxSize(Inputs.WarmMaxSize, core.getInput(Inputs.WarmMaxSize)),
    remote: parseRemote(Inputs.Remote, core.getInput(Inputs.Remote)),
    remoteSave: parseRemoteSave(Inputs.RemoteSave, core.getInput(Inputs.RemoteSave)),
    remoteMaxBytes: sizeInput(Inputs.RemoteMaxSize, core.getInput(Inputs.RemoteMaxSize) || '4G'),
    remoteMaxEntries: countInput(Inputs.RemoteMaxEntries, core.getInput(Inputs.RemoteMaxEntries) || '1000000'),
    remotePaths: parseRemotePaths(Inputs.RemotePaths, core.getInput(Inputs.RemotePaths)),
    remoteTimeoutMs: parseDuration(Inputs.RemoteTimeout, core.getInput(Inputs.RemoteTimeout) || '10m'),
    privileged: oneOf<Privileged | 'none'>(Inputs.PrivilegedCleanup, ['none', 'sudo'], 'none') === 'sudo' ? 'sudo' : '',
  };
}
