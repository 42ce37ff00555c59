import fs from 'node:fs';
import path from 'node:path';
import { SettingError } from '../common/errors.js';

export const MARKER = '.runlane-root';

export interface RootChoice {
  path: string;
  /** Where it came from, for the log: `input`, `RUNLANE_ROOT`, `runner` or `cache`. */
  source: string;
}

/**
 * The root lanes live in: the `root` input, else RUNLANE_ROOT (set once by a host admin),
 * else `_runlane` in the runner's `_work` (persists across jobs and is mounted into
 * container jobs), else the user's cache directory.
 */
export function chooseRoot(input: string, env: NodeJS.ProcessEnv, home: string): RootChoice {
  const given = input.trim();
  if (given !== '') return { path: expandHome(given, home), source: 'input' };
  const fromEnv = env.RUNLANE_ROOT?.trim();
  if (fromEnv) return { path: expandHome(fromEnv, home), source: 'RUNLANE_ROOT' };
  const runnerWorkspace = env.RUNNER_WORKSPACE?.trim();
  if (runnerWorkspace && path.isAbsolute(runnerWorkspace)) {
    return { path: path.join(path.dirname(runnerWorkspace), '_runlane'), source: 'runner' };
  }
  const cache = env.XDG_CACHE_HOME?.trim() || path.join(home, '.cache');
  return { path: path.join(cache, 'runlane'), source: 'cache' };
}

/** The name errors give a root chosen by the CLI: the variable it came from, else `--root`. */
export function rootSetting(choice: RootChoice): string {
  return choice.source === 'RUNLANE_ROOT' ? 'RUNLANE_ROOT' : '--root';
}

function expandHome(value: string, home: string): string {
  return value === '~' || value.startsWith('~/') ? path.join(home, value.slice(1)) : value;
}

/** The real path of `target`, resolving symlinks in whatever part of it exists already. */
export function resolveExisting(target: string): string {
  const missing: string[] = [];
  let current = path.resolve(target);
  for (;;) {
    try {
      return path.join(fs.realpathSync(current), ...missing.reverse());
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return path.resolve(target);
      missing.push(path.basename(current));
      current = parent;
    }
  }
}

const within = (child: string, parent: string) =>
  child === parent || child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);

/**
 * Refuses a root that would put other people's files in reach: `/`, the home directory,
 * the workspace, anything containing one of them, or anything inside the workspace (a
 * checkout's clean would delete lanes). Checked on the path as given and as it resolves.
 * Returns the resolved root.
 */
export function checkRoot(root: string, protect: { home: string; workspace?: string }, setting = 'root'): string {
  const accepted =
    'an absolute directory of its own, not /, not the home directory, not the workspace, containing neither';
  if (!path.isAbsolute(root)) throw new SettingError(setting, root, accepted, 'it is not absolute');
  // A root's path reaches every lane's variables (RUNLANE_DIR, CARGO_TARGET_DIR) and the log:
  // a newline in it would forge runner commands (::error::) and env-file lines.
  // eslint-disable-next-line no-control-regex
  const control = /[\u0000-\u001f\u007f-\u009f]/.exec(root);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
    throw new SettingError(setting, root, accepted, `it holds a control character (U+${code})`);
  }
  const notDirectory = notADirectory(root);
  if (notDirectory) throw new SettingError(setting, root, accepted, notDirectory);
  const forms = new Set([path.resolve(root), resolveExisting(root)]);
  for (const form of forms) {
    if (form === '/') throw new SettingError(setting, root, accepted, `it is the file-system root (${form})`);
    for (const [what, value] of [
      ['home directory', protect.home],
      ['workspace', protect.workspace],
    ] as const) {
      if (!value) continue;
      for (const guarded of new Set([path.resolve(value), resolveExisting(value)])) {
        if (within(guarded, form)) {
          throw new SettingError(setting, root, accepted, `it is or contains the ${what} ${guarded}`);
        }
        if (what === 'workspace' && within(form, guarded)) {
          throw new SettingError(setting, root, accepted, `it is inside the workspace ${guarded}`);
        }
      }
    }
  }
  // A symlink as the root itself would let whoever can write its parent (a job, for the
  // runner's _work/_runlane) send every later job and sweep elsewhere.
  if (fs.lstatSync(root, { throwIfNoEntry: false })?.isSymbolicLink()) {
    throw new SettingError(
      setting,
      root,
      accepted,
      `it is a symlink (to ${fs.readlinkSync(root)}): give the real path`,
    );
  }
  return resolveExisting(root);
}

/** Why `root` cannot be a directory (it, or a path above it, is something else), or undefined. */
function notADirectory(root: string): string | undefined {
  try {
    const stat = fs.statSync(root, { throwIfNoEntry: false });
    return stat && !stat.isDirectory() ? 'it is not a directory' : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return 'a path above it is not a directory';
    throw error;
  }
}

/**
 * Makes sure `root` is a runlane root: creates it with its marker when missing or empty.
 * A non-empty directory without the marker is refused: runlane never adopts, and so never
 * deletes in, a directory it did not make.
 */
export function ensureRoot(root: string, setting = 'root'): void {
  try {
    fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  } catch (error) {
    // A file put in its place since checkRoot looked.
    const what = notADirectory(root);
    if (what) throw new SettingError(setting, root, 'a directory, or a path where runlane may make one', what);
    throw error;
  }
  if (isMarkedRoot(root)) return;
  const entries = fs.readdirSync(root);
  if (entries.length > 0) {
    // Re-checked: a job starting at the same moment may have just written the marker.
    if (isMarkedRoot(root)) return;
    throw unmarked(root, entries.length, setting);
  }
  try {
    fs.writeFileSync(path.join(root, MARKER), `${JSON.stringify({ runlane: 1 })}\n`, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * For the sweep and status: the root must be a directory carrying the marker. The refusal says
 * what is there, and names the runlane root it sits in when `root` is one of its directories.
 */
export function requireMarkedRoot(root: string, setting = 'root'): void {
  const accepted = 'an existing runlane root (a directory holding a .runlane-root marker)';
  const stat = fs.statSync(root, { throwIfNoEntry: false });
  if (!stat) throw new SettingError(setting, root, accepted, 'it does not exist');
  if (!stat.isDirectory()) throw new SettingError(setting, root, accepted, 'it is not a directory');
  if (isMarkedRoot(root)) return;
  throw unmarked(root, fs.readdirSync(root).length, setting);
}

/** True when `root` exists and carries runlane's marker. */
export function isMarkedRoot(root: string): boolean {
  try {
    return fs.lstatSync(path.join(root, MARKER)).isFile();
  } catch {
    return false;
  }
}

function unmarked(root: string, entries: number, setting = 'root'): SettingError {
  const parent = path.dirname(root);
  const hint = parent !== root && isMarkedRoot(parent) ? `; its parent ${parent} is a runlane root: give that` : '';
  const what =
    entries === 0
      ? 'it is an empty directory without a .runlane-root marker: runlane has made no root there'
      : `it holds ${plural(entries, 'entry', 'entries')} and no ${MARKER} marker, so runlane will not create or delete anything in it`;
  return new SettingError(setting, root, `a directory made by runlane (it holds a ${MARKER} marker)`, `${what}${hint}`);
}

/** `1 entry`, `3 entries`. */
export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/**
 * The root a CLI command works on when --root is not given: RUNLANE_ROOT, else, when the
 * command runs inside a runner's directory, that runner's `_work/_runlane` if runlane has made
 * it: the outermost `_work` on the way from / to the current directory (a `_work` a job made
 * deeper down, inside a workspace, never wins), or the current directory's own `_work`, with
 * no symlink on the way. Relative paths are resolved against `cwd`.
 */
export function findRoot(given: string | undefined, env: NodeJS.ProcessEnv, cwd: string): RootChoice | undefined {
  if (given) return { path: path.resolve(cwd, given), source: '--root' };
  const fromEnv = env.RUNLANE_ROOT?.trim();
  if (fromEnv) return { path: path.resolve(cwd, fromEnv), source: 'RUNLANE_ROOT' };
  const here = path.resolve(cwd);
  const parts = here.split('/').filter(Boolean);
  const work = parts.indexOf('_work');
  const candidate =
    work >= 0 ? path.join('/', ...parts.slice(0, work + 1), '_runlane') : path.join(here, '_work', '_runlane');
  let real: string;
  try {
    real = fs.realpathSync(candidate);
  } catch {
    return undefined;
  }
  return real === candidate && isMarkedRoot(candidate) ? { path: candidate, source: 'runner' } : undefined;
}
