import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { scopeOf, type RunIdentity } from '../core/key.js';

export type Platform = 'github' | 'gitea' | 'forgejo';

/** Which runner runs us: Forgejo sets both FORGEJO_ACTIONS and GITEA_ACTIONS. */
export function platformOf(env: NodeJS.ProcessEnv): Platform {
  if (env.FORGEJO_ACTIONS === 'true') return 'forgejo';
  if (env.GITEA_ACTIONS === 'true') return 'gitea';
  return 'github';
}

/** The pull request number from the event payload, for events whose ref is not refs/pull/N. */
function pullRequestNumber(env: NodeJS.ProcessEnv): number | undefined {
  if (!env.GITHUB_EVENT_NAME?.startsWith('pull_request') || !env.GITHUB_EVENT_PATH) return undefined;
  try {
    const event = JSON.parse(fs.readFileSync(env.GITHUB_EVENT_PATH, 'utf8')) as {
      number?: unknown;
      pull_request?: { number?: unknown };
    };
    const number = event.pull_request?.number ?? event.number;
    return Number.isSafeInteger(number) ? (number as number) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Who we are, from the runner's environment. The invocation id is the runner's per-job
 * tracking id where it has one (GitHub), else a random nonce (Gitea and Forgejo, whose run
 * attempt may be empty or constant).
 */
export function runIdentity(env: NodeJS.ProcessEnv, matrix: string): RunIdentity {
  return {
    repository: env.GITHUB_REPOSITORY ?? '',
    scope: scopeOf(env.GITHUB_REF ?? '', pullRequestNumber(env)),
    runId: env.GITHUB_RUN_ID ?? '',
    runAttempt: env.GITHUB_RUN_ATTEMPT ?? '',
    job: env.GITHUB_JOB ?? '',
    matrix,
    invocation: env.RUNNER_TRACKING_ID || `nonce-${randomBytes(8).toString('hex')}`,
  };
}
