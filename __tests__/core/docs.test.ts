import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { parse } from 'yaml';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';
import { PRESETS } from '../../src/core/lane/presets.js';

const readme = fs.readFileSync(path.join(ACTION_DIR, 'README.md'), 'utf8');
const action = parse(fs.readFileSync(path.join(ACTION_DIR, 'action.yml'), 'utf8')) as {
  inputs: Record<string, { default?: string }>;
  outputs: Record<string, unknown>;
  runs: Record<string, string>;
};

/** The rows of the README table under `## heading`: first cell (unquoted) -> second cell. */
function table(heading: string): Map<string, string> {
  const section = readme.split(`\n## ${heading}\n`)[1]?.split('\n## ')[0] ?? '';
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    const name = /^`([^`]+)`$/.exec(cells[1] ?? '');
    if (name) rows.set(name[1], cells[2]);
  }
  return rows;
}

describe('documentation matches the code', () => {
  it('documents every input with its action.yml default, and no input that does not exist', () => {
    const documented = table('Inputs');
    expect([...documented.keys()].sort()).toEqual(Object.keys(action.inputs).sort());
    for (const [name, spec] of Object.entries(action.inputs)) {
      expect([name, documented.get(name)]).toEqual([name, `\`${spec.default === '' ? "''" : spec.default}\``]);
    }
  });

  it('documents every output', () => {
    expect([...table('Outputs').keys()].sort()).toEqual(Object.keys(action.outputs).sort());
  });

  it('documents every preset with its variables', () => {
    const documented = table('Presets');
    expect([...documented.keys()].sort()).toEqual(Object.keys(PRESETS).sort());
    for (const [name, preset] of Object.entries(PRESETS)) {
      for (const variable of preset.variables) expect(documented.get(name)).toContain(`\`${variable.name}\``);
    }
  });

  it('has a Quick start of exactly two commands, the demo and the tests', () => {
    const block = /## Quick start\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(block.trim().split('\n')).toEqual(['npm ci && npm run demo', 'npm ci && npm test']);
  });

  it('declares pre, main and post on node24, each bundled', () => {
    expect(action.runs.using).toBe('node24');
    for (const phase of ['pre', 'main', 'post'] as const) {
      expect(action.runs[phase]).toBe(`dist/${phase}/index.js`);
      expect(fs.existsSync(path.join(ACTION_DIR, action.runs[phase]))).toBe(true);
    }
  });
});

describe('the CLI help is complete', () => {
  it('lists every command, and each command lists every option it takes', async () => {
    const { buildCli } = await import('../../src/cli/cli.js');
    const { spawnSync } = await import('node:child_process');
    const cli = path.join(ACTION_DIR, 'dist', 'cli', 'index.js');
    const help = (...args: string[]) =>
      spawnSync(process.execPath, [cli, ...args, '--help'], { encoding: 'utf8' }).stdout;
    const commands = buildCli().commands;
    expect(commands.map((command) => command.name()).sort()).toEqual([
      'close',
      'empty-trash',
      'env',
      'log',
      'metrics',
      'run',
      'status',
      'sweep',
    ]);
    const top = help();
    for (const command of commands) {
      expect(top).toContain(command.name());
      const text = help(command.name());
      expect(text).toContain(command.description().slice(0, 40));
      for (const option of command.options) expect(text).toContain(option.long as string);
      expect(readme).toContain(`runlane ${command.name()}`);
    }
  });
});

describe('the README examples for other CI systems', () => {
  const blocks = (language: string) =>
    [...readme.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map((match) => match[1]);

  it('every YAML block parses', () => {
    const yaml = blocks('yaml');
    expect(yaml.length).toBeGreaterThanOrEqual(6);
    for (const block of yaml) expect(() => parse(block)).not.toThrow();
  });

  it('every `runlane run` in them uses options run takes, and a command after --', async () => {
    const { buildCli } = await import('../../src/cli/cli.js');
    const run = buildCli().commands.find((command) => command.name() === 'run');
    const known = new Set(run?.options.map((option) => option.long));
    const lines = [...blocks('yaml'), ...blocks('groovy'), ...blocks('sh')]
      .join('\n')
      .split('\n')
      .filter((line) => /runlane run /.test(line));
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) {
      const after = line.slice(line.indexOf('runlane run ') + 'runlane run '.length);
      const [options, command] = after.split(/(?:^| )-- /);
      expect(command?.trim()).toBeTruthy();
      for (const option of options.split(/\s+/).filter((word) => word.startsWith('--')))
        expect(known).toContain(option);
    }
  });
});
