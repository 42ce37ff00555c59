// The Quick start's first command: a full pre -> main -> post lifecycle of the bundled action
// (dist/, exactly what a runner runs) on a temporary root, narrated. Leaves nothing behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ACTION_DIR, SimulatedJob } from './runner-sim.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-demo-'));
const root = path.join(scratch, 'lanes-root');
const cli = path.join(ACTION_DIR, 'dist', 'cli', 'index.js');
const say = (text) => process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
const show = (result) => {
  const text = (result.stdout + result.stderr).trim();
  if (text) process.stdout.write(`${text.replace(/^/gm, '   | ')}\n`);
  if (result.code !== 0) throw new Error(`step failed with ${result.code}`);
};
const status = () => {
  const out = spawnSync(process.execPath, [cli, 'status', '--root', root], { encoding: 'utf8' });
  process.stdout.write(`${(out.stdout + out.stderr).trim().replace(/^/gm, '   | ')}\n`);
};

const job = new SimulatedJob({
  dir: path.join(scratch, 'runner'),
  inputs: { root, presets: 'cargo, tmp, pytest', env: 'FOO_CHECKPOINT_DIR=checkpoints', link: 'target=cargo-target' },
  matrix: { os: 'linux', rust: 'stable' },
  ref: 'refs/pull/42/merge',
  event: { name: 'pull_request', payload: { number: 42 } },
});
try {
  say(`a pull-request job of acme/widgets (matrix os=linux, rust=stable), lanes under ${root}`);
  say('pre: an opportunistic sweep before checkout');
  show(await job.phase('pre'));
  say('main: create the lane, take its lease, export variables, link target/');
  show(await job.phase('main'));
  say('outputs');
  for (const [name, value] of Object.entries(job.outputs)) process.stdout.write(`   ${name} = ${value}\n`);
  say('a build step: writes into $CARGO_TARGET_DIR, $TMPDIR and $FOO_CHECKPOINT_DIR, sees target/ linked');
  show(
    await job.run('sh', [
      '-c',
      'echo built > "$CARGO_TARGET_DIR/app" && echo scratch > "$TMPDIR/t" && echo step-1 > "$FOO_CHECKPOINT_DIR/ckpt" && ls -l target && cat target/app',
    ]),
  );
  say('runlane status while the job runs: the lane is live (its lease is held)');
  status();
  say('post: remove the lane, release the lease');
  show(await job.phase('post'));
  say('runlane status after the job');
  status();
  say('the job summary the runner would show');
  process.stdout.write(
    `${job.summary
      .replace(/<\/t[dh]>/g, ' | ')
      .replace(/<\/tr>|<\/h3>/g, '\n')
      .replace(/<[^>]+>/g, '')
      .replace(/[ \t]+/g, ' ')
      .replace(/\n\s*\n/g, '\n')
      .trim()
      .replace(/^/gm, '   | ')}\n`,
  );
  say('done: the lane lived exactly as long as the job');
} finally {
  job.dispose();
  fs.rmSync(scratch, { recursive: true, force: true });
}
