import { SettingError } from '../common/errors.js';

/**
 * How a preset points a tool at the lane. `set` exports the variable as the directory;
 * `pytest-basetemp` appends `--basetemp=<dir>` to what the variable already holds.
 */
export interface PresetVariable {
  name: string;
  subdir: string;
  how: 'set' | 'pytest-basetemp';
}

export interface Preset {
  description: string;
  variables: PresetVariable[];
}

const set = (name: string, subdir: string): PresetVariable => ({ name, subdir, how: 'set' });

/** Every preset; the README's preset table is checked against this list. */
export const PRESETS: Readonly<Record<string, Preset>> = {
  cargo: {
    description: "Rust/cargo build output (`target/`), the build dir that can't be shared",
    variables: [set('CARGO_TARGET_DIR', 'cargo-target')],
  },
  tmp: {
    description: 'temporary files of every tool that honours the usual variables',
    variables: [set('TMPDIR', 'tmp'), set('TMP', 'tmp'), set('TEMP', 'tmp')],
  },
  pytest: {
    description: "pytest's `tmp_path` base (xdist workers get subdirectories); keeps existing options",
    variables: [{ name: 'PYTEST_ADDOPTS', subdir: 'pytest', how: 'pytest-basetemp' }],
  },
  go: {
    description: "the go command's temporary build files",
    variables: [set('GOTMPDIR', 'go-tmp')],
  },
  'go-cache': {
    description: 'the Go build and module caches, per run (read-only module trees are handled on removal)',
    variables: [set('GOCACHE', 'go-build'), set('GOMODCACHE', 'go-mod')],
  },
  python: {
    description: "Python's bytecode caches, kept out of the checkout",
    variables: [set('PYTHONPYCACHEPREFIX', 'pycache')],
  },
  pip: {
    description: "pip's download and wheel cache",
    variables: [set('PIP_CACHE_DIR', 'pip-cache')],
  },
  npm: {
    description: "npm's cache (`npm_config_cache`)",
    variables: [set('npm_config_cache', 'npm-cache')],
  },
  gradle: {
    description: "Gradle's user home (daemon, caches): Gradle's lock files no longer shared",
    variables: [set('GRADLE_USER_HOME', 'gradle-home')],
  },
  xdg: {
    description: 'the XDG cache, state and data directories of tools that follow the spec',
    variables: [
      set('XDG_CACHE_HOME', 'xdg/cache'),
      set('XDG_STATE_HOME', 'xdg/state'),
      set('XDG_DATA_HOME', 'xdg/data'),
    ],
  },
};

/** Parses the `presets` input: names separated by commas or newlines. */
export function parsePresets(input: string): string[] {
  const names = input
    .split(/[,\n]/)
    .map((name) => name.trim())
    .filter((name) => name !== '' && !name.startsWith('#'));
  const accepted = `a comma- or newline-separated list of ${Object.keys(PRESETS).join(', ')}`;
  for (const name of names) {
    if (!Object.hasOwn(PRESETS, name)) {
      throw new SettingError('presets', input, accepted, `unknown preset '${name}'`);
    }
  }
  return [...new Set(names)];
}
