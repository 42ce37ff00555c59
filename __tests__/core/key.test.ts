import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { SettingError } from '../../src/core/common/errors.js';
import {
  DEFAULT_KEY_TEMPLATE,
  KEY_MAX,
  laneKey,
  matrixLabel,
  parseKeyTemplate,
  parseMatrix,
  scopeOf,
  type RunIdentity,
} from '../../src/core/lane/key.js';
import { isSafeSegment, slug } from '../../src/core/lane/sanitize.js';

const identity = (over: Partial<RunIdentity> = {}): RunIdentity => ({
  repository: 'acme/widgets',
  scope: 'pr-42',
  runId: '1000',
  runAttempt: '1',
  job: 'build',
  matrix: '{"os":"linux"}',
  invocation: 'github_1',
  ...over,
});

const HOSTILE = [
  '../../etc',
  '..',
  '.',
  '$(touch x)',
  '`rm -rf /`',
  '-rf',
  '--no-preserve-root',
  'a/../../b',
  '/etc/passwd',
  'x'.repeat(300),
  'ünïcödé/브랜치/🚀',
  'new\nline',
  'nul\u0000byte',
  '',
  ' ',
  'C:\\Windows',
  '%2e%2e%2f',
];

describe('slug', () => {
  it.each([
    ['feature/Login-Page', 'feature-login-page'],
    ['../../etc', 'etc'],
    ['$(touch x)', 'touch-x'],
    ['-rf', 'rf'],
    ['ünïcödé', 'unicode'],
    ['v1.2..3', 'v1.2.3'],
    ['', 'none'],
    ['🚀', 'none'],
  ])('%j -> %j', (raw, expected) => {
    expect(slug(raw, 50)).toBe(expected);
  });

  it('never exceeds its budget and is always a safe segment', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), fc.integer({ min: 1, max: 80 }), (raw, max) => {
        const out = slug(raw, max);
        expect(out.length).toBeLessThanOrEqual(Math.max(max, 4));
        expect(isSafeSegment(out, Math.max(max, 4))).toBe(true);
      }),
    );
  });
});

describe('scopeOf', () => {
  it.each([
    ['refs/pull/42/merge', undefined, 'pr-42'],
    ['refs/pull/7/head', undefined, 'pr-7'],
    ['refs/heads/main', 42, 'pr-42'],
    ['refs/heads/feature/x', undefined, 'feature-x'],
    ['refs/tags/v1.0', undefined, 'tag-v1.0'],
    ['refs/heads/../../etc', undefined, 'etc'],
    ['', undefined, 'no-ref'],
  ])('%j (pr %j) -> %j', (ref, pr, expected) => {
    expect(scopeOf(ref, pr)).toBe(expected);
  });
});

describe('laneKey', () => {
  it('reads as the run it belongs to', () => {
    const key = laneKey(DEFAULT_KEY_TEMPLATE, identity());
    expect(key).toMatch(/^acme-widgets\.pr-42\.1000-1\.build\.linux-[0-9a-f]{12}$/);
  });

  it.each(HOSTILE)('keeps the hostile value %j inside one bounded segment', (value) => {
    for (const field of ['repository', 'scope', 'runId', 'runAttempt', 'job', 'matrix'] as const) {
      const over = field === 'matrix' ? { matrix: JSON.stringify({ v: value }) } : { [field]: value };
      const key = laneKey(DEFAULT_KEY_TEMPLATE, identity(over));
      expect(isSafeSegment(key, KEY_MAX)).toBe(true);
      expect(path.join('/root/lanes', key).startsWith('/root/lanes/')).toBe(true);
      expect(path.dirname(path.join('/root/lanes', key))).toBe('/root/lanes');
    }
  });

  const anyIdentity = fc.record({
    repository: fc.string({ unit: 'binary', maxLength: 300 }),
    scope: fc.string({ unit: 'binary', maxLength: 300 }),
    runId: fc.string({ maxLength: 30 }),
    runAttempt: fc.string({ maxLength: 5 }),
    job: fc.string({ unit: 'binary', maxLength: 300 }),
    matrix: fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)),
    invocation: fc.string({ maxLength: 20 }),
  });

  it('is always one valid segment of at most KEY_MAX characters, inside the root', () => {
    fc.assert(
      fc.property(anyIdentity, (id) => {
        const key = laneKey(DEFAULT_KEY_TEMPLATE, id);
        expect(key.length).toBeLessThanOrEqual(KEY_MAX);
        expect(isSafeSegment(key, KEY_MAX)).toBe(true);
        expect(path.relative('/r', path.resolve('/r', key))).toBe(key);
      }),
      { numRuns: 500 },
    );
  });

  it('gives distinct identities distinct keys, even within one invocation', () => {
    fc.assert(
      fc.property(anyIdentity, anyIdentity, (a, b) => {
        const sameInvocation = { ...b, invocation: a.invocation };
        fc.pre(JSON.stringify(a) !== JSON.stringify(sameInvocation));
        expect(laneKey(DEFAULT_KEY_TEMPLATE, a)).not.toBe(laneKey(DEFAULT_KEY_TEMPLATE, sameInvocation));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps apart values that read the same (feature/x vs feature-x, matrix legs that flatten alike)', () => {
    const pairs: [Partial<RunIdentity>, Partial<RunIdentity>][] = [
      [{ scope: 'feature/x' }, { scope: 'feature-x' }],
      [{ matrix: '{"a":"x-y"}' }, { matrix: '{"a":"x","b":"y"}' }],
      [{ runAttempt: '' }, { runAttempt: 'x' }],
      [{ job: 'Build' }, { job: 'build' }],
      [
        { runId: '1', runAttempt: '2' },
        { runId: '2', runAttempt: '1' },
      ],
    ];
    for (const [a, b] of pairs) {
      expect(laneKey(DEFAULT_KEY_TEMPLATE, identity(a))).not.toBe(laneKey(DEFAULT_KEY_TEMPLATE, identity(b)));
    }
  });

  it('differs per invocation, so repeated run ids and attempts (Gitea re-runs) never share a lane', () => {
    expect(laneKey(DEFAULT_KEY_TEMPLATE, identity({ invocation: 'nonce-a' }))).not.toBe(
      laneKey(DEFAULT_KEY_TEMPLATE, identity({ invocation: 'nonce-b' })),
    );
  });

  it('renders a custom template with its literal text', () => {
    expect(laneKey('ci-{job}-{run}', identity())).toMatch(/^ci-build-1000-[0-9a-f]{12}$/);
  });
});

describe('parseKeyTemplate', () => {
  it('defaults when empty', () => {
    expect(parseKeyTemplate('  ')).toBe(DEFAULT_KEY_TEMPLATE);
  });
  it.each([
    ['{repo}-{nope}', 'unknown placeholder {nope}'],
    ['static', 'it has no placeholder'],
    ['{repo}-}', 'unmatched brace'],
  ])('refuses %j', (template, reason) => {
    expect(() => parseKeyTemplate(template)).toThrow(SettingError);
    expect(() => parseKeyTemplate(template)).toThrow(reason);
    expect(() => parseKeyTemplate(template)).toThrow(`Input 'key' has an invalid value ${JSON.stringify(template)}`);
  });
});

describe('matrix', () => {
  it.each([
    ['', 'single'],
    ['null', 'single'],
    ['{"os":"ubuntu","rust":"stable"}', 'ubuntu-stable'],
    ['{"include":{"a":[1,2]}}', '1-2'],
  ])('%j reads as %j', (json, label) => {
    expect(matrixLabel(json)).toBe(label);
  });
  it('refuses JSON that does not parse, naming the input and value', () => {
    expect(() => parseMatrix('{os: linux')).toThrow(/Input 'matrix' has an invalid value "\{os: linux"/);
  });
});
