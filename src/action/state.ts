import * as core from '@actions/core';
import type { LinkPlan } from '../core/links.js';
import { State } from './constants.js';

/** What main hands to post: every state key is read and written here only. */
export interface LaneState {
  root: string;
  key: string;
  lanePath: string;
  holderPid: number;
  links: LinkPlan[];
  /** The warm slot post parks the lane in. */
  slot: string;
}

export function saveLaneState(state: LaneState): void {
  core.saveState(State.Root, state.root);
  core.saveState(State.Key, state.key);
  core.saveState(State.LanePath, state.lanePath);
  core.saveState(State.HolderPid, String(state.holderPid));
  core.saveState(State.Links, JSON.stringify(state.links));
  core.saveState(State.Slot, state.slot);
}

/** The lane main made, or undefined if main made none (it failed early, or ran a sweep). */
export function loadLaneState(): LaneState | undefined {
  const key = core.getState(State.Key);
  if (key === '') return undefined;
  return {
    root: core.getState(State.Root),
    key,
    lanePath: core.getState(State.LanePath),
    holderPid: Number(core.getState(State.HolderPid)) || 0,
    links: JSON.parse(core.getState(State.Links) || '[]') as LinkPlan[],
    slot: core.getState(State.Slot),
  };
}
