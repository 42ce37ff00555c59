import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { dockerArgs, planExports, shellQuote } from '../../src/core/lane/env-plan.js';
import { parseEnvRequests, parseLinkRequests } from '../../src/core/lane/requests.js';
import { PRESETS, parsePresets } from '../../src/core/lane/presets.js';
import { checkRoot, chooseRoot, ensureRoot, MARKER } from '../../src/core/root/root.js';
import { humanDuration, parseDuration, parseSpace } from '../../src/core/common/units.js';
import { parseWarmFrom, parseWarmKeep } from '../../src/core/warm/start.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-parse-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('presets', () => {
  it('accepts commas and newlines, drops repeats', () => {
    expect(parsePresets('cargo, tmp\npytest\n\ncargo')).toEqual(['cargo', 'tmp', 'pytest']);
  });
  it('names the unknown preset and lists the known ones', () => {
    expect(() => parsePresets('cargo,rustc')).toThrow(
      `Input 'presets' has an invalid value "cargo,rustc": unknown preset 'rustc'. Accepted: a comma- or newline-separated list of ${Object.keys(PRESETS).join(', ')}.`,
    );
  });
  it('refuses inherited object names', () => {
    expect(() => parsePresets('constructor')).toThrow(/unknown preset 'constructor'/);
  });
});

describe('env', () => {
  it('parses NAME=subdir and NAME', () => {
    expect(parseEnvRequests('FOO_CHECKPOINT_DIR=checkpoints\n# comment\nBAR\nBAZ = a//b/')).toEqual([
      { name: 'FOO_CHECKPOINT_DIR', subdir: 'checkpoints' },
      { name: 'BAR', subdir: '' },
      { name: 'BAZ', subdir: 'a/b' },
    ]);
  });
  it.each([
    ['1FOO=x', "'1FOO' is not a valid variable name"],
    ['FOO-BAR=x', "'FOO-BAR' is not a valid variable name"],
    ['FOO=/abs', "'/abs' is absolute"],
    ['FOO=../up', "'../up' has a '.' or '..' component"],
    ['FOO=a/../../b', "has a '.' or '..' component"],
    ['FOO=a\\b', 'backslash'],
    ['PATH=bin', "'PATH' is reserved"],
    ['GITHUB_ENV=x', "'GITHUB_ENV' is reserved"],
    ['RUNLANE_DIR=x', "'RUNLANE_DIR' is reserved"],
    ['PWD=x', "'PWD' is reserved"],
    ['HOME=x', "'HOME' is reserved"],
    ...[
      'BASH_ENV',
      'ENV',
      'IFS',
      'SHELLOPTS',
      'PS4',
      'PROMPT_COMMAND',
      'PYTHONSTARTUP',
      'PYTHONHOME',
      'NODE_OPTIONS',
      'GIT_DIR',
      'GIT_EXEC_PATH',
      'LD_PRELOAD',
    ].map((name) => [`${name}=x`, `'${name}' changes how later steps' shells or tools start`]),
    ['FOO=a\nFOO=b', "'FOO' is given twice"],
    ['FOO=', 'the path is empty'],
  ])('refuses %j', (input, reason) => {
    expect(() => parseEnvRequests(input)).toThrow(reason);
    expect(() => parseEnvRequests(input)).toThrow(/^Input 'env' has an invalid value/);
  });
});

describe('link', () => {
  it('defaults the subdir to the path', () => {
    expect(parseLinkRequests('target\nbuild/out=out')).toEqual([
      { path: 'target', subdir: 'target' },
      { path: 'build/out', subdir: 'out' },
    ]);
  });
  it.each([
    ['/etc=x', 'is absolute'],
    ['../outside', "'.' or '..' component"],
    ['a\na/b', "'a/b' overlaps 'a'"],
    ['t=../../x', "'.' or '..' component"],
  ])('refuses %j', (input, reason) => {
    expect(() => parseLinkRequests(input)).toThrow(reason);
  });
});

describe('planExports', () => {
  const lane = '/r/lanes/k';
  it('exports RUNLANE_DIR, then presets, then env, each with its directory', () => {
    const plan = planExports(lane, ['cargo', 'tmp'], [{ name: 'FOO_CHECKPOINT_DIR', subdir: 'checkpoints' }], {});
    expect(plan.map((e) => [e.name, e.value])).toEqual([
      ['RUNLANE_DIR', lane],
      ['CARGO_TARGET_DIR', `${lane}/cargo-target`],
      ['TMPDIR', `${lane}/tmp`],
      ['TMP', `${lane}/tmp`],
      ['TEMP', `${lane}/tmp`],
      ['FOO_CHECKPOINT_DIR', `${lane}/checkpoints`],
    ]);
  });
  it("keeps pytest's existing options and quotes a path with spaces", () => {
    const [, pytest] = planExports('/r x/lanes/k', ['pytest'], [], { PYTEST_ADDOPTS: '-p no:cacheprovider' });
    expect(pytest.value).toBe("-p no:cacheprovider --basetemp='/r x/lanes/k/pytest'");
  });
  it('refuses a variable set twice, naming both sources', () => {
    expect(() => planExports(lane, ['tmp'], [{ name: 'TMPDIR', subdir: 'x' }], {})).toThrow(
      /Input 'env' has an invalid value "TMPDIR": TMPDIR is also set by preset tmp/,
    );
  });
  it('builds docker args that survive a shell', () => {
    const plan = planExports("/r o'k/lanes/k", ['cargo'], [], {});
    expect(dockerArgs("/r o'k/lanes/k", plan)).toBe(
      `-v '/r o'"'"'k/lanes/k:/r o'"'"'k/lanes/k' -e 'RUNLANE_DIR=/r o'"'"'k/lanes/k' -e 'CARGO_TARGET_DIR=/r o'"'"'k/lanes/k/cargo-target'`,
    );
    expect(shellQuote('/plain/path')).toBe('/plain/path');
  });
});

describe('units', () => {
  it.each([
    ['30s', 30_000],
    ['90m', 5_400_000],
    ['6h', 21_600_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
  ])('duration %j = %d ms', (text, ms) => {
    expect(parseDuration('max-age', text)).toBe(ms);
  });
  it.each(['', '6x', 'h6', '0s', '-1h', '6h later', '0', '7', '45'])('refuses duration %j', (text) => {
    expect(() => parseDuration('max-age', text)).toThrow(
      `Input 'max-age' has an invalid value ${JSON.stringify(text)}`,
    );
  });
  it.each([
    ['10%', { percent: 10 }],
    ['20G', { bytes: 20 * 1024 ** 3 }],
    ['512MiB', { bytes: 512 * 1024 ** 2 }],
    ['off', { bytes: 0 }],
    ['0%', { percent: 0 }],
    ['4096b', { bytes: 4096 }],
  ])('space %j', (text, target) => {
    expect(parseSpace('keep-free', text)).toEqual(target);
  });
  it.each(['100%', 'lots', '-5G', '0', '10'])('refuses space %j', (text) => {
    expect(() => parseSpace('keep-free', text)).toThrow(/Input 'keep-free'/);
  });
  it('says which unit a bare number lacks', () => {
    expect(() => parseDuration('lease-timeout', '0')).toThrow(/a bare number has no unit: write 0s, 0m or 0h/);
    expect(() => parseSpace('keep-free', '10')).toThrow(/a bare number has no unit: write 10%, 10G or 10M/);
  });
  it('says durations in words', () => {
    expect([
      humanDuration(5_000),
      humanDuration(125_000),
      humanDuration(3_900_000),
      humanDuration(200_000_000),
    ]).toEqual(['5s', '2m', '1h 5m', '2d 7h']);
  });
});

describe('root', () => {
  const home = path.join(scratch, 'home');
  const workspace = path.join(home, '_work', 'repo', 'repo');
  fs.mkdirSync(workspace, { recursive: true });

  it('prefers the input, then RUNLANE_ROOT, then _runlane beside the workspaces, then the cache', () => {
    const env = { RUNLANE_ROOT: '/srv/lanes', RUNNER_WORKSPACE: '/h/_work/repo', XDG_CACHE_HOME: '/c' };
    expect(chooseRoot('/given', env, '/h')).toEqual({ path: '/given', source: 'input' });
    expect(chooseRoot('', env, '/h')).toEqual({ path: '/srv/lanes', source: 'RUNLANE_ROOT' });
    expect(chooseRoot('', { ...env, RUNLANE_ROOT: '' }, '/h')).toEqual({ path: '/h/_work/_runlane', source: 'runner' });
    expect(chooseRoot('', { XDG_CACHE_HOME: '/c' }, '/h')).toEqual({ path: '/c/runlane', source: 'cache' });
    expect(chooseRoot('', {}, '/h')).toEqual({ path: '/h/.cache/runlane', source: 'cache' });
    expect(chooseRoot('~/lanes', {}, '/h')).toEqual({ path: '/h/lanes', source: 'input' });
  });

  it.each([
    ['/', 'file-system root'],
    ['relative/dir', 'not absolute'],
  ])('refuses %j', (root, reason) => {
    expect(() => checkRoot(root, { home, workspace })).toThrow(reason);
  });

  it('refuses the home directory, the workspace, anything containing them and anything inside the workspace', () => {
    for (const root of [home, path.dirname(home), workspace, path.dirname(workspace), path.join(workspace, 'lanes')]) {
      expect(() => checkRoot(root, { home, workspace })).toThrow(/Input 'root' has an invalid value/);
    }
    expect(checkRoot(path.join(home, '_work', '_runlane'), { home: '/nonexistent-home', workspace })).toBe(
      path.join(fs.realpathSync(home), '_work', '_runlane'),
    );
  });

  it('refuses a root that resolves onto a protected path through a symlink', () => {
    const sneaky = path.join(scratch, 'sneaky');
    fs.symlinkSync('/', sneaky);
    expect(() => checkRoot(sneaky, { home, workspace })).toThrow('file-system root');
    const viaLink = path.join(scratch, 'to-home');
    fs.symlinkSync(home, viaLink);
    expect(() => checkRoot(viaLink, { home, workspace })).toThrow('home directory');
  });

  it('marks a new or empty root, and refuses a non-empty directory it did not make', () => {
    const fresh = path.join(scratch, 'fresh', 'root');
    ensureRoot(fresh);
    expect(fs.existsSync(path.join(fresh, MARKER))).toBe(true);
    ensureRoot(fresh);
    const foreign = path.join(scratch, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'precious.txt'), 'x');
    expect(() => ensureRoot(foreign)).toThrow(/holds 1 entry and no \.runlane-root marker/);
    expect(fs.readdirSync(foreign)).toEqual(['precious.txt']);
  });
});

describe('warm-from and warm-keep', () => {
  it('accepts what git accepts as a branch name, and nothing else', () => {
    expect(parseWarmFrom('warm-from', 'same, base, feature/x+y, release-1.2')).toEqual([
      'same',
      'base',
      'feature/x+y',
      'release-1.2',
    ]);
    expect(parseWarmFrom('warm-from', '')).toEqual(['same', 'base']);
    for (const bad of ['a..b', '-x', 'x.lock', 'a b', 'x:y', 'a//b', 'end/', '@', 'a@{1}']) {
      expect(() => parseWarmFrom('--warm-from', bad)).toThrow(`Option '--warm-from' has an invalid value`);
    }
  });
  it('keeps 1 to 100 parked lanes a slot', () => {
    expect(parseWarmKeep('warm-keep', '')).toBe(1);
    expect(parseWarmKeep('warm-keep', '100')).toBe(100);
    for (const bad of ['0', '101', '1.5', 'many']) expect(() => parseWarmKeep('warm-keep', bad)).toThrow(/1 to 100/);
  });
});
