import crypto from 'node:crypto';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { errorCode, errorMessage, SettingError } from '../common/errors.js';
import { openRegular } from '../delete/open-regular.js';
import { Dir } from '../delete/dir.js';
import type { TrustClass } from '../lane/ci-identity.js';

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
  /** The run's trust class: a privileged run never runs a toolchain its workspace names. */
  trust?: TrustClass;
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
      described.push(`{env:${part.name}: ${set === undefined ? 'unset' : set === '' ? 'empty' : 'set'}}`);
    } else if (part.kind === 'rustc') {
      const rustc = rustcVersion(dir, context.env, context.trust !== 'privileged');
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

/** What `rustc -vV` may see of the environment: the toolchain's own variables, nothing of the run's. */
const RUSTC_ENV = ['PATH', 'HOME', 'RUSTUP_HOME', 'CARGO_HOME', 'RUSTUP_TOOLCHAIN', 'LANG', 'LC_ALL'];

/**
 * `rustc -vV`'s output (version, commit, host, LLVM), or a marker when rustc cannot run. It
 * runs with the toolchain's variables only (never the runner's tokens or the action's inputs).
 * rustup lets a workspace's `rust-toolchain.toml` name any binary as the toolchain (`path =`),
 * so a privileged run (secrets in reach, code from elsewhere) asks from `/`, where no
 * workspace's file is read.
 */
function rustcVersion(dir: string, env: Readonly<Record<string, string | undefined>>, trusted: boolean): string {
  const allowed: Record<string, string> = {};
  for (const name of RUSTC_ENV) if (env[name] !== undefined) allowed[name] = env[name] as string;
  const out = spawnSync('rustc', ['-vV'], {
    cwd: trusted ? dir : '/',
    env: allowed,
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
/** Bytes a glob's files may hold in all: lock files and manifests, not build outputs. */
const MAX_HASHED = 256 * 1024 * 1024;
const GLOB_DEPTH = 64;

/**
 * Hashes the regular files under `dir` that `glob` matches (`*` and `?` within one name,
 * `**` any number of directories, dotfiles included), names and contents, in name order.
 * Walked through opened directories: a symlinked directory is never entered, a symlink, FIFO
 * or device never read (each file is checked after it is opened), and reads are bounded.
 */
export function hashFiles(dir: string, glob: string): { hash: string; count: number } {
  let top: Dir;
  try {
    top = Dir.open(fs.realpathSync(dir));
  } catch {
    return { hash: 'none', count: 0 };
  }
  const matcher = new GlobHash(dir, glob);
  try {
    matcher.walk(top, '', 0, 0);
  } finally {
    top.close();
  }
  const { files } = matcher;
  if (files.length === 0) return { hash: 'none', count: 0 };
  files.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // Names and per-file digests as JSON: no two different sets of files frame the same.
  return { hash: digest(JSON.stringify(files), 16), count: files.length };
}

/** One glob's walk: the files it matched with their digests, and the bounds on entries and bytes. */
class GlobHash {
  readonly files: [string, string][] = [];
  private readonly segments: string[];
  private visited = 0;
  private hashed = 0;
  private readonly buffer = Buffer.alloc(65_536);

  constructor(
    private readonly dir: string,
    private readonly glob: string,
  ) {
    this.segments = glob.split('/').filter((segment) => segment !== '' && segment !== '.');
  }

  walk(at: Dir, relative: string, index: number, depth: number): void {
    const { segments, glob } = this;
    if (index >= segments.length || depth > GLOB_DEPTH) return;
    const segment = segments[index];
    let entries: fs.Dirent[];
    try {
      entries = at.entries() as fs.Dirent[];
    } catch {
      return;
    }
    this.visited += entries.length;
    if (this.visited > MAX_VISITED) {
      throw new Error(
        `{hash:${glob}} visits more than ${MAX_VISITED} entries under ${this.dir}; name the files more narrowly`,
      );
    }
    const last = index === segments.length - 1;
    const recursive = segment === '**';
    const pattern = recursive ? undefined : globSegment(segment);
    if (recursive && !last) this.walk(at, relative, index + 1, depth);
    for (const entry of entries) {
      const name = String(entry.name);
      const child = relative ? `${relative}/${name}` : name;
      if (entry.isFile()) {
        if ((recursive && last) || (last && pattern?.test(name))) this.files.push([child, this.hashOne(at, name)]);
        continue;
      }
      if (!entry.isDirectory() || (!recursive && (last || !pattern?.test(name)))) continue;
      let sub: Dir;
      try {
        sub = at.openChild(name);
      } catch {
        continue;
      }
      try {
        this.walk(sub, child, recursive ? index : index + 1, depth + 1);
      } finally {
        sub.close();
      }
    }
  }

  private hashOne(parent: Dir, name: string): string {
    return hashRegular(parent, name, this.buffer, (n) => {
      this.hashed += n;
      if (this.hashed > MAX_HASHED) {
        throw new Error(
          `{hash:${this.glob}} matches more than ${MAX_HASHED / 1048576} MiB of files; name them more narrowly`,
        );
      }
    });
  }
}

/**
 * The sha256 of the regular file `name` of `parent` (checked after it is opened: a symlink,
 * FIFO or device is never read), or why it has none; `onRead` sees every chunk's size.
 */
function hashRegular(parent: Dir, name: string, buffer: Buffer, onRead: (bytes: number) => void): string {
  let fd: number;
  let stat: fs.Stats;
  try {
    ({ fd, stat } = openRegular(parent.at(name), fs.constants.O_RDONLY));
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EINVAL' || code === 'EISDIR') return 'not a regular file';
    return `unreadable: ${code ?? errorMessage(error)}`;
  }
  try {
    const hash = crypto.createHash('sha256');
    for (let left = stat.size; left > 0;) {
      const n = fs.readSync(fd, buffer, 0, Math.min(buffer.length, left), null);
      if (n <= 0) break;
      onRead(n);
      hash.update(buffer.subarray(0, n));
      left -= n;
    }
    return hash.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
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
