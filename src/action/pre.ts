import * as core from './toolkit.js';
import { isMarkedRoot } from '../core/root/root.js';
import { shown } from '../core/ops/report.js';
import { humanDuration } from '../core/common/units.js';
import { getSettings } from './settings.js';
import { sweepPhase } from './sweep.js';

/** pre: an opportunistic sweep, bounded in time, so disk is freed before checkout. Nothing essential. */
export async function pre(): Promise<void> {
  const settings = getSettings();
  if (settings.mode === 'sweep') return;
  if (settings.preSweepMs === 0) {
    core.info('runlane: pre-sweep is off');
    return;
  }
  if (!isMarkedRoot(settings.root)) {
    core.info(`runlane: no lanes under ${shown(settings.root)} yet; nothing to sweep`);
    return;
  }
  core.info(`runlane: sweeping orphans for at most ${humanDuration(settings.preSweepMs)}`);
  await sweepPhase(settings, 'pre', settings.preSweepMs);
}
