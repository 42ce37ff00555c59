import path from 'node:path';
import * as core from './toolkit.js';
import { isLaneName } from '../core/root/layout.js';
import { checkLinkPlan, type LinkPlan } from '../core/job/links.js';
import { isWarmKeyHash } from '../core/warm/key.js';
import type { TrustClass } from '../core/lane/ci-identity.js';
import { State } from './constants.js';

const TRUST_CLASSES: readonly TrustClass[] = ['trusted', 'untrusted', 'privileged'];

/** What main hands to post: every state key is read and written here only. */
export interface LaneState {
  root: string;
  key: string;
  lanePath: string;
  holderPid: number;
  links: LinkPlan[];
  /** The run's trust class as main saw it; post parks only if it sees the same. */
  trust: TrustClass;
  /** The resolved warm-key's hash (empty without one): post parks into the slot main claimed from. */
  warmKey: string;
  /**
   * Whether main's save decision (trust class, remote-save, the default branch) lets post
   * upload: post uploads only if main allowed it and post's own decision allows it too.
   */
  upload: boolean;
}

export function saveLaneState(state: LaneState): void {
  core.saveState(State.Root, state.root);
  core.saveState(State.Key, state.key);
  core.saveState(State.LanePath, state.lanePath);
  core.saveState(State.HolderPid, String(state.holderPid));
  core.saveState(State.Links, JSON.stringify(state.links));
  core.saveState(State.Trust, state.trust);
  core.saveState(State.WarmKey, state.warmKey);
  core.saveState(State.Upload, state.upload ? 'allowed' : 'refused');
}

/** Whether main saved a lane at all (it made none when it failed early, or ran a sweep). */
export function hasLaneState(): boolean {
  return core.getState(State.Key) !== '';
}

/** State that post will not act on: it came back changed, from a step or a hostile runner. */
export class StateError extends Error {
  constructor(what: string, value: string, reason: string) {
    super(`refusing the saved state ${what} ${JSON.stringify(value)}: ${reason}; nothing was touched`);
    this.name = 'StateError';
  }
}

/**
 * The lane main made, or undefined if main made none (it failed early, or ran a sweep).
 * Every value is validated like input, and every path is derived again from the root post
 * resolves itself: a state value never names a path post will act on.
 */
export function loadLaneState(root: string, workspace: string | undefined): LaneState | undefined {
  const key = core.getState(State.Key);
  if (key === '') return undefined;
  if (!isLaneName(key)) throw new StateError('key', key, 'not a key runlane makes');
  const savedRoot = core.getState(State.Root);
  if (savedRoot !== root) throw new StateError('root', savedRoot, `post resolves the root to ${root}`);
  const lanePath = path.join(root, 'lanes', key);
  const savedPath = core.getState(State.LanePath);
  if (savedPath !== lanePath) throw new StateError('lane path', savedPath, `the lane of ${key} is ${lanePath}`);
  const pidText = core.getState(State.HolderPid);
  const holderPid = Number(pidText);
  if (!/^\d+$/.test(pidText) || !Number.isSafeInteger(holderPid) || holderPid < 2) {
    throw new StateError('holder pid', pidText, 'not a process id');
  }
  const linksText = core.getState(State.Links) || '[]';
  let links: unknown;
  try {
    links = JSON.parse(linksText);
  } catch {
    throw new StateError('links', linksText, 'not JSON');
  }
  if (!Array.isArray(links)) throw new StateError('links', linksText, 'not a list');
  for (const link of links) {
    const problem = checkLinkPlan(link, workspace, lanePath);
    if (problem) throw new StateError('links', linksText, problem);
  }
  const trust = core.getState(State.Trust);
  if (!TRUST_CLASSES.includes(trust as TrustClass)) throw new StateError('trust', trust, 'not a trust class');
  // A changed hash can only move this run's lane to another slot of the same ref and trust
  // class: the slot's other parts are derived again from the run.
  const warmKey = core.getState(State.WarmKey);
  if (!isWarmKeyHash(warmKey)) throw new StateError('warm key', warmKey, 'not a hash runlane makes');
  const upload = core.getState(State.Upload);
  if (upload !== 'allowed' && upload !== 'refused') throw new StateError('upload', upload, 'allowed | refused');
  return {
    root,
    key,
    lanePath,
    holderPid,
    links: links as LinkPlan[],
    trust: trust as TrustClass,
    warmKey,
    upload: upload === 'allowed',
  };
}
