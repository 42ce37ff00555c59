import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SettingError } from '../core/common/errors.js';
import { readJsonNoFollow } from '../core/delete/open-regular.js';
import { openRegular } from '../core/delete/open-regular.js';
import type { Identity } from '../core/lane/ci-identity.js';

/**
 * The remote tier of warm starts: what is archived, under which keys, and whether this run
 * may read or write the forge's cache service. Pure decisions; the transfer itself is
 * `src/remote` (which loads `@actions/cache` only when a transfer happens).
 */

/** What each preset contributes to an archive: lane-relative paths, `!` excludes (globs). */
const REMOTE_PATHS: Readonly<Record<string, readonly string[]>> = {
  // Each profile's contents but incremental/ (machine-specific, large, useless on another
  // host). The archive takes matches whole, so the selection is one level below the profiles.
  cargo: ['cargo-target/*/*', '!cargo-target/*/incremental'],
  'go-cache': ['go-build'],
  pip: ['pip-cache'],
  npm: ['npm-cache'],
  gradle: ['gradle-home/caches', 'gradle-home/wrapper'],
};

/** The lock files whose contents decide whether an entry fits this checkout, per preset. */
const LOCK_FILES: Readonly<Record<string, readonly RegExp[]>> = {
  cargo: [/^Cargo\.lock$/],
  go: [/^go\.sum$/],
  'go-cache': [/^go\.sum$/],
  pip: [/^requirements.*\.txt$/, /^poetry\.lock$/, /^uv\.lock$/, /^Pipfile\.lock$/],
  python: [/^requirements.*\.txt$/, /^poetry\.lock$/, /^uv\.lock$/, /^Pipfile\.lock$/],
  npm: [/^package-lock\.json$/, /^npm-shrinkwrap\.json$/],
  gradle: [/^gradle\.lockfile$/, /^.*\.gradle(\.kts)?$/],
};

/** The archive's paths: `remote-paths` when given, else the presets' selection (empty: nothing to archive). */
export function remotePaths(presets: readonly string[], override: readonly string[]): string[] {
  if (override.length > 0) return [...override];
  return presets.flatMap((preset) => REMOTE_PATHS[preset] ?? []);
}

/**
 * What of the lane an archive of `paths` can hold: per included (not `!`) path, its literal
 * leading components up to the first wildcard, `.` and empty ones dropped. An empty list
 * stands for the whole lane (`.`, `*`, `**`).
 */
export function archivedRoots(paths: readonly string[]): string[][] {
  return paths
    .filter((entry) => !entry.startsWith('!'))
    .map((entry) => {
      const parts = entry.split('/').filter((part) => part !== '' && part !== '.');
      const wild = parts.findIndex((part) => /[*?[{]/.test(part));
      return wild < 0 ? parts : parts.slice(0, wild);
    });
}

/** Parses `remote-paths`: lane-relative paths or globs, one a line; never absolute, never `..`. */
export function parseRemotePaths(setting: string, value: string): string[] {
  const lines = value
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean);
  for (const line of lines) {
    const bare = line.startsWith('!') ? line.slice(1) : line;
    if (path.isAbsolute(bare) || bare.split(/[\\/]/).includes('..') || bare === '' || bare.startsWith('~')) {
      throw new SettingError(setting, line, 'paths relative to the lane, one a line (globs and !excludes allowed)');
    }
  }
  return lines;
}

/** Which cache service the runner offers, and what ACTIONS_CACHE_MODE lets a job do with it. */
export interface RemoteService {
  url: string;
  read: boolean;
  write: boolean;
}

export function remoteService(env: Readonly<Record<string, string | undefined>>): RemoteService | undefined {
  const url = env.ACTIONS_CACHE_URL || env.ACTIONS_RESULTS_URL;
  if (!url) return undefined;
  const mode = (env.ACTIONS_CACHE_MODE ?? '').trim().toLowerCase();
  return {
    url,
    read: mode !== 'none' && mode !== 'write',
    write: mode !== 'none' && mode !== 'read',
  };
}

export interface RemoteKeys {
  /** The exact key: everything below plus the lock files' hash. */
  key: string;
  /** Newest entry of the same job and leg whatever the lock files hold. */
  restoreKeys: string[];
}

/**
 * Keys of this job's entries. Every entry runlane writes is a trusted run's, so the keys
 * start `runlane-trusted-`: a run of untrusted code reads them (as a fork's PR reads its
 * base's cache on GitHub) but never writes, and nothing under that prefix came from it.
 * The readable parts are decoration; the hash covers every raw value exactly.
 */
export function remoteKeys(
  identity: Pick<Identity, 'repository' | 'workflow' | 'job' | 'step' | 'matrix' | 'warmKey'>,
  presets: readonly string[],
  paths: readonly string[],
  lockHash: string,
  platform = `${process.platform}-${process.arch}`,
): RemoteKeys {
  const exact = crypto
    .createHash('sha256')
    .update(
      JSON.stringify([
        identity.repository,
        identity.workflow,
        identity.job,
        identity.step,
        identity.matrix,
        platform,
        [...presets].sort(),
        paths,
        ...(identity.warmKey ? [identity.warmKey] : []),
      ]),
    )
    .digest('hex')
    .slice(0, 20);
  const readable = `${identity.job}`.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 40);
  const prefix = `runlane-trusted-${platform}-${readable}-${exact}-`;
  return { key: `${prefix}${lockHash}`, restoreKeys: [prefix] };
}

/** Hash of the lock files the presets name, at the top of the workspace; `none` without any. */
export function lockFilesHash(presets: readonly string[], workspace: string | undefined): string {
  const patterns = [...new Set(presets.flatMap((preset) => LOCK_FILES[preset] ?? []))];
  if (!workspace || patterns.length === 0) return 'none';
  let names: string[];
  try {
    names = fs.readdirSync(workspace).filter((name) => patterns.some((pattern) => pattern.test(name)));
  } catch {
    return 'none';
  }
  if (names.length === 0) return 'none';
  const hash = crypto.createHash('sha256');
  for (const name of names.sort()) {
    try {
      // Never through a symlink, never a FIFO (it would hang the step) or a device.
      const { fd } = openRegular(path.join(workspace, name), fs.constants.O_RDONLY);
      let content: Buffer;
      try {
        content = fs.readFileSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      hash.update(name).update('\0').update(content).update('\0');
    } catch {
      hash.update(name).update('\0unreadable\0');
    }
  }
  return hash.digest('hex').slice(0, 20);
}

export type RemoteSave = 'auto' | 'true' | 'false';

/**
 * Whether post may upload. Never for untrusted code (a fork's pull request), whatever
 * `remote-save` says: Gitea's and Forgejo's cache servers do not scope entries by ref, so an
 * upload would reach every branch. `auto`: only runs on the repository's default branch,
 * read from the event payload; never pull requests.
 */
export function saveDecision(
  setting: RemoteSave,
  identity: Pick<Identity, 'trust' | 'scopeId'>,
  env: Readonly<Record<string, string | undefined>>,
): { save: boolean; why: string } {
  if (identity.trust !== 'trusted') return { save: false, why: `a run of ${identity.trust} code never uploads` };
  if (setting === 'false') return { save: false, why: 'remote-save is false' };
  if (setting === 'true') return { save: true, why: 'remote-save is true' };
  if (identity.scopeId.startsWith('pr:'))
    return { save: false, why: 'pull requests do not upload (remote-save: auto)' };
  const branch = defaultBranch(env);
  if (!branch)
    return { save: false, why: 'the default branch is unknown (no event payload): remote-save auto uploads nothing' };
  return identity.scopeId === `refs/heads/${branch}`
    ? { save: true, why: `the default branch (${branch})` }
    : { save: false, why: `not the default branch (${branch}): remote-save auto uploads only from it` };
}

function defaultBranch(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const file = env.GITHUB_EVENT_PATH;
  if (!file) return undefined;
  const payload = readJsonNoFollow(file) as { repository?: { default_branch?: unknown } } | null | undefined;
  const branch = payload?.repository?.default_branch;
  return typeof branch === 'string' && branch !== '' ? branch : undefined;
}

export function parseRemoteSave(setting: string, value: string): RemoteSave {
  const text = value.trim().toLowerCase() || 'auto';
  if (text === 'auto' || text === 'true' || text === 'false') return text;
  throw new SettingError(setting, value, 'auto | true | false');
}

export function parseRemote(setting: string, value: string): 'auto' | 'off' {
  const text = value.trim().toLowerCase() || 'auto';
  if (text === 'auto' || text === 'off') return text;
  throw new SettingError(setting, value, 'auto | off');
}
