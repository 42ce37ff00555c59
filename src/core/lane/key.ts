/**
 * src/core/lane: a lane's identity and what it offers the job, all pure or read-only: the key
 * (key.ts) from the run's identity (ci-identity.ts, one table per CI system), the names made
 * safe (sanitize.ts), the job's requests for variables and links (requests.ts), the presets
 * and the plan of exported variables (presets.ts, env-plan.ts). It may import
 * src/core/common, src/core/delete and src/core/lease.
 */
import { SettingError } from '../common/errors.js';
import { shortHash, slug } from './sanitize.js';

/** What identifies one invocation of the action, as the runner describes it (all untrusted). */
export interface RunIdentity {
  /** `owner/name`. */
  repository: string;
  /** `pr-<n>` for pull requests, else a readable form of the ref (see `scopeOf`). */
  scope: string;
  runId: string;
  /** Empty on runners that do not provide it (some Gitea and Forgejo versions). */
  runAttempt: string;
  job: string;
  /** The `matrix` input: JSON of this leg's matrix values, or empty / `null` outside a matrix. */
  matrix: string;
  /**
   * Something unique to this invocation (the runner's per-job tracking id, else a random
   * nonce): it goes into the key's hash, so two invocations never share a key even when
   * the runner repeats run id and attempt (Gitea re-runs) or the template leaves parts out.
   */
  invocation: string;
}

/** The longest key: leaves room for suffixes (`.lock`, `.json`, trash stamps) under NAME_MAX. */
export const KEY_MAX = 200;
const HASH_LENGTH = 12;
const READABLE_MAX = KEY_MAX - HASH_LENGTH - 1;

export const DEFAULT_KEY_TEMPLATE = '{repo}.{scope}.{run}-{attempt}.{job}.{matrix}';

const same = (value: string) => value;
/** Each placeholder: the budget of its readable part, its raw value, and how that reads. */
const PLACEHOLDERS = {
  repo: { max: 60, raw: (id: RunIdentity) => id.repository, label: same },
  scope: { max: 50, raw: (id: RunIdentity) => id.scope, label: same },
  run: { max: 20, raw: (id: RunIdentity) => id.runId, label: same },
  attempt: { max: 12, raw: (id: RunIdentity) => id.runAttempt, label: (v: string) => v || 'x' },
  job: { max: 40, raw: (id: RunIdentity) => id.job, label: same },
  matrix: { max: 50, raw: (id: RunIdentity) => id.matrix.trim(), label: matrixLabel },
} as const;
type Placeholder = keyof typeof PLACEHOLDERS;
const PLACEHOLDER_LIST = Object.keys(PLACEHOLDERS)
  .map((name) => `{${name}}`)
  .join(', ');

const TOKEN = /\{([^{}]*)\}/g;

/** Checks a key template: known placeholders only, and at least one of them. */
export function parseKeyTemplate(template: string): string {
  const text = template.trim() === '' ? DEFAULT_KEY_TEMPLATE : template.trim();
  const accepted = `text with placeholders ${PLACEHOLDER_LIST} (default ${DEFAULT_KEY_TEMPLATE})`;
  let placeholders = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (!(match[1] in PLACEHOLDERS)) {
      throw new SettingError('key', template, accepted, `unknown placeholder {${match[1]}}`);
    }
    placeholders++;
  }
  if (placeholders === 0) {
    throw new SettingError('key', template, accepted, 'it has no placeholder');
  }
  if (/[{}]/.test(text.replace(TOKEN, ''))) {
    throw new SettingError('key', template, accepted, 'it has an unmatched brace');
  }
  return text;
}

/**
 * The lane key: a readable rendering of the template, cut to its budget, plus a hash of
 * every raw value it stands for and of the invocation. Always one safe path segment of at
 * most KEY_MAX characters; distinct identities give distinct keys.
 */
export function laneKey(template: string, id: RunIdentity): string {
  const raw: string[] = [template, id.invocation];
  let readable = '';
  let last = 0;
  for (const match of template.matchAll(TOKEN)) {
    readable += template.slice(last, match.index).replace(/[^A-Za-z0-9._-]+/g, '-');
    const placeholder = PLACEHOLDERS[match[1] as Placeholder];
    const value = placeholder.raw(id);
    raw.push(match[1], value);
    readable += slug(placeholder.label(value), placeholder.max);
    last = (match.index ?? 0) + match[0].length;
  }
  readable += template.slice(last).replace(/[^A-Za-z0-9._-]+/g, '-');
  const body = slug(readable, READABLE_MAX, 'lane');
  return `${body}-${shortHash(JSON.stringify(raw), HASH_LENGTH)}`;
}

/** The scope a run belongs to: `pr-<n>` for pull requests, else the branch or tag, readable. */
export function scopeOf(ref: string, pullRequestNumber?: number): string {
  const pr = /^refs\/pull\/(\d+)\/(?:merge|head)$/.exec(ref);
  if (pr) return `pr-${pr[1]}`;
  if (pullRequestNumber !== undefined) return `pr-${pullRequestNumber}`;
  const branch = /^refs\/heads\/(.+)$/.exec(ref);
  if (branch) return slug(branch[1], 50);
  const tag = /^refs\/tags\/(.+)$/.exec(ref);
  if (tag) return `tag-${slug(tag[1], 46)}`;
  return slug(ref, 50, 'no-ref');
}

/** A readable label for one matrix leg: its values in key order, e.g. `ubuntu-stable`. */
export function matrixLabel(matrixJson: string): string {
  const values = matrixValues(parseMatrix(matrixJson));
  return values.length === 0 ? 'single' : values.join('-');
}

function matrixValues(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  if (typeof value !== 'object') return [String(value)];
  const entries = Array.isArray(value) ? value : Object.values(value);
  return entries.flatMap(matrixValues);
}

/** Parses the `matrix` input; empty and `null` mean "not a matrix job". */
export function parseMatrix(matrixJson: string): unknown {
  const text = matrixJson.trim();
  if (text === '' || text === 'null') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new SettingError(
      'matrix',
      matrixJson,
      'JSON, as given by ${{ toJSON(matrix) }}, or empty',
      (error as Error).message,
    );
  }
}
