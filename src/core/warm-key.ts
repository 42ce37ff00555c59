import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { errorMessage, SettingError } from './errors.js';

/**
 * `warm-key`: what a user adds to the warm slot, like rust-cache's `key`: free text with
 * placeholders `{rustc}` (a hash of `rustc -vV`, run in the workspace, so a
 * rust-toolchain.toml counts), `{env:NAME}` (that variable's value, empty when unset) and
 * `{hash:GLOB}` (a hash of the workspace files the glob matches, names and contents). The
 * resolved text only ever narrows a slot: the slot is still exact over the repository, ref
 * and trust class whatever it says.
 */
export interface WarmKeyTemplate {
  text: string;
  parts: WarmKeyPart[];
}

type WarmKeyPart =
  { kind: 'text'; text: string } | { kind: 'rustc' } | { kind: 'env'; name: string } | { kind: 'hash'; glob: string };

const ACCEPTED =
  'text with {rustc}, {env:NAME} or {hash:GLOB} (a glob relative to the workspace), at most 1024 characters';

/** Validates a `warm-key` value; an empty one adds nothing to the slot. */
export function parseWarmKey(setting: string, value: string): WarmKeyTemplate {
  const text = value.trim();
  if (text.length > 1024) throw new SettingError(setting, value, ACCEPTED, 'it is too long');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(text.replace(/\n/g, ' '))) {
    throw new SettingError(setting, value, ACCEPTED, 'it holds a control character');
  }
  const parts: WarmKeyPart[] = [];
  let rest = text;
  while (rest !== '') {
    const open = rest.indexOf('{');
    const close = rest.indexOf('}');
    if (open < 0) {
      if (close >= 0) throw new SettingError(setting, value, ACCEPTED, `'}' without '{'`);
      parts.push({ kind: 'text', text: rest });
      break;
    }
    if (close >= 0 && close < open) throw new SettingError(setting, value, ACCEPTED, `'}' without '{'`);
    if (open > 0) parts.push({ kind: 'text', text: rest.slice(0, open) });
    const end = rest.indexOf('}', open);
    if (end < 0) throw new SettingError(setting, value, ACCEPTED, `'${rest.slice(open)}' is not closed`);
    const inner = rest.slice(open + 1, end);
    parts.push(placeholder(setting, value, inner));
    rest = rest.slice(end + 1);
  }
  return { text, parts };
}

function placeholder(setting: string, value: string, inner: string): WarmKeyPart {
  if (inner === 'rustc') return { kind: 'rustc' };
  const env = /^env:(.*)$/.exec(inner);
  if (env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(env[1])) {
      throw new SettingError(setting, value, ACCEPTED, `'${env[1]}' is not a variable name`);
    }
    return { kind: 'env', name: env[1] };
  }
  const hash = /^hash:(.*)$/.exec(inner);
  if (hash) {
    const glob = hash[1].trim();
    if (glob === '' || glob.startsWith('/') || glob.split('/').includes('..')) {
      throw new SettingError(setting, value, ACCEPTED, `'${glob}' is not a glob inside the workspace`);
    }
    return { kind: 'hash', glob };
  }
  throw new SettingError(setting, value, ACCEPTED, `'{${inner}}' is not a placeholder runlane knows`);
}

export interface ResolvedWarmKey {
  /** What the slot is made exact over (a hash of the resolved text); empty when no warm-key. */
  hash: string;
  /** What each placeholder resolved to, for the log: never a variable's value. */
  described: string;
}

export interface WarmKeyContext {
  env: Readonly<Record<string, string | undefined>>;
  /** Where `{hash:...}` globs and `rustc` run; the working directory when not set. */
  workspace?: string;
}

/** Resolves a template once, in main (post reuses main's result, as rust-cache reuses its key). */
export function resolveWarmKey(template: WarmKeyTemplate, context: WarmKeyContext): ResolvedWarmKey {
  if (template.parts.length === 0) return { hash: '', described: '' };
  const dir = context.workspace || process.cwd();
  const resolved: string[] = [];
  const described: string[] = [];
  for (const part of template.parts) {
    if (part.kind === 'text') {
      resolved.push(`text:${part.text}`);
      described.push(part.text);
    } else if (part.kind === 'env') {
      const set = context.env[part.name];
      resolved.push(`env:${part.name}=${set === undefined ? '\u0000unset' : set}`);
      described.push(`{env:${part.name}: ${set === undefined ? 'unset' : `${digest(set, 8)}`}}`);
    } else if (part.kind === 'rustc') {
      const rustc = rustcVersion(dir, context.env);
      resolved.push(`rustc:${rustc}`);
      described.push(`{rustc: ${rustc.startsWith('rustc ') ? rustc.split('\n')[0] : rustc}}`);
    } else {
      const files = hashFiles(dir, part.glob);
      resolved.push(`hash:${part.glob}=${files.hash}`);
      described.push(`{hash:${part.glob}: ${files.count} file${files.count === 1 ? '' : 's'}, ${files.hash}}`);
    }
  }
  return { hash: digest(JSON.stringify(resolved), 32), described: described.join('') };
}

function digest(value: string, length: number): string {
  return crypto.createHash('sha256').update(value).digest('hex').slice(0, length);
}

/** `rustc -vV`'s output (version, commit, host, LLVM), or a marker when rustc cannot run. */
function rustcVersion(dir: string, env: Readonly<Record<string, string | undefined>>): string {
  const out = spawnSync('rustc', ['-vV'], {
    cwd: dir,
    env: env as NodeJS.ProcessEnv,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  if (out.error) return `no rustc (${errorMessage(out.error)})`;
  if (out.status !== 0) return `no rustc (exit ${out.status ?? out.signal}: ${out.stderr.trim().split('\n')[0] ?? ''})`;
  return out.stdout.trim();
}

/** Entries a glob may visit before it is refused: a `**` over a huge tree is a mistake to say. */
const MAX_VISITED = 200_000;

/**
 * Hashes the regular files under `dir` that `glob` matches (`*` and `?` within one name,
 * `**` any number of directories, dotfiles included), in name order, names and contents.
 * Symlinked directories are not entered and symlinks, FIFOs and devices are not read.
 */
export function hashFiles(dir: string, glob: string): { hash: string; count: number } {
  const segments = glob.split('/').filter((segment) => segment !== '' && segment !== '.');
  const matched: string[] = [];
  let visited = 0;
  const walk = (relative: string, index: number) => {
    if (index >= segments.length) return;
    const segment = segments[index];
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, relative), { withFileTypes: true });
    } catch {
      return;
    }
    visited += entries.length;
    if (visited > MAX_VISITED) {
      throw new Error(
        `{hash:${glob}} visits more than ${MAX_VISITED} entries under ${dir}; name the files more narrowly`,
      );
    }
    if (segment === '**') {
      walk(relative, index + 1);
      for (const entry of entries) if (entry.isDirectory()) walk(path.join(relative, entry.name), index);
      return;
    }
    const pattern = globSegment(segment);
    const last = index === segments.length - 1;
    for (const entry of entries) {
      if (!pattern.test(entry.name)) continue;
      const child = path.join(relative, entry.name);
      if (last && entry.isFile()) matched.push(child);
      else if (!last && entry.isDirectory()) walk(child, index + 1);
    }
  };
  walk('', 0);
  const files = [...new Set(matched)].sort();
  const hash = crypto.createHash('sha256');
  for (const file of files) {
    hash.update(file).update('\0');
    try {
      // Swapped for a symlink or a FIFO since it was listed: refused or read empty, never waited on.
      const fd = fs.openSync(
        path.join(dir, file),
        fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
      );
      try {
        hash.update(fs.readFileSync(fd));
      } finally {
        fs.closeSync(fd);
      }
    } catch (error) {
      hash.update(`unreadable: ${errorMessage(error)}`);
    }
    hash.update('\0');
  }
  return { hash: files.length === 0 ? 'none' : hash.digest('hex').slice(0, 16), count: files.length };
}

function globSegment(segment: string): RegExp {
  const source = segment.replace(/[.+^${}()|[\]\\*?]/g, (char) =>
    char === '*' ? '[^/]*' : char === '?' ? '[^/]' : `\\${char}`,
  );
  return new RegExp(`^${source}$`, 's');
}

/** The resolved hash as post reads it back from main's state: 32 hex digits, or empty. */
export function isWarmKeyHash(value: string): boolean {
  return value === '' || /^[0-9a-f]{32}$/.test(value);
}
