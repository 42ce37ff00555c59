import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { VERSION } from '../../src/core/common/version.js';
import { ACTION_DIR, awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { CLI } from '../helpers/jobs.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-cli-'));
afterAll(() => {
  awaitBackgroundDeletes(scratch);
  fs.rmSync(scratch, { recursive: true, force: true });
});

function runlane(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const out = spawnSync(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? scratch,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

/** A marked root made the way a job makes one: a `runlane run` in it. */
function madeRoot(root: string): void {
  expect(runlane(['run', '--root', root, '--quiet', '--', 'true']).code).toBe(0);
}

describe('the CLI as operators expect it', () => {
  it('prints its version, the one package.json has', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ACTION_DIR, 'package.json'), 'utf8'));
    expect(VERSION).toBe(pkg.version);
    const out = runlane(['--version']);
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe(pkg.version);
  });

  it.each([
    ['no command at all', []],
    ['an unknown command', ['frobnicate']],
    ['an unknown option', ['status', '--bogus']],
    ['an extra argument', ['status', 'extra']],
    ['a value without a unit', ['sweep', '--root', scratch, '--max-age', '7']],
    ['a bad choice', ['sweep', '--root', scratch, '--privileged', 'doas']],
  ])('%s is a usage error: exit 2', (_, args) => {
    const out = runlane(args);
    expect(out.code).toBe(2);
    expect(`${out.stderr}${out.stdout}`).toMatch(/error|invalid|Usage:/i);
  });

  it('shows defaults as they are written', () => {
    const help = runlane(['sweep', '--help']).stdout;
    expect(help).toContain('(default: 7d)');
    expect(help).toContain('(default: 10%)');
    expect(help).not.toMatch(/604800000|"percent"/);
  });

  it('says why a value is refused in a sentence, then what is accepted', () => {
    const zero = runlane(['sweep', '--root', scratch, '--max-age', '0s']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain(
      "error: option '--max-age <duration>' argument '0s' is invalid. It must be longer than zero. Accepted: a duration",
    );
    const unit = runlane(['sweep', '--root', scratch, '--max-age', '7']);
    expect(unit.stderr).toContain("argument '7' is invalid. A bare number has no unit: write 7s, 7m or 7h. Accepted:");
  });

  it('names the option and the value in every root error, with a hint where one helps', () => {
    const passwd = runlane(['status', '--root', '/etc/passwd']);
    expect(passwd.code).toBe(2);
    expect(passwd.stderr).toContain(`Option '--root' has an invalid value "/etc/passwd": it is not a directory`);
    const empty = path.join(scratch, 'empty');
    fs.mkdirSync(empty);
    const unmarked = runlane(['sweep', '--root', empty]);
    expect(unmarked.code).toBe(2);
    expect(unmarked.stderr).toContain('it is an empty directory without a .runlane-root marker');
    const root = path.join(scratch, 'named-root');
    madeRoot(root);
    const inside = runlane(['status', '--root', path.join(root, 'lanes')]);
    expect(inside.code).toBe(2);
    expect(inside.stderr).toContain(`its parent ${root} is a runlane root: give that`);
    const fromEnv = runlane(['status'], { env: { RUNLANE_ROOT: '/etc/passwd' } });
    expect(fromEnv.stderr).toContain(`'RUNLANE_ROOT' has an invalid value "/etc/passwd"`);
    const none = runlane(['status'], { cwd: '/' });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no root: pass --root DIR, set RUNLANE_ROOT/);
  });

  it('status gives the holder, the lease bound and the trust class in JSON, and a totals line', () => {
    const root = path.join(scratch, 'status-root');
    madeRoot(root);
    const env = runlane(['env', '--root', root, '--format', 'json', '--lease-timeout', '2h', '--quiet']);
    expect(env.code).toBe(0);
    const key = JSON.parse(env.stdout).RUNLANE_KEY;
    const status = runlane(['status', '--root', root, '--json']);
    const lane = JSON.parse(status.stdout).lanes.find((row: { key: string }) => row.key === key);
    expect(lane).toMatchObject({ state: 'live', trust: 'trusted' });
    expect(Number.isInteger(lane.holderPid)).toBe(true);
    const until = Date.parse(lane.leaseUntil) - Date.parse(lane.created);
    expect(until).toBe(2 * 3_600_000);
    const text = runlane(['status', '--root', root]).stdout.trim().split('\n');
    expect(text[text.length - 2]).toMatch(/^total: \d+ lanes? \(1 live.*\), .*$/);
    expect(text[text.length - 1]).toMatch(
      /^free on the root's file system: .* of .* \(\d+\.\d%\); keep-free 10% \(.*\): (met|NOT met, .* short .*)$/,
    );
    expect(runlane(['close', key, '--root', root, '--quiet']).code).toBe(0);
  });

  it('resolves a relative --root', () => {
    madeRoot(path.join(scratch, 'relative-root'));
    const out = runlane(['status', '--root', 'relative-root', '--json']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout).root).toBe(path.join(fs.realpathSync(scratch), 'relative-root'));
  });

  it("finds the runner's _work/_runlane from inside the runner's directory", () => {
    const runner = path.join(scratch, 'actions-runner');
    const workspace = path.join(runner, '_work', 'repo', 'repo');
    fs.mkdirSync(workspace, { recursive: true });
    madeRoot(path.join(runner, '_work', '_runlane'));
    // A root a job planted deeper down, inside its workspace, never wins over the runner's own.
    madeRoot(path.join(workspace, '_work', '_runlane'));
    for (const cwd of [workspace, path.join(runner, '_work'), runner]) {
      const out = runlane(['status', '--json'], { cwd });
      expect(out.code).toBe(0);
      expect(JSON.parse(out.stdout).root).toBe(path.join(fs.realpathSync(runner), '_work', '_runlane'));
    }
  });
});
