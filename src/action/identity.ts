import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { scopeOf, type RunIdentity } from '../core/key.js';
import type { SlotParts, TrustClass } from '../core/warm.js';

export type Platform = 'github' | 'gitea' | 'forgejo';

/** Which runner runs us: Forgejo sets both FORGEJO_ACTIONS and GITEA_ACTIONS. */
export function platformOf(env: NodeJS.ProcessEnv): Platform {
  if (env.FORGEJO_ACTIONS === 'true') return 'forgejo';
  if (env.GITEA_ACTIONS === 'true') return 'gitea';
  return 'github';
}

interface EventPayload {
  number?: unknown;
  pull_request?: {
    number?: unknown;
    head?: { repo?: { full_name?: unknown } | null };
    base?: { repo?: { full_name?: unknown } };
  };
  repository?: { full_name?: unknown };
}

/** The event payload at GITHUB_EVENT_PATH, or an empty one. */
function eventPayload(env: NodeJS.ProcessEnv): EventPayload {
  if (!env.GITHUB_EVENT_PATH) return {};
  try {
    const value = JSON.parse(fs.readFileSync(env.GITHUB_EVENT_PATH, 'utf8')) as unknown;
    return typeof value === 'object' && value !== null ? (value as EventPayload) : {};
  } catch {
    return {};
  }
}

const PULL_REQUEST_EVENTS = new Set(['pull_request', 'pull_request_review', 'pull_request_review_comment']);
/** Events only people with write access (or the repository's own schedule) can start. */
const TRUSTED_EVENTS = new Set([
  'push',
  'schedule',
  'workflow_dispatch',
  'repository_dispatch',
  'merge_group',
  'release',
  'create',
  'delete',
  'deployment',
  'deployment_status',
  'page_build',
  'registry_package',
  'status',
  'check_run',
  'check_suite',
]);

/**
 * The trust class of a run, from its event: `untrusted` runs a fork's code without secrets
 * (pull_request and its review events from another repository, or one whose head repository
 * is gone); `privileged` has secrets in reach while it may handle a fork's code or an
 * outsider's input (pull_request_target, workflow_run, issue_comment, issues, discussion and
 * any event not known to be trusted); `trusted` is everything only the repository's writers
 * can start (push, schedule, dispatch, same-repository pull requests, ...). Outside Actions
 * (no event name) a run is the machine owner's own: trusted.
 */
export function trustClassOf(eventName: string, payload: EventPayload): TrustClass {
  if (eventName === '') return 'trusted';
  if (PULL_REQUEST_EVENTS.has(eventName)) {
    const head = payload.pull_request?.head?.repo?.full_name;
    const base = payload.pull_request?.base?.repo?.full_name ?? payload.repository?.full_name;
    return typeof head === 'string' && typeof base === 'string' && head === base ? 'trusted' : 'untrusted';
  }
  return TRUSTED_EVENTS.has(eventName) ? 'trusted' : 'privileged';
}

/** The pull request number from the payload, for pull-request events (their ref may be the base's). */
function pullRequestNumber(eventName: string, payload: EventPayload): number | undefined {
  if (!eventName.startsWith('pull_request')) return undefined;
  const number = payload.pull_request?.number ?? payload.number;
  return Number.isSafeInteger(number) ? (number as number) : undefined;
}

export interface Identity extends RunIdentity {
  trust: TrustClass;
  /** `pr:<n>` or the raw ref: what a warm slot is exact over. */
  scopeId: string;
  workflow: string;
  step: string;
}

/**
 * Who we are, from the runner's environment. The invocation id is the runner's per-job
 * tracking id where it has one (GitHub), else a random nonce (Gitea and Forgejo, whose run
 * attempt may be empty or constant), plus the step's id in its job, so two runlane steps in
 * one job get two lanes.
 */
export function runIdentity(env: NodeJS.ProcessEnv, matrix: string): Identity {
  const eventName = env.GITHUB_EVENT_NAME ?? '';
  const payload = eventPayload(env);
  const ref = env.GITHUB_REF ?? '';
  const pr = pullRequestNumber(eventName, payload) ?? Number(/^refs\/pull\/(\d+)\//.exec(ref)?.[1] ?? NaN);
  const step = env.GITHUB_ACTION ?? '';
  return {
    repository: env.GITHUB_REPOSITORY ?? '',
    scope: scopeOf(ref, Number.isSafeInteger(pr) ? pr : undefined),
    scopeId: Number.isSafeInteger(pr) ? `pr:${pr}` : ref,
    trust: trustClassOf(eventName, payload),
    workflow: (env.GITHUB_WORKFLOW_REF ?? '').replace(/@.*$/, '') || (env.GITHUB_WORKFLOW ?? ''),
    runId: env.GITHUB_RUN_ID ?? '',
    runAttempt: env.GITHUB_RUN_ATTEMPT ?? '',
    job: env.GITHUB_JOB ?? '',
    step,
    matrix,
    invocation: `${env.RUNNER_TRACKING_ID || `nonce-${randomBytes(8).toString('hex')}`}/${step}`,
  };
}

/** The warm slot parts of this run, or of a trusted branch's runs (`warm-from`). */
export function slotParts(identity: Identity, branch?: string): SlotParts {
  const base = {
    repository: identity.repository,
    workflow: identity.workflow,
    job: identity.job,
    step: identity.step,
    matrix: identity.matrix,
  };
  return branch === undefined
    ? { ...base, scopeId: identity.scopeId, trust: identity.trust }
    : { ...base, scopeId: `refs/heads/${branch}`, trust: 'trusted' };
}
