import * as core from './toolkit.js';
import { closeActionFor, closeLane, describeClose, startAfterClose, type CloseResult } from '../core/lane.js';
import { Layout } from '../core/layout.js';
import { removeLinks } from '../core/links.js';
import { describeFailures, shown } from '../core/report.js';
import { warmSlot } from '../core/warm.js';
import { runIdentity, slotParts } from './identity.js';
import { listTrash, type TrashEntry } from '../core/trash.js';
import { bundled } from './bundles.js';
import { escapeHtml, writeSummary } from './run.js';
import { getSettings } from './settings.js';
import { hasLaneState, loadLaneState, type LaneState } from './state.js';

/**
 * post: park the lane for the next run (warm, after success), or remove (by rename to trash, deleted in the background), keep, or
 * defer the lane; release the lease. Every problem is a warning: post never fails a job.
 */
export async function post(): Promise<void> {
  const started = Date.now();
  if (!hasLaneState()) {
    core.info('runlane: main made no lane, nothing to clean up');
    return;
  }
  const settings = getSettings();
  const lane = loadLaneState(settings.root, settings.workspace) as LaneState;
  // The slot is derived again from the run, never read back from state; a trust class that
  // changed since main (an event file rewritten by a step) parks nothing.
  const identity = runIdentity(process.env, settings.matrix);
  const trustHeld = identity.trust === lane.trust;
  if (settings.warm && !trustHeld) {
    core.warning(
      `runlane: the run's trust class was '${lane.trust}' in main and is '${identity.trust}' now (was the event file changed?); the lane is not parked`,
    );
  }
  const parking = settings.warm && trustHeld && settings.warmIf;
  const { action, reason } = closeActionFor(settings.cleanup, settings.jobStatus, parking);
  const park = parking ? { slot: warmSlot(slotParts(identity)), keep: settings.warmKeep } : undefined;
  core.startGroup(`runlane: ${action} lane ${lane.key}`);
  let result: CloseResult;
  let outcome: string;
  try {
    for (const problem of removeLinks(lane.links)) core.warning(`runlane: link ${shown(problem)}`);
    result = closeLane(lane.root, lane.key, { holderPid: lane.holderPid }, action, reason, settings.privileged, park);
    const pid = startAfterClose(bundled('cli'), lane.root, lane.key, result, settings.privileged);
    outcome = describeClose(result, reason, { took: `${Date.now() - started} ms`, holderPid: lane.holderPid, pid });
    if (settings.warm && trustHeld && !settings.warmIf) core.info('runlane: not parked, because warm-if is false');
    else if (parking && action !== 'park')
      core.info(`runlane: not parked, because the job status is '${settings.jobStatus || 'unknown'}'`);
    core.info(shown(`${lane.lanePath}: ${outcome}`));
  } finally {
    // Closed whatever failed: the log keeps its shape.
    core.endGroup();
  }
  if (result.fallback) {
    core.warning(
      `runlane: could not rename ${lane.lanePath} into the trash (${shown(result.fallback)}); deleted it synchronously instead`,
    );
  }
  if (!result.released)
    core.warning(`runlane: the lease holder ${lane.holderPid} did not stop; the lease ends with the job`);
  if (result.failures.length > 0) {
    core.warning(`runlane: could not delete everything in ${lane.lanePath}:\n${describeFailures(result.failures)}`);
  }
  // Earlier deletions that left something behind: say so on every job, until it is gone.
  const layout = new Layout(lane.root);
  let resisting: TrashEntry[] = [];
  try {
    resisting = listTrash(layout).filter((e) => e.failures.length > 0);
  } catch {
    // A refused trash directory: the warning above or the sweep says so.
  } finally {
    layout.close();
  }
  for (const entry of resisting) {
    core.warning(
      `runlane: the trash entry ${shown(entry.path)} still resists deletion:\n${describeFailures(entry.failures)}`,
    );
  }
  writeSummary((summary) =>
    summary
      .addHeading('runlane: cleanup', 3)
      .addRaw(`<code>${escapeHtml(lane.lanePath)}</code>: ${escapeHtml(outcome)}`, true),
  );
}
