import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../core/common/errors.js';
import type { Identity } from '../core/lane/ci-identity.js';
import { lockFilesHash, remoteKeys, remotePaths, remoteService, saveDecision } from '../remote/plan.js';
import { humanBytes } from '../core/common/units.js';
import { STAGING, adoptStaging, dropStaging, runRemote, topLevelNames } from '../remote/remote.js';
import * as core from './toolkit.js';
import { dockerArgs, planExports } from '../core/lane/env-plan.js';
import { shown } from '../core/ops/report.js';
import { laneKey } from '../core/lane/key.js';
import { Layout } from '../core/root/layout.js';
import type { Dir } from '../core/delete/dir.js';
import { openLane } from '../core/job/job.js';
import { makeLinks, planLinks } from '../core/job/links.js';
import { humanDuration } from '../core/common/units.js';
import { warmSlot } from '../core/warm/warm.js';
import { describeWarm, startWarm } from '../core/warm/start.js';
import { resolveWarmKey } from '../core/warm/key.js';
import { bundled } from '../core/common/bundles.js';
import { Outputs } from './constants.js';
import { platformOf, runIdentity, slotParts } from './identity.js';
import { getSettings, type Settings } from './settings.js';
import { saveLaneState } from './state.js';
import { escapeHtml, writeSummary } from './run.js';
import { sweepPhase } from './sweep.js';

export async function main(): Promise<void> {
  const started = Date.now();
  const settings = getSettings();
  if (settings.mode === 'sweep') {
    await sweepPhase(settings, 'main');
    return;
  }
  const plan = planJob(settings);
  const opened = await openJobLane(settings, plan);
  exportToJob(plan);
  publish(settings, plan, opened, started);
}

/** What main will do, computed before anything is created: everything that can be refused is refused here. */
function planJob(settings: Settings) {
  const identity = runIdentity(process.env, settings.matrix);
  const warmKey = settings.warm
    ? resolveWarmKey(settings.warmKey, { env: process.env, workspace: settings.workspace, trust: identity.trust })
    : undefined;
  if (warmKey?.hash) identity.warmKey = warmKey.hash;
  const key = laneKey(settings.keyTemplate, identity);
  const lanePath = new Layout(settings.root).lane(key);
  const exports = planExports(lanePath, settings.presets, settings.env, process.env);
  const links = planLinks(settings.workspace, settings.links, lanePath);
  return { identity, warmKey, key, exports, links };
}
type JobPlan = ReturnType<typeof planJob>;

/** Opens the lane (warm from a parked lane, else from the cache service, else cold) and saves what main decided. */
async function openJobLane(settings: Settings, plan: JobPlan) {
  const { identity, warmKey, key, exports, links } = plan;
  const notes: string[] = [];
  core.startGroup(`runlane: lane ${key}`);
  core.info(`root: ${shown(settings.root)} (from ${settings.rootSource})`);
  core.info(`runner: ${platformOf(process.env)}, scope: ${identity.scope}, trust: ${identity.trust}`);
  if (settings.warm) core.info(`warm slot: ${warmSlot(slotParts(identity))}`);
  if (warmKey?.hash) core.info(shown(`warm key: ${warmKey.described}`));
  const lane = await openLane({
    holderScript: bundled('holder'),
    root: settings.root,
    key,
    meta: {
      repository: identity.repository,
      scope: identity.scope,
      runId: identity.runId,
      runAttempt: identity.runAttempt,
      job: identity.job,
      matrix: settings.matrix.trim(),
      cleanup: settings.cleanup,
      trust: identity.trust,
    },
    workerPid: process.ppid,
    watch: jobEndWatch(process.env),
    leaseMs: settings.leaseTimeoutMs,
    dirs: [...exports.map((variable) => variable.dir), ...links.map((link) => link.target)],
    populate: settings.warm
      ? (layout, laneKey) => startWarm(layout, settings.warmFrom, identity, laneKey, notes, identity.baseBranch)
      : undefined,
  });
  saveLaneState({
    root: settings.root,
    key,
    lanePath: lane.path,
    holderPid: lane.holderPid,
    links,
    trust: identity.trust,
    warmKey: identity.warmKey ?? '',
    // Decided here, before any step of the job runs: a step can rewrite the event payload
    // that the decision reads, and post may only narrow what main decided.
    upload: uploadAllowed(settings, identity),
  });
  core.info(`lane: ${shown(lane.path)}`);
  for (const note of notes) core.info(shown(note));
  // The cache service is the second tier: asked only when no local tier gave a lane.
  const remote = lane.warm ? undefined : await remoteWarm(settings, identity, key);
  const warmText = lane.warm
    ? describeWarm(lane.warm)
    : remote?.restored
      ? remote.text
      : settings.warm
        ? `false (no parked lane to start from${remote ? `; ${remote.text}` : ''}: cold)`
        : 'false (cold lane)';
  core.info(`warm: ${shown(warmText)}`);
  core.info(
    `lease: held by pid ${lane.holderPid} until post, the job's end${settings.leaseTimeoutMs === null ? '' : ` or ${humanDuration(settings.leaseTimeoutMs)}`}`,
  );
  core.endGroup();
  return { lane, remote, warmText };
}

/** The lane's variables into the job's environment, and its links into the work tree. */
function exportToJob({ exports, links }: JobPlan): void {
  core.startGroup('runlane: environment');
  for (const variable of exports) {
    core.exportVariable(variable.name, variable.value);
    core.info(`${variable.name}=${shown(variable.value)}  (${variable.origin})`);
  }
  core.endGroup();

  if (links.length > 0) {
    core.startGroup('runlane: links');
    makeLinks(links);
    for (const link of links) core.info(shown(`${link.link} -> ${link.target} (replaced: ${link.replaces})`));
    core.endGroup();
  }
}

/** The step's outputs and the job summary. */
function publish(
  settings: Settings,
  { identity, key, exports, links }: JobPlan,
  { lane, remote, warmText }: Awaited<ReturnType<typeof openJobLane>>,
  started: number,
): void {
  const docker = dockerArgs(lane.path, exports);
  core.setOutput(Outputs.Path, lane.path);
  core.setOutput(Outputs.Key, key);
  core.setOutput(Outputs.DockerArgs, docker);
  core.setOutput(Outputs.Warm, lane.warm || remote?.restored ? 'true' : 'false');
  core.setOutput(Outputs.WarmSource, lane.warm?.source ?? (remote?.restored ? 'remote' : ''));
  const took = Date.now() - started;
  core.info(`runlane: lane ready in ${took} ms`);

  writeSummary((summary) =>
    summary.addHeading('runlane: lane', 3).addTable([
      [
        { data: 'what', header: true },
        { data: 'value', header: true },
      ],
      ['path', `<code>${escapeHtml(lane.path)}</code>`],
      ['key', `<code>${escapeHtml(key)}</code>`],
      ['scope', escapeHtml(identity.scope)],
      ['cleanup', settings.cleanup],
      ['warm', escapeHtml(warmText)],
      ...exports.map((variable) => [
        `<code>${variable.name}</code>`,
        `<code>${escapeHtml(variable.value)}</code> (${escapeHtml(variable.origin)})`,
      ]),
      ...links.map((link) => [`link`, `<code>${escapeHtml(link.link)}</code> → lane`]),
    ]),
  );
}

/**
 * A warm start from the forge's cache service into the new (empty) lane. It extracts into a
 * staging directory inside the lane and moves the result in only when the whole restore
 * succeeded: a dead, hung or failing service, or a refused archive, leaves a clean cold lane
 * and a warning, never a failed job. Undefined when the remote tier is not asked at all.
 */
async function remoteWarm(
  settings: Settings,
  identity: Identity,
  key: string,
): Promise<{ restored: boolean; text: string } | undefined> {
  const service = remoteService(process.env);
  if (!settings.warm || settings.remote === 'off' || !service) return undefined;
  if (!service.read) return { restored: false, text: 'the cache service is not read (ACTIONS_CACHE_MODE)' };
  // A privileged run (pull_request_target, workflow_run: secrets in reach) never builds on an
  // entry: on Gitea and Forgejo any job that reaches the cache server can write one.
  if (identity.trust === 'privileged')
    return { restored: false, text: 'a privileged run does not restore from the cache service' };
  const paths = remotePaths(settings.presets, settings.remotePaths);
  if (paths.length === 0) return { restored: false, text: 'nothing of these presets is archived (remote-paths)' };
  const keys = remoteKeys(identity, settings.presets, paths, lockFilesHash(settings.presets, settings.workspace));
  // The staging directory is made, adopted and dropped through the opened lane, never by its
  // path, so a process that swapped `lanes` for a symlink cannot turn a drop into a delete
  // elsewhere; the transfer, which needs a path, runs only while the path leads to that lane.
  const layout = new Layout(settings.root);
  let lane: Dir | undefined;
  try {
    lane = layout.dir('lanes').openChild(key);
    return await restoreInto(layout, lane, settings, paths, keys, key);
  } catch (error) {
    const left = lane ? dropStaging(lane) : undefined;
    core.warning(
      `runlane: the remote warm start failed (${errorMessage(error)}); the lane starts cold${left ? `, but ${left}` : ''}`,
    );
    return { restored: false, text: `the cache service failed: ${errorMessage(error)}` };
  } finally {
    lane?.close();
    layout.close();
  }
}

/** The restore itself, into the staging directory of the opened lane, then adopted or dropped. */
async function restoreInto(
  layout: Layout,
  lane: Dir,
  settings: Settings,
  paths: string[],
  keys: { key: string; restoreKeys: string[] },
  key: string,
): Promise<{ restored: boolean; text: string }> {
  // The transfer (a child process, the cache library and tar in it) gets the staging directory
  // as this process holds it open (/proc/<pid>/fd/<n>), never as a path through `lanes`: a
  // process that swaps `lanes` or the lane meanwhile cannot send the extraction elsewhere.
  fs.mkdirSync(lane.at(STAGING));
  const staging = lane.openChild(STAGING);
  let outcome: Awaited<ReturnType<typeof runRemote>>;
  try {
    outcome = await runRemote(
      { op: 'restore', dir: staging.selfForChild(), paths, key: keys.key, restoreKeys: keys.restoreKeys },
      {
        timeoutMs: settings.remoteTimeoutMs,
        maxBytes: settings.remoteMaxBytes,
        maxEntries: settings.remoteMaxEntries,
      },
    );
  } finally {
    staging.close();
  }
  if (outcome.key) {
    try {
      const size = adoptStaging(lane, topLevelNames(paths));
      const rate = outcome.seconds > 0 ? ` (${(size.bytes / 1048576 / outcome.seconds).toFixed(1)} MB/s)` : '';
      // Where it came from and what it cost, for `runlane status` (written under the lease).
      recordOrigin(
        layout,
        key,
        `${outcome.key} (remote, ${humanBytes(size.bytes)} in ${outcome.seconds.toFixed(1)} s${rate})`,
      );
      return {
        restored: true,
        text: `true (restored from the cache service: ${outcome.key}, ${humanBytes(size.bytes)} in ${outcome.seconds.toFixed(1)} s${rate})`,
      };
    } catch (error) {
      outcome.error = `the restored files could not be moved into the lane: ${errorMessage(error)}`;
    }
  }
  const left = dropStaging(lane);
  if (outcome.error) {
    core.warning(
      `runlane: the remote warm start failed (${outcome.error}); the lane starts cold${left ? `, but ${left}` : ''}`,
    );
    return { restored: false, text: `the cache service failed: ${outcome.error}` };
  }
  return { restored: false, text: `nothing in the cache service (${outcome.note ?? 'a miss'})` };
}

function recordOrigin(layout: Layout, key: string, warmFrom: string): void {
  const meta = layout.readMeta(key);
  if (meta) layout.writeMeta({ ...meta, warmFrom });
}

/**
 * Per-job directories whose removal means the job has ended, for runners whose step parent is
 * a long-lived daemon (act_runner and the Forgejo runner in host mode): their RUNNER_TEMP is
 * `<workdir_parent>/<16 hex>/tmp`, and the runner removes the whole `<16 hex>` directory with
 * the job, on cancel too, even when post is skipped. That directory is watched, not
 * RUNNER_TEMP itself, which a step may well empty or remove (`rm -rf "$RUNNER_TEMP"`) while the
 * job goes on; where RUNNER_TEMP has another shape, it is watched itself. On GitHub the worker
 * process's death is the signal, and a step that clears RUNNER_TEMP must not end the lease,
 * so nothing is watched there.
 */
function jobEndWatch(env: NodeJS.ProcessEnv): string[] {
  const temp = env.RUNNER_TEMP?.trim();
  if (platformOf(env) === 'github' || !temp || !path.isAbsolute(temp)) return [];
  const jobDir = path.dirname(temp);
  return path.basename(temp) === 'tmp' && /^[0-9a-f]{16}$/.test(path.basename(jobDir)) ? [jobDir] : [temp];
}

/** Whether this run's post may upload its lane: only when the remote tier is on and main's save decision says so. */
function uploadAllowed(settings: Settings, identity: Identity): boolean {
  if (!settings.warm || settings.remote === 'off' || !remoteService(process.env)) return false;
  return saveDecision(settings.remoteSave, identity, process.env).save;
}
