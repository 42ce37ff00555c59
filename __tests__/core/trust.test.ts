import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { runIdentity, slotParts, trustClassOf } from '../../src/action/identity.js';
import { isLaneName } from '../../src/core/root/layout.js';
import { warmSlot } from '../../src/core/warm/warm.js';
import { type SlotParts } from '../../src/core/lane/ci-identity.js';

const parts = (over: Partial<SlotParts> = {}): SlotParts => ({
  repository: 'acme/widgets',
  scopeId: 'refs/heads/main',
  trust: 'trusted',
  workflow: 'acme/widgets/.github/workflows/ci.yml',
  job: 'build',
  step: '__runlane',
  matrix: '',
  ...over,
});

const fork = {
  pull_request: {
    number: 42,
    head: { repo: { full_name: 'mallory/widgets' } },
    base: { repo: { full_name: 'acme/widgets' } },
  },
};
const sameRepo = {
  pull_request: {
    number: 42,
    head: { repo: { full_name: 'acme/widgets' } },
    base: { repo: { full_name: 'acme/widgets' } },
  },
};

describe('warm slots are exact', () => {
  it.each([
    ['branch Main and branch main', parts({ scopeId: 'refs/heads/Main' }), parts({ scopeId: 'refs/heads/main' })],
    ['branch pr-42 and PR #42', parts({ scopeId: 'refs/heads/pr-42' }), parts({ scopeId: 'pr:42' })],
    ['branch tag-v1 and tag v1', parts({ scopeId: 'refs/heads/tag-v1' }), parts({ scopeId: 'refs/tags/v1' })],
    [
      'branches equal in their first 50 characters',
      parts({ scopeId: `refs/heads/${'x'.repeat(60)}-a` }),
      parts({ scopeId: `refs/heads/${'x'.repeat(60)}-b` }),
    ],
    [
      'a fork run and a pull_request_target run of one PR',
      parts({ scopeId: 'pr:42', trust: 'untrusted' }),
      parts({ scopeId: 'pr:42', trust: 'privileged' }),
    ],
    ['two workflows with the same job id', parts(), parts({ workflow: 'acme/widgets/.github/workflows/nightly.yml' })],
    ['two runlane steps of one job', parts(), parts({ step: '__runlane_2' })],
  ])('%s get different slots', (_, a, b) => {
    expect(warmSlot(a)).not.toBe(warmSlot(b));
  });

  it('property: distinct raw parts give distinct slots, each one safe path segment', () => {
    const anyParts = fc.record({
      repository: fc.string({ maxLength: 80 }),
      scopeId: fc.string({ maxLength: 300 }),
      trust: fc.constantFrom('trusted' as const, 'untrusted' as const, 'privileged' as const),
      workflow: fc.string({ maxLength: 80 }),
      job: fc.string({ maxLength: 80 }),
      step: fc.string({ maxLength: 40 }),
      matrix: fc.oneof(fc.constant(''), fc.json({ maxDepth: 2 })),
    });
    fc.assert(
      fc.property(anyParts, anyParts, (a, b) => {
        expect(isLaneName(warmSlot(a))).toBe(true);
        if (JSON.stringify(a) !== JSON.stringify(b)) expect(warmSlot(a)).not.toBe(warmSlot(b));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('trust classes', () => {
  it.each([
    ['push', {}, 'trusted'],
    ['schedule', {}, 'trusted'],
    ['workflow_dispatch', {}, 'trusted'],
    ['pull_request', sameRepo, 'trusted'],
    ['pull_request', fork, 'untrusted'],
    ['pull_request', { pull_request: { number: 42, head: { repo: null } } }, 'untrusted'],
    ['pull_request_review', fork, 'untrusted'],
    ['pull_request_target', fork, 'privileged'],
    ['pull_request_target', sameRepo, 'privileged'],
    ['workflow_run', {}, 'privileged'],
    ['issue_comment', {}, 'privileged'],
    ['some_future_event', {}, 'privileged'],
    ['', {}, 'trusted'],
  ])('%s %j is %s', (event, payload, trust) => {
    expect(trustClassOf(event, payload)).toBe(trust);
  });

  it("a pull_request_target run is scoped to its PR (its ref is the base branch) and never shares the fork run's slot", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-trust-'));
    try {
      const eventPath = path.join(dir, 'event.json');
      fs.writeFileSync(eventPath, JSON.stringify(fork));
      const env = {
        GITHUB_REPOSITORY: 'acme/widgets',
        GITHUB_EVENT_PATH: eventPath,
        GITHUB_WORKFLOW_REF: 'acme/widgets/.github/workflows/ci.yml@refs/heads/main',
        GITHUB_JOB: 'build',
        GITHUB_ACTION: '__runlane',
      };
      const target = runIdentity(
        { ...env, GITHUB_EVENT_NAME: 'pull_request_target', GITHUB_REF: 'refs/heads/main' },
        '',
      );
      const forkRun = runIdentity({ ...env, GITHUB_EVENT_NAME: 'pull_request', GITHUB_REF: 'refs/pull/42/merge' }, '');
      const push = runIdentity({ ...env, GITHUB_EVENT_NAME: 'push', GITHUB_REF: 'refs/heads/main' }, '');
      expect([target.scopeId, target.trust, target.scope]).toEqual(['pr:42', 'privileged', 'pr-42']);
      expect([forkRun.scopeId, forkRun.trust]).toEqual(['pr:42', 'untrusted']);
      const slots = new Set([target, forkRun, push].map((identity) => warmSlot(slotParts(identity))));
      expect(slots.size).toBe(3);
      // A copy from a branch always reads that branch's trusted slot: the push run's.
      expect(warmSlot(slotParts(forkRun, 'main'))).toBe(warmSlot(slotParts(push)));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
