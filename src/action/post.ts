import * as core from '@actions/core';
import { closeActionFor, closeLane } from '../core/lane.js';
import { removeLinks } from '../core/links.js';
import { escapeHtml, writeSummary } from './run.js';
import { getSettings } from './settings.js';
import { loadLaneState } from './state.js';

const SHOWN_FAILURES = 20;

export async function post(): Promise<void> {
  const started = Date.now();
  const lane = loadLaneState();
  if (!lane) {
    core.info('runlane: main made no lane, nothing to clean up');
    return;
  }
  const settings = getSettings();
  const { action, reason } = closeActionFor(settings.cleanup, settings.jobStatus);
  core.startGroup(`runlane: ${action} lane ${lane.key}`);
  for (const problem of removeLinks(lane.links)) core.warning(`runlane: link ${problem}`);
  const result = closeLane(lane.root, lane.key, lane.holderPid, action, reason);
  const took = `${Date.now() - started} ms`;
  let outcome: string;
  if (action === 'remove') {
    outcome = result.removed
      ? `removed in ${took}`
      : `partly removed: ${result.failures.length} paths resisted; the sweep retries them`;
  } else if (action === 'retain') {
    outcome = `kept (${reason}); the sweep's max-age / keep-free policy removes it later`;
  } else {
    outcome = 'left for the sweep (cleanup: defer)';
  }
  core.info(`${lane.lanePath}: ${outcome}`);
  if (!result.released)
    core.warning(`runlane: the lease holder ${lane.holderPid} did not stop; the lease ends with the job`);
  core.endGroup();
  if (result.failures.length > 0) {
    const shown = result.failures.slice(0, SHOWN_FAILURES).map((f) => `  ${f.path}: ${f.code} ${f.message}`);
    const more =
      result.failures.length > SHOWN_FAILURES ? [`  … and ${result.failures.length - SHOWN_FAILURES} more`] : [];
    core.warning(`runlane: could not remove everything in ${lane.lanePath}:\n${[...shown, ...more].join('\n')}`);
  }
  await writeSummary((summary) =>
    summary
      .addHeading('runlane: cleanup', 3)
      .addRaw(`<code>${escapeHtml(lane.lanePath)}</code>: ${escapeHtml(outcome)}`, true),
  );
}
