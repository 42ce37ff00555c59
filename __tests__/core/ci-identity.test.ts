import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { detectIdentity } from '../../src/core/lane/ci-identity.js';
import { DEFAULT_KEY_TEMPLATE, laneKey } from '../../src/core/lane/key.js';
import { isLaneName } from '../../src/core/root/layout.js';

/** Recorded environment sets, one per CI system (only the variables runlane reads, and noise). */
const CASES: [string, Record<string, string>, Record<string, unknown>][] = [
  [
    'gitlab merge request from a fork',
    {
      GITLAB_CI: 'true',
      CI: 'true',
      CI_PROJECT_PATH: 'acme/widgets',
      CI_MERGE_REQUEST_IID: '42',
      CI_MERGE_REQUEST_PROJECT_ID: '7',
      CI_MERGE_REQUEST_SOURCE_PROJECT_ID: '99',
      CI_MERGE_REQUEST_TARGET_BRANCH_NAME: 'main',
      CI_PIPELINE_ID: '5001',
      CI_JOB_NAME: 'test: [linux]',
      CI_JOB_ID: '77001',
    },
    {
      system: 'gitlab',
      repository: 'acme/widgets',
      scopeId: 'pr:42',
      scope: 'pr-42',
      runId: '5001',
      job: 'test: [linux]',
      trust: 'untrusted',
      baseBranch: 'main',
    },
  ],
  [
    'gitlab branch pipeline',
    {
      GITLAB_CI: 'true',
      CI_PROJECT_PATH: 'acme/widgets',
      CI_COMMIT_BRANCH: 'feature/x',
      CI_PIPELINE_ID: '5002',
      CI_JOB_NAME: 'build',
      CI_JOB_ID: '77002',
    },
    { system: 'gitlab', scopeId: 'refs/heads/feature/x', trust: 'trusted', runId: '5002' },
  ],
  [
    'jenkins multibranch pull request from a fork',
    {
      JENKINS_URL: 'https://ci/',
      BUILD_NUMBER: '12',
      JOB_NAME: 'acme/widgets/PR-42',
      BRANCH_NAME: 'PR-42',
      CHANGE_ID: '42',
      CHANGE_FORK: 'mallory',
      CHANGE_TARGET: 'main',
      STAGE_NAME: 'Test',
      BUILD_TAG: 'jenkins-acme-widgets-PR-42-12',
    },
    {
      system: 'jenkins',
      repository: 'acme/widgets',
      scopeId: 'pr:42',
      runId: '12',
      job: 'Test',
      trust: 'untrusted',
      baseBranch: 'main',
    },
  ],
  [
    'jenkins branch',
    {
      JENKINS_URL: 'https://ci/',
      BUILD_NUMBER: '13',
      JOB_NAME: 'acme/widgets/main',
      BRANCH_NAME: 'main',
      JOB_BASE_NAME: 'main',
    },
    { system: 'jenkins', repository: 'acme/widgets', scopeId: 'refs/heads/main', trust: 'trusted' },
  ],
  [
    'buildkite pull request from a fork, retried',
    {
      BUILDKITE: 'true',
      BUILDKITE_ORGANIZATION_SLUG: 'acme',
      BUILDKITE_PIPELINE_SLUG: 'widgets',
      BUILDKITE_PULL_REQUEST: '42',
      BUILDKITE_PULL_REQUEST_REPO: 'git://github.com/mallory/widgets.git',
      BUILDKITE_REPO: 'git@github.com:acme/widgets.git',
      BUILDKITE_BRANCH: 'mallory:fix',
      BUILDKITE_BUILD_NUMBER: '900',
      BUILDKITE_STEP_KEY: 'test',
      BUILDKITE_RETRY_COUNT: '1',
      BUILDKITE_JOB_ID: 'uuid-1',
    },
    {
      system: 'buildkite',
      repository: 'acme/widgets',
      scopeId: 'pr:42',
      runId: '900',
      runAttempt: '1',
      job: 'test',
      trust: 'untrusted',
    },
  ],
  [
    'buildkite branch, no pull request',
    {
      BUILDKITE: 'true',
      BUILDKITE_PIPELINE_SLUG: 'widgets',
      BUILDKITE_PULL_REQUEST: 'false',
      BUILDKITE_BRANCH: 'main',
      BUILDKITE_BUILD_NUMBER: '901',
      BUILDKITE_LABEL: ':test: Test',
    },
    { system: 'buildkite', repository: 'widgets', scopeId: 'refs/heads/main', job: ':test: Test', trust: 'trusted' },
  ],
  [
    'woodpecker pull request',
    {
      CI: 'woodpecker',
      CI_REPO: 'acme/widgets',
      CI_COMMIT_PULL_REQUEST: '42',
      CI_COMMIT_TARGET_BRANCH: 'main',
      CI_COMMIT_BRANCH: 'main',
      CI_PIPELINE_NUMBER: '31',
      CI_STEP_NAME: 'test',
    },
    { system: 'woodpecker', scopeId: 'pr:42', runId: '31', job: 'test', trust: 'untrusted', baseBranch: 'main' },
  ],
  [
    'drone tag',
    {
      DRONE: 'true',
      CI: 'true',
      DRONE_REPO: 'acme/widgets',
      DRONE_TAG: 'v1.2.0',
      DRONE_BUILD_NUMBER: '8',
      DRONE_STEP_NAME: 'release',
    },
    { system: 'drone', scopeId: 'refs/tags/v1.2.0', scope: 'tag-v1.2.0', runId: '8', job: 'release', trust: 'trusted' },
  ],
  [
    'github actions pull_request',
    {
      GITHUB_ACTIONS: 'true',
      GITHUB_REPOSITORY: 'acme/widgets',
      GITHUB_REF: 'refs/pull/42/merge',
      GITHUB_RUN_ID: '1000',
      GITHUB_RUN_ATTEMPT: '2',
      GITHUB_JOB: 'build',
      GITHUB_BASE_REF: 'main',
      RUNNER_TRACKING_ID: 'github_x',
    },
    { system: 'github', scopeId: 'pr:42', runId: '1000', runAttempt: '2', job: 'build', baseBranch: 'main' },
  ],
];

describe('identity without GitHub', () => {
  it.each(CASES)('%s', (_, env, expected) => {
    expect(detectIdentity(env, '/')).toMatchObject(expected);
  });

  it('a plain shell: the git repository, its branch, a fresh run id each time', () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-git-'));
    try {
      const git = (...args: string[]) => spawnSync('git', args, { cwd: repo });
      git('init', '-q', '-b', 'topic/y');
      git('remote', 'add', 'origin', 'git@example.com:acme/widgets.git');
      const sub = path.join(repo, 'sub');
      fs.mkdirSync(sub);
      const a = detectIdentity({}, sub);
      const b = detectIdentity({}, sub);
      expect(a).toMatchObject({
        system: 'shell',
        repository: 'acme/widgets',
        scopeId: 'refs/heads/topic/y',
        job: 'local',
        trust: 'trusted',
      });
      expect(a.runId).not.toBe(b.runId);
      expect(laneKey(DEFAULT_KEY_TEMPLATE, a)).not.toBe(laneKey(DEFAULT_KEY_TEMPLATE, b));
    } finally {
      fs.rmSync(repo, { recursive: true, force: true });
    }
  });

  it('overrides win over what is detected', () => {
    expect(
      detectIdentity({ DRONE: 'true', DRONE_REPO: 'a/b', DRONE_BRANCH: 'main' }, '/', {
        scope: 'pr:5',
        run: '77',
        job: 'lint',
      }),
    ).toMatchObject({
      scopeId: 'pr:5',
      scope: 'pr-5',
      runId: '77',
      job: 'lint',
    });
  });

  it('property: hostile values from any system give one safe key segment', () => {
    const systems = [
      (v: string) => ({
        GITLAB_CI: 'true',
        CI_PROJECT_PATH: v,
        CI_COMMIT_BRANCH: v,
        CI_JOB_NAME: v,
        CI_PIPELINE_ID: v,
      }),
      (v: string) => ({ JENKINS_URL: 'x', BUILD_NUMBER: v, JOB_NAME: v, BRANCH_NAME: v }),
      (v: string) => ({ BUILDKITE: 'true', BUILDKITE_PIPELINE_SLUG: v, BUILDKITE_BRANCH: v, BUILDKITE_LABEL: v }),
      (v: string) => ({ CI: 'woodpecker', CI_REPO: v, CI_COMMIT_BRANCH: v, CI_STEP_NAME: v }),
      (v: string) => ({ DRONE: 'true', DRONE_REPO: v, DRONE_TAG: v, DRONE_STEP_NAME: v }),
    ];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: systems.length - 1 }),
        fc.string({ unit: 'binary', maxLength: 300 }),
        (index, value) => {
          const key = laneKey(DEFAULT_KEY_TEMPLATE, detectIdentity(systems[index](value), '/'));
          expect(isLaneName(key)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});
