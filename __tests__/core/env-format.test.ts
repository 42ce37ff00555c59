import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { formatVariables } from '../../src/cli/lane-session.js';
import { parseFileCommands } from '../../scripts/runner-sim.mjs';

const variables = [
  ['RUNLANE_DIR', "/r/lanes/k with 'quote' and $dollar"],
  ['TRICKY', 'line one\nRUNLANE_EOF\nline three'],
] as const;

describe('runlane env --format', () => {
  it('shell: export lines a POSIX shell reads back exactly', () => {
    const text = formatVariables(variables, 'shell');
    const out = spawnSync('sh', ['-c', `${text}printf '%s|%s' "$RUNLANE_DIR" "$TRICKY"`], { encoding: 'utf8' });
    expect(out.stdout).toBe(`${variables[0][1]}|${variables[1][1]}`);
  });

  it('github: a heredoc per variable whose delimiter the value cannot end early', () => {
    const text = formatVariables(variables, 'github');
    expect(text).toContain('TRICKY<<RUNLANE_EOF_\n');
    expect(parseFileCommands(text)).toEqual(Object.fromEntries(variables));
  });

  it('dotenv and json: values quoted as JSON, read back exactly', () => {
    const dotenv = formatVariables(variables, 'dotenv');
    const parsed = Object.fromEntries(
      dotenv
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), JSON.parse(line.slice(line.indexOf('=') + 1))]),
    );
    expect(parsed).toEqual(Object.fromEntries(variables));
    expect(JSON.parse(formatVariables(variables, 'json'))).toEqual(Object.fromEntries(variables));
  });
});
