import path from 'node:path';
import { SettingError } from '../common/errors.js';
import type { EnvRequest } from './requests.js';
import { PRESETS } from './presets.js';

export interface Export {
  name: string;
  value: string;
  /** The lane directory the variable points at (created by main). */
  dir: string;
  /** Where the variable comes from: `runlane`, `preset <name>` or `env`. */
  origin: string;
}

/**
 * Every variable main exports, in order: RUNLANE_DIR, the presets', then the `env` input's.
 * A variable asked for twice (two presets, or a preset and `env`) is an error.
 */
export function planExports(
  lane: string,
  presets: readonly string[],
  requests: readonly EnvRequest[],
  current: Readonly<Record<string, string | undefined>>,
): Export[] {
  const exports: Export[] = [{ name: 'RUNLANE_DIR', value: lane, dir: lane, origin: 'runlane' }];
  const add = (next: Export, setting: string, given: string) => {
    const earlier = exports.find((existing) => existing.name === next.name);
    if (earlier) {
      throw new SettingError(
        setting,
        given,
        'each variable set by one preset or env line only',
        `${next.name} is also set by ${earlier.origin}`,
      );
    }
    exports.push(next);
  };
  for (const name of presets) {
    for (const variable of PRESETS[name].variables) {
      const dir = path.join(lane, variable.subdir);
      const value =
        variable.how === 'set' ? dir : appendOption(current[variable.name], `--basetemp=${shellQuote(dir)}`);
      add({ name: variable.name, value, dir, origin: `preset ${name}` }, 'presets', name);
    }
  }
  for (const request of requests) {
    const dir = request.subdir === '' ? lane : path.join(lane, request.subdir);
    add({ name: request.name, value: dir, dir, origin: 'env' }, 'env', request.name);
  }
  return exports;
}

function appendOption(existing: string | undefined, option: string): string {
  const before = existing?.trim() ?? '';
  return before === '' ? option : `${before} ${option}`;
}

/** POSIX shell quoting, for values a user pastes into a shell (docker-args, PYTEST_ADDOPTS). */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'"'"'`)}'`;
}

/** Arguments for `docker run`: the lane mounted at the same path, and every exported variable. */
export function dockerArgs(lane: string, exports: readonly Export[]): string {
  const args = ['-v', shellQuote(`${lane}:${lane}`)];
  for (const variable of exports) args.push('-e', shellQuote(`${variable.name}=${variable.value}`));
  return args.join(' ');
}
