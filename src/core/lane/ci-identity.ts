import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { scopeOf, type RunIdentity } from './key.js';
import { readJsonNoFollow } from '../delete/open-regular.js';

/** A run's identity, from whichever CI system runs it: what a lane's key and warm slot are made of. */
export interface Identity extends RunIdentity {
  /** Which system it came from: `github`, `gitlab`, `jenkins`, `buildkite`, `woodpecker`, `drone`, `shell`. */
  system: string;
  trust: TrustClass;
  /** `pr:<n>` or a raw ref (`refs/heads/main`, `refs/tags/v1`): what a warm slot is exact over. */
  scopeId: string;
  workflow: string;
  step: string;
  /** The resolved `warm-key` (see warm-key.ts): part of the warm slot and the remote keys. */
  warmKey?: string;
  /** A pull request's base branch, for `warm-from: base`. */
  baseBranch?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** What one CI system says about a run, before the common parts are derived. */
interface Reading {
  repository: string;
  pr?: string;
  branch?: string;
  tag?: string;
  runId: string;
  runAttempt: string;
  job: string;
  workflow?: string;
  step?: string;
  trust: TrustClass;
  base?: string;
  /** Something unique to this job (a job id), if the system has one. */
  invocation?: string;
}

interface CiSystem {
  name: string;
  detect: (env: Env) => boolean;
  read: (env: Env, cwd: string) => Reading;
}

const pick = (...values: (string | undefined)[]) => values.find((value) => value !== undefined && value !== '') ?? '';
const number = (value: string | undefined) => (value && /^\d+$/.test(value) ? value : undefined);

/**
 * The CI systems runlane knows, in the order they are tried (the README lists the variables
 * read for each). A pull request from another repository is `untrusted` wherever the system
 * says so; where it cannot tell (Woodpecker, Drone), every pull request is.
 */
const SYSTEMS: readonly CiSystem[] = [
  {
    name: 'github',
    detect: (env) => env.GITHUB_ACTIONS === 'true' || env.GITEA_ACTIONS === 'true' || env.FORGEJO_ACTIONS === 'true',
    read: (env) => githubReading(env),
  },
  {
    name: 'gitlab',
    detect: (env) => env.GITLAB_CI === 'true',
    read: (env) => ({
      repository: pick(env.CI_PROJECT_PATH),
      pr: number(env.CI_MERGE_REQUEST_IID),
      branch: env.CI_COMMIT_BRANCH,
      tag: env.CI_COMMIT_TAG,
      runId: pick(env.CI_PIPELINE_ID),
      runAttempt: '',
      job: pick(env.CI_JOB_NAME),
      invocation: env.CI_JOB_ID,
      base: env.CI_MERGE_REQUEST_TARGET_BRANCH_NAME,
      trust:
        env.CI_MERGE_REQUEST_IID && env.CI_MERGE_REQUEST_SOURCE_PROJECT_ID !== env.CI_MERGE_REQUEST_PROJECT_ID
          ? 'untrusted'
          : 'trusted',
    }),
  },
  {
    name: 'buildkite',
    detect: (env) => env.BUILDKITE === 'true',
    read: (env) => {
      const pr = number(env.BUILDKITE_PULL_REQUEST);
      return {
        repository: pick(
          env.BUILDKITE_ORGANIZATION_SLUG && env.BUILDKITE_PIPELINE_SLUG
            ? `${env.BUILDKITE_ORGANIZATION_SLUG}/${env.BUILDKITE_PIPELINE_SLUG}`
            : undefined,
          env.BUILDKITE_PIPELINE_SLUG,
        ),
        pr,
        branch: env.BUILDKITE_BRANCH,
        tag: env.BUILDKITE_TAG,
        runId: pick(env.BUILDKITE_BUILD_NUMBER),
        runAttempt: pick(env.BUILDKITE_RETRY_COUNT),
        job: pick(env.BUILDKITE_STEP_KEY, env.BUILDKITE_LABEL),
        invocation: env.BUILDKITE_JOB_ID,
        base: env.BUILDKITE_PULL_REQUEST_BASE_BRANCH,
        trust:
          pr && env.BUILDKITE_PULL_REQUEST_REPO && env.BUILDKITE_PULL_REQUEST_REPO !== env.BUILDKITE_REPO
            ? 'untrusted'
            : 'trusted',
      };
    },
  },
  {
    name: 'jenkins',
    detect: (env) => Boolean(env.JENKINS_URL && env.BUILD_NUMBER),
    read: (env) => {
      const branch = pick(env.BRANCH_NAME, env.GIT_BRANCH?.replace(/^origin\//, ''));
      const job = pick(env.JOB_NAME);
      return {
        // A multibranch job's name ends in its branch; the repository is what comes before.
        repository:
          env.BRANCH_NAME && job.endsWith(`/${env.BRANCH_NAME}`) ? job.slice(0, -env.BRANCH_NAME.length - 1) : job,
        pr: number(env.CHANGE_ID),
        branch: env.CHANGE_ID ? undefined : branch,
        tag: env.TAG_NAME,
        runId: pick(env.BUILD_NUMBER),
        runAttempt: '',
        job: pick(env.STAGE_NAME, env.JOB_BASE_NAME),
        invocation: env.BUILD_TAG,
        base: env.CHANGE_TARGET,
        trust: env.CHANGE_ID && env.CHANGE_FORK ? 'untrusted' : 'trusted',
      };
    },
  },
  {
    name: 'woodpecker',
    detect: (env) => env.CI === 'woodpecker',
    read: (env) => {
      const pr = number(env.CI_COMMIT_PULL_REQUEST);
      return {
        repository: pick(env.CI_REPO),
        pr,
        branch: env.CI_COMMIT_BRANCH,
        tag: env.CI_COMMIT_TAG,
        runId: pick(env.CI_PIPELINE_NUMBER),
        runAttempt: '',
        job: pick(env.CI_STEP_NAME, env.CI_WORKFLOW_NAME),
        base: pr ? env.CI_COMMIT_TARGET_BRANCH : undefined,
        trust: pr ? 'untrusted' : 'trusted',
      };
    },
  },
  {
    name: 'drone',
    detect: (env) => env.DRONE === 'true',
    read: (env) => {
      const pr = number(env.DRONE_PULL_REQUEST);
      return {
        repository: pick(env.DRONE_REPO),
        pr,
        branch: env.DRONE_BRANCH,
        tag: env.DRONE_TAG,
        runId: pick(env.DRONE_BUILD_NUMBER),
        runAttempt: '',
        job: pick(env.DRONE_STEP_NAME, env.DRONE_STAGE_NAME),
        base: pr ? env.DRONE_TARGET_BRANCH : undefined,
        trust: pr ? 'untrusted' : 'trusted',
      };
    },
  },
  { name: 'shell', detect: () => true, read: (_, cwd) => shellReading(cwd) },
];

/** Overrides for a run without a CI system's variables (`runlane run --scope/--run/--job`). */
export interface IdentityOverrides {
  scope?: string;
  run?: string;
  job?: string;
  matrix?: string;
}

/**
 * Who runs us: the first CI system whose variables are set (GitHub Actions and its Gitea and
 * Forgejo kin, GitLab CI, Buildkite, Jenkins, Woodpecker, Drone), else a plain shell (the git
 * repository and branch of `cwd`, a fresh run id). Every value stays raw here: the key and
 * the slot sanitise and hash them.
 */
/**
 * `--scope` as a detected scope would read: `pr:N` and `refs/...` as given, a bare name as the
 * branch it names (`main` is `refs/heads/main`), so a run with `--scope main` shares the warm
 * slot of a run that detected branch main, and `warm-from` finds it.
 */
export function canonicalScope(scope: string): string {
  return /^pr:\d+$/.test(scope) || scope.startsWith('refs/') ? scope : `refs/heads/${scope}`;
}

export function detectIdentity(env: Env, cwd: string, overrides: IdentityOverrides = {}, only?: string): Identity {
  const system = SYSTEMS.find((candidate) => (only ? candidate.name === only : candidate.detect(env))) as CiSystem;
  const reading = system.read(env, cwd);
  const scopeId = overrides.scope
    ? canonicalScope(overrides.scope)
    : reading.pr
      ? `pr:${reading.pr}`
      : reading.tag
        ? `refs/tags/${reading.tag}`
        : reading.branch
          ? reading.branch.startsWith('refs/')
            ? reading.branch
            : `refs/heads/${reading.branch}`
          : '';
  const step = reading.step ?? '';
  const nonce = `nonce-${randomBytes(8).toString('hex')}`;
  return {
    system: system.name,
    repository: reading.repository,
    scope: /^pr:\d+$/.test(scopeId) ? `pr-${scopeId.slice(3)}` : scopeOf(scopeId),
    scopeId,
    trust: reading.trust,
    workflow: reading.workflow ?? '',
    runId: overrides.run ?? (reading.runId || nonce.slice(6)),
    runAttempt: reading.runAttempt,
    job: overrides.job ?? reading.job,
    step,
    matrix: overrides.matrix ?? '',
    invocation: `${reading.invocation || nonce}/${step}`,
    baseBranch: reading.base || undefined,
  };
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
function eventPayload(env: Env): EventPayload {
  if (!env.GITHUB_EVENT_PATH) return {};
  // Read as metadata is: a job's earlier steps can put a FIFO or a device where the file was.
  const value = readJsonNoFollow(env.GITHUB_EVENT_PATH);
  return typeof value === 'object' && value !== null ? (value as EventPayload) : {};
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
 * The trust class of an Actions run, from its event: `untrusted` runs a fork's code without
 * secrets (pull_request and its review events from another repository, or one whose head
 * repository is gone); `privileged` has secrets in reach while it may handle a fork's code or
 * an outsider's input (pull_request_target, workflow_run, issue_comment, issues, discussion
 * and any event not known to be trusted); `trusted` is everything only the repository's
 * writers can start. Without an event name a run is the machine owner's own: trusted.
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

/** GitHub Actions and the Gitea and Forgejo runners, which set the same GITHUB_* variables. */
function githubReading(env: Env): Reading {
  const eventName = env.GITHUB_EVENT_NAME ?? '';
  const payload = eventPayload(env);
  const ref = env.GITHUB_REF ?? '';
  const fromPayload = eventName.startsWith('pull_request')
    ? (payload.pull_request?.number ?? payload.number)
    : undefined;
  const pr = Number.isSafeInteger(fromPayload) ? String(fromPayload) : /^refs\/pull\/(\d+)\//.exec(ref)?.[1];
  return {
    repository: env.GITHUB_REPOSITORY ?? '',
    pr,
    branch: ref.startsWith('refs/tags/') ? undefined : ref,
    tag: ref.startsWith('refs/tags/') ? ref.slice('refs/tags/'.length) : undefined,
    runId: env.GITHUB_RUN_ID ?? '',
    runAttempt: env.GITHUB_RUN_ATTEMPT ?? '',
    job: env.GITHUB_JOB ?? '',
    workflow: (env.GITHUB_WORKFLOW_REF ?? '').replace(/@.*$/, '') || (env.GITHUB_WORKFLOW ?? ''),
    step: env.GITHUB_ACTION ?? '',
    invocation: env.RUNNER_TRACKING_ID,
    base: env.GITHUB_BASE_REF,
    trust: trustClassOf(eventName, payload),
  };
}

/** A plain shell: the git repository (its origin, else its directory name) and branch of `cwd`. */
function shellReading(cwd: string): Reading {
  const git = (...args: string[]) => {
    const out = spawnSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.status === 0 ? out.stdout.trim() : '';
  };
  const top = git('rev-parse', '--show-toplevel');
  const origin = top ? git('config', '--get', 'remote.origin.url') : '';
  const repository = origin
    ? origin.replace(/\.git$/, '').replace(/^.*[:/]([^/:]+\/[^/:]+)$/, '$1')
    : top.split('/').pop() || cwd.split('/').pop() || 'local';
  const branch = top ? git('symbolic-ref', '--quiet', '--short', 'HEAD') : '';
  return { repository, branch: branch || undefined, runId: '', runAttempt: '', job: 'local', trust: 'trusted' };
}

/** The warm slot parts of a run, or of a branch's trusted runs (`warm-from`). */
export function slotParts(identity: Identity, branch?: string): SlotParts {
  const base = {
    repository: identity.repository,
    workflow: identity.workflow,
    job: identity.job,
    step: identity.step,
    matrix: identity.matrix,
    warmKey: identity.warmKey,
  };
  return branch === undefined
    ? { ...base, scopeId: identity.scopeId, trust: identity.trust }
    : { ...base, scopeId: `refs/heads/${branch}`, trust: 'trusted' };
}

/** Who a run's code and inputs come from; warm lanes never flow to a more trusted class (README, Security model). */
export type TrustClass = 'trusted' | 'untrusted' | 'privileged';

/** What a warm slot is exact over: every raw value, unshortened, and the run's trust class. */
export interface SlotParts {
  repository: string;
  /** `pr:<number>` for pull-request runs, else the raw ref (`refs/heads/Main`, `refs/tags/v1`). */
  scopeId: string;
  trust: TrustClass;
  /** The workflow file (GITHUB_WORKFLOW_REF without its `@ref`), else the workflow's name. */
  workflow: string;
  job: string;
  /** The step's identity in its job (GITHUB_ACTION), so two runlane steps never share a slot. */
  step: string;
  matrix: string;
  /** The resolved `warm-key` (a hash), when the user adds one: it only ever narrows the slot. */
  warmKey?: string;
}
