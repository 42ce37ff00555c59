import { detectIdentity, type Identity } from '../core/lane/ci-identity.js';

export { slotParts, trustClassOf, type Identity } from '../core/lane/ci-identity.js';

export type Platform = 'github' | 'gitea' | 'forgejo';

/** Which runner runs us: Forgejo sets both FORGEJO_ACTIONS and GITEA_ACTIONS. */
export function platformOf(env: NodeJS.ProcessEnv): Platform {
  if (env.FORGEJO_ACTIONS === 'true') return 'forgejo';
  if (env.GITEA_ACTIONS === 'true') return 'gitea';
  return 'github';
}

/**
 * Who we are, from the runner's GITHUB_* environment (GitHub, Gitea and Forgejo set the same
 * ones). The invocation is the runner's per-job tracking id where it has one (GitHub), else a
 * random nonce, plus the step's id in its job, so two runlane steps in one job get two lanes.
 */
export function runIdentity(env: NodeJS.ProcessEnv, matrix: string): Identity {
  return detectIdentity(env, process.cwd(), { matrix }, 'github');
}
