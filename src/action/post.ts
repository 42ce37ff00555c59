import path from 'node:path';
import * as core from './toolkit.js';
import type { Identity } from '../core/lane/ci-identity.js';
import { selectArchived } from '../remote/select.js';
import { lockFilesHash, remoteKeys, remotePaths, remoteService, saveDecision } from '../remote/plan.js';
import { Dir, MAX_DEPTH } from '../core/delete/dir.js';
import { humanBytes } from '../core/common/units.js';
import { runRemote } from '../remote/remote.js';
import { closeActionFor, closeLane, describeClose, startAfterClose, type CloseResult } from '../core/job/job.js';
import { stopHolder } from '../core/lease/holder.js';
import { Layout } from '../core/root/layout.js';
import { removeLinks } from '../core/job/links.js';
import { describeFailures, shown } from '../core/ops/report.js';
import { warmSlot } from '../core/warm/warm.js';
import { runIdentity, slotParts } from './identity.js';
import { describeTrim, trimForPark } from '../core/warm/trim.js';
import { errorMessage } from '../core/common/errors.js';
import { listTrash, type TrashEntry } from '../core/root/trash.js';
import { bundled } from '../core/common/bundles.js';
import { escapeHtml, writeSummary } from './run.js';
import { getSettings, type Settings } from './settings.js';
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
  try {
    await closeLaneOfJob(settings, lane, started);
  } catch (error) {
    // Whatever failed (an upload's temporary directory on a full disk, a refused layout), the
    // lease ends with post: the lane is then an orphan the sweep reaps, not a "live" lane on
    // the very disk that is full.
    const released = stopHolder(lane.holderPid, path.join(lane.root, 'locks', `${lane.key}.lock`));
    throw new Error(
      `${errorMessage(error)}; ${released ? 'its lease is released, so the sweep reaps the lane' : `the lease holder ${lane.holderPid} did not stop; the lease ends with the job`}`,
    );
  }
}

/** Post's work once the lane's state is loaded: trim, upload, then close (park, remove, keep, defer). */
async function closeLaneOfJob(settings: Settings, lane: LaneState, started: number): Promise<void> {
  // The slot is derived again from the run, never read back from state; a trust class that
  // changed since main (an event file rewritten by a step) parks nothing.
  const identity = runIdentity(process.env, settings.matrix);
  if (lane.warmKey) identity.warmKey = lane.warmKey;
  const trustHeld = identity.trust === lane.trust;
  if (settings.warm && !trustHeld) {
    core.warning(
      `runlane: the run's trust class was '${lane.trust}' in main and is '${identity.trust}' now (was the event file changed?); the lane is not parked`,
    );
  }
  const parking = settings.warm && trustHeld && settings.warmIf;
  let { action, reason } = closeActionFor(settings.cleanup, settings.jobStatus, parking);
  const park = parking ? { slot: warmSlot(slotParts(identity)), keep: settings.warmKeep } : undefined;
  // Trimmed, then uploaded, before the lane is parked or removed, while its lease still holds it.
  const upload = settings.jobStatus === 'success' ? uploadPlan(settings, identity, lane, trustHeld) : undefined;
  const trim = action === 'park' || upload?.paths ? trimWarm(settings.warmMaxBytes, lane.root, lane.key) : undefined;
  const trimmed = trim?.text;
  if (trim?.hidden && action === 'park') {
    ({ action, reason } = closeActionFor(settings.cleanup, settings.jobStatus, false));
    core.warning(`runlane: the warm lane was ${trim.text}`);
  }
  const uploaded = upload ? await remoteSave(settings, identity, lane, upload) : undefined;
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
  warnAfterClose(lane, result);
  writeSummary((summary) =>
    summary
      .addHeading('runlane: cleanup', 3)
      .addRaw(`<code>${escapeHtml(lane.lanePath)}</code>: ${escapeHtml(outcome)}`, true)
      .addRaw(trimmed ? `<p>warm size: ${escapeHtml(trimmed)}</p>` : '', true)
      .addRaw(uploaded ? `<p>cache service: ${escapeHtml(uploaded)}</p>` : '', true),
  );
}

/** What the close left undone, as warnings: a synchronous fallback, a holder, files, old trash. */
function warnAfterClose(lane: LaneState, result: CloseResult): void {
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
}

/**
 * Trims the lane to `warm-max-size` (see trim.ts) before it is parked or uploaded. Its result
 * is logged; a failure is a warning and the lane is parked as it is.
 */
function trimWarm(
  maxBytes: number | undefined,
  root: string,
  key: string,
): { text: string; hidden: boolean } | undefined {
  if (maxBytes === undefined) return undefined;
  try {
    const result = trimForPark(root, key, maxBytes);
    if (!result) return undefined;
    const text = describeTrim(result, maxBytes);
    if (result.hidden) return { text, hidden: true };
    if (result.removedUsed > 0) core.notice(`runlane: the warm lane was ${text}`);
    else core.info(`runlane: warm lane ${text}`);
    return { text, hidden: false };
  } catch (error) {
    core.warning(`runlane: the lane could not be trimmed to warm-max-size: ${errorMessage(error)}`);
    return undefined;
  }
}

/** What post would upload: the paths, or why nothing (undefined: the remote tier is not on). */
type UploadPlan = { paths: string[]; why?: undefined } | { paths?: undefined; why: string };

function uploadPlan(
  settings: Settings,
  identity: Identity,
  lane: LaneState,
  trustHeld: boolean,
): UploadPlan | undefined {
  const service = remoteService(process.env);
  if (!settings.warm || settings.remote === 'off' || !service) return undefined;
  if (!service.write) return { why: 'the cache service is not written (ACTIONS_CACHE_MODE)' };
  // Post may only narrow main's decision: the trust class and the save decision main made
  // before any step ran must both still allow it (a step can rewrite the event payload).
  if (!trustHeld) return { why: `the run's trust class was '${lane.trust}' in main and is '${identity.trust}' now` };
  const decision = saveDecision(settings.remoteSave, identity, process.env);
  if (!decision.save) return { why: decision.why };
  if (!lane.upload) return { why: 'main decided this run uploads nothing (its event payload changed since?)' };
  const paths = remotePaths(settings.presets, settings.remotePaths);
  return paths.length === 0 ? undefined : { paths };
}

/**
 * Uploads the lane's archived paths to the forge's cache service, when this run may (never an
 * untrusted run; `remote-save`), the service takes writes, and the paths fit `remote-max-size`.
 * Its cost (size, seconds) is logged. Failure is a warning: the job's result stands.
 */
async function remoteSave(
  settings: Settings,
  identity: Identity,
  laneState: LaneState,
  plan: UploadPlan,
): Promise<string | undefined> {
  if (!plan.paths) {
    core.info(`runlane: not uploaded to the cache service: ${plan.why}`);
    return `not uploaded: ${plan.why}`;
  }
  // The lane is reached through opened directories, never by its path (see main's restore):
  // the transfer gets the lane as this process holds it open (/proc/<pid>/fd/<n>), and the
  // archive holds what selectArchived found through it, never following a symlink.
  const layout = new Layout(laneState.root);
  try {
    const lane = layout.dir('lanes').openChild(laneState.key);
    try {
      return await uploadFrom(lane, settings, identity, plan.paths);
    } finally {
      lane.close();
    }
  } finally {
    layout.close();
  }
}

async function uploadFrom(lane: Dir, settings: Settings, identity: Identity, paths: string[]): Promise<string> {
  const selection = selectArchived(lane, paths);
  let text: string | undefined;
  if (selection.members.length === 0) text = 'not uploaded: nothing in the lane matches the archived paths';
  else if (selection.problem)
    text = `not uploaded: a restore would refuse the archive (${selection.problem}); nothing is uploaded that no host can use`;
  else if (selection.hidden > 0)
    text = `not uploaded: the archived paths hold ${selection.hidden} director${selection.hidden === 1 ? 'y' : 'ies'} runlane cannot see into (unreadable, or nested ${MAX_DEPTH} levels deep), so their size is unknown`;
  else if (selection.bytes > settings.remoteMaxBytes)
    text = `not uploaded: the archived paths hold ${humanBytes(selection.bytes)}, over remote-max-size (${humanBytes(settings.remoteMaxBytes)})`;
  if (text) {
    core.notice(`runlane: ${text}`);
    return text;
  }
  const size = selection.bytes;
  const keys = remoteKeys(identity, settings.presets, paths, lockFilesHash(settings.presets, settings.workspace));
  core.startGroup('runlane: upload to the cache service');
  try {
    const outcome = await runRemote(
      { op: 'save', dir: lane.selfForChild(), paths, key: keys.key, restoreKeys: [], members: selection.members },
      { timeoutMs: settings.remoteTimeoutMs, maxBytes: settings.remoteMaxBytes },
    );
    if (outcome.error) {
      core.warning(`runlane: the upload to the cache service failed: ${outcome.error}`);
      return `upload failed: ${outcome.error}`;
    }
    const done = outcome.key
      ? `uploaded ${outcome.key} (${humanBytes(size)} before compression) in ${outcome.seconds.toFixed(1)} s`
      : `not uploaded: ${outcome.note ?? 'nothing to upload'}`;
    core.info(`runlane: ${done}`);
    return done;
  } finally {
    core.endGroup();
  }
}
