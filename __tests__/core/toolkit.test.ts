import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { parseFileCommands } from '../../scripts/runner-sim.mjs';
import * as core from '../../src/action/toolkit.js';

let dir: string;
let saved: NodeJS.ProcessEnv;
let written: string[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-toolkit-'));
  saved = { ...process.env };
  written = [];
  jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  jest.restoreAllMocks();
  for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
  Object.assign(process.env, saved);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh command file named by `variable`, for the runner to read back. */
function commandFile(variable: string): string {
  const file = path.join(dir, variable);
  fs.writeFileSync(file, 'EARLIER=kept\n');
  process.env[variable] = file;
  return file;
}

describe('the step protocol runlane speaks', () => {
  it('appends outputs, state and variables to the command files, any text intact', () => {
    const output = commandFile('GITHUB_OUTPUT');
    const state = commandFile('GITHUB_STATE');
    const env = commandFile('GITHUB_ENV');
    // Text that would forge another variable if it were written without a delimiter.
    const hostile = 'line one\nFORGED=1\nEOF\nx<<EOF\n::error::not a command';
    core.setOutput('path', hostile);
    core.saveState('key', 'k1');
    core.exportVariable('RUNLANE_DIR', '/lanes/a b');
    expect(parseFileCommands(fs.readFileSync(output, 'utf8'))).toEqual({ EARLIER: 'kept', path: hostile });
    expect(parseFileCommands(fs.readFileSync(state, 'utf8'))).toEqual({ EARLIER: 'kept', key: 'k1' });
    expect(parseFileCommands(fs.readFileSync(env, 'utf8'))).toEqual({ EARLIER: 'kept', RUNLANE_DIR: '/lanes/a b' });
    expect(process.env.RUNLANE_DIR).toBe('/lanes/a b');
    expect(written).toEqual([]);
  });

  it('falls back to log commands, escaped, on a runner that gives no command file', () => {
    delete process.env.GITHUB_OUTPUT;
    delete process.env.GITHUB_STATE;
    core.setOutput('a:b,c', 'v\n%');
    core.saveState('key', 'k');
    expect(written).toEqual([`::set-output name=a%3Ab%2Cc::v%0A%25${os.EOL}`, `::save-state name=key::k${os.EOL}`]);
  });

  it('keeps every log message on one line: no text can start a command of its own', () => {
    core.warning('lane a\n::error::forged\r\n::save-state name=x::y');
    core.startGroup('sweep\n::endgroup::');
    core.endGroup();
    core.info('plain');
    expect(written).toEqual([
      `::warning::lane a%0A::error::forged%0D%0A::save-state name=x::y${os.EOL}`,
      `::group::sweep%0A::endgroup::${os.EOL}`,
      `::endgroup::${os.EOL}`,
      `plain${os.EOL}`,
    ]);
  });

  it('fails the step with an error annotation and exit status 1', () => {
    const before = process.exitCode;
    try {
      core.setFailed('no root');
      expect(process.exitCode).toBe(1);
      expect(written).toEqual([`::error::no root${os.EOL}`]);
    } finally {
      process.exitCode = before;
    }
  });

  it('reads inputs as the runner names them, trimmed, and state saved earlier', () => {
    process.env['INPUT_LEASE-TIMEOUT'] = '  6h \n';
    process.env.INPUT_PRE_SWEEP = 'off';
    process.env.STATE_key = 'k2';
    expect(core.getInput('lease-timeout')).toBe('6h');
    expect(core.getInput('pre sweep')).toBe('off');
    expect(core.getInput('absent')).toBe('');
    expect(core.getState('key')).toBe('k2');
    expect(core.getState('other')).toBe('');
  });

  it('appends a job summary of headings, raw HTML and tables; nothing without a summary file', () => {
    const file = commandFile('GITHUB_STEP_SUMMARY');
    new core.Summary()
      .addHeading('runlane: lane', 3)
      .addRaw('<code>x</code>', true)
      .addTable([
        [
          { data: 'what', header: true },
          { data: 'value', header: true },
        ],
        ['path', '/l'],
      ])
      .write();
    expect(fs.readFileSync(file, 'utf8')).toBe(
      `EARLIER=kept\n<h3>runlane: lane</h3>${os.EOL}<code>x</code>${os.EOL}` +
        `<table><tr><th>what</th><th>value</th></tr><tr><td>path</td><td>/l</td></tr></table>${os.EOL}`,
    );
    delete process.env.GITHUB_STEP_SUMMARY;
    expect(() => new core.Summary().addRaw('lost').write()).not.toThrow();
  });
});
