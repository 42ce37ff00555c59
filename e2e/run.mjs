// npm run e2e: the failures runlane exists to end, reproduced with the real tools on a shared
// directory ("without"), then run through the bundled action ("with"). Each scenario prints a
// one-line verdict per half. The "without" halves report what the tools really did here; the
// suite fails only when a "with" half fails.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateWorkspace } from '../scripts/cargo-workspace.mjs';
import { startCacheServer } from '../scripts/cache-server.mjs';
import { SimulatedJob, awaitBackgroundDeletes } from '../scripts/runner-sim.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-e2e-'));
fs.chmodSync(scratch, 0o755);
const results = [];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (text) => process.stdout.write(`${text}\n`);
let jobs = 0;

function verdict(scenario, half, held, text) {
  results.push({ scenario, half, held });
  log(`${half === 'with' ? (held ? 'PASS' : 'FAIL') : 'SEEN'}  ${scenario} — ${half} runlane: ${text}`);
}

function newJob(options) {
  jobs++;
  return new SimulatedJob({ dir: path.join(scratch, `job-${jobs}`), ...options });
}

/** A step a runner would run, started without waiting: returns the child and its result. */
function startStep(env, script, cwd) {
  let child;
  let out = '';
  const done = new Promise((resolve) => {
    child = spawn('sh', ['-c', script], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    child.on('close', (code, signal) => resolve({ code: code ?? signal, out }));
  });
  return { child, done };
}

/** What the runner does on cancel: SIGINT to the step, then SIGKILL of the step's own pid only. */
async function cancel(child) {
  child.kill('SIGINT');
  await sleep(500);
  child.kill('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// 1. cargo: concurrent runs of one PR, one cancelled mid-build, the next starting at once.
// Each run builds, checks its binary, then cleans up its target dir as self-hosted CI does.
// The cancelled run leaves a grandchild that writes into the target dir 4 s later.
async function cargoScenario() {
  const name = 'cargo, concurrent runs of one PR with a cancel';
  const ws = path.join(scratch, 'cargo-ws');
  generateWorkspace(ws, { crates: 8, functions: 25 });
  const manifest = path.join(ws, 'Cargo.toml');
  const lateWriter = (run) =>
    `(sleep 4; mkdir -p "$CARGO_TARGET_DIR/debug" && echo "late write of cancelled run ${run}" > "$CARGO_TARGET_DIR/debug/LATE-${run}") >/dev/null 2>&1 & `;
  const build = (run) => `${run === 1 ? lateWriter(run) : ''}cargo build --offline --manifest-path ${manifest} 2>&1`;
  const check = `test -x "$CARGO_TARGET_DIR/debug/app" && "$CARGO_TARGET_DIR/debug/app" >/dev/null`;
  const cleanup = `rm -rf "$CARGO_TARGET_DIR"`;

  // Without: every run shares the runner's one target dir.
  {
    const shared = path.join(scratch, 'shared-target');
    const env = { ...process.env, CARGO_TARGET_DIR: shared };
    const runs = [2, 3].map((run) => ({
      run,
      ...startStep(env, `${build(run)} && ${check} && sleep 1 && ${cleanup}`, ws),
    }));
    const cancelled = startStep(env, build(1), ws);
    await sleep(1500);
    await cancel(cancelled.child);
    const next = startStep(env, `${build(4)} && ${check} && sleep 5 && ls "$CARGO_TARGET_DIR/debug"`, ws);
    const outcomes = await Promise.all([...runs.map((r) => r.done), next.done]);
    await sleep(4500);
    const blocked = outcomes.filter((o) => /Blocking waiting for file lock on build directory/.test(o.out)).length;
    const failed = outcomes.filter((o) => o.code !== 0).length;
    const leaked = /LATE-1/.test(outcomes[2].out) || fs.existsSync(path.join(shared, 'debug', 'LATE-1'));
    const seen = [
      blocked ? `${blocked} of 3 builds blocked on cargo's build-directory lock` : 'no build blocked on the lock',
      failed ? `${failed} of 3 runs failed (a cleanup of one run deleted another's output)` : 'no run failed',
      leaked ? "the cancelled run's late write landed in the directory the next run used" : 'no late write was seen',
    ];
    verdict(name, 'without', false, seen.join('; '));
    fs.rmSync(shared, { recursive: true, force: true });
  }

  // With: each run is a job through the bundled action, with its own lane.
  {
    const root = path.join(scratch, 'cargo-root');
    const job = (run) =>
      newJob({
        ref: 'refs/pull/11/merge',
        event: { name: 'pull_request', payload: { number: 11 } },
        env: { GITHUB_RUN_ID: String(5000 + run) },
        inputs: { root, presets: 'cargo' },
      });
    const runJob = async (j, script) => {
      await j.phase('main');
      const step = await j.run('sh', ['-c', script], { timeoutMs: 300_000 });
      j.status = step.code === 0 ? 'success' : 'failure';
      await j.phase('post');
      return step;
    };
    const [j1, j2, j3, j4] = [1, 2, 3, 4].map(job);
    const running = [
      runJob(j2, `cd ${ws} && ${build(2)} && ${check} && sleep 1 && ${cleanup}`),
      runJob(j3, `cd ${ws} && ${build(3)} && ${check} && sleep 1 && ${cleanup}`),
    ];
    await j1.phase('main');
    let cancelledChild;
    const cancelledStep = j1.run('sh', ['-c', `cd ${ws} && ${build(1)}`], {
      timeoutMs: 300_000,
      onSpawn: (c) => (cancelledChild = c),
    });
    await sleep(1500);
    await cancel(cancelledChild);
    j1.status = 'cancelled';
    const cancelPost = j1.phase('post');
    const nextLane = await j4.phase('main').then(() => j4.outputs.path);
    const nextStep = await j4.run(
      'sh',
      ['-c', `cd ${ws} && ${build(4)} && ${check} && sleep 5 && ls "$CARGO_TARGET_DIR/debug"`],
      { timeoutMs: 300_000 },
    );
    j4.status = nextStep.code === 0 ? 'success' : 'failure';
    const leaked =
      /LATE-1/.test(nextStep.stdout) || fs.existsSync(path.join(nextLane, 'cargo-target', 'debug', 'LATE-1'));
    await j4.phase('post');
    const others = await Promise.all(running);
    await Promise.all([cancelPost, cancelledStep.catch(() => undefined)]);
    const steps = [...others, nextStep];
    const blockLines = steps.flatMap((s) =>
      s.stdout.split('\n').filter((line) => /Blocking waiting for file lock/.test(line)),
    );
    const blocked = blockLines.filter((line) => /build directory/.test(line)).length;
    const failed = steps.filter((s) => s.code !== 0).length;
    const lanes = new Set([j1, j2, j3, j4].map((j) => j.outputs.path)).size;
    const held = failed === 0 && blocked === 0 && !leaked && lanes === 4;
    verdict(
      name,
      'with',
      held,
      held
        ? `4 runs in 4 lanes; 3 of 3 builds succeeded, none blocked on a build directory${blockLines.length ? ` (${blockLines.length} briefly waited on the shared CARGO_HOME: ${blockLines[0].trim()})` : ''}; the cancelled run's late write never reached the next run's lane`
        : `failed ${failed}, blocked ${blocked}, leaked ${leaked}, distinct lanes ${lanes}\n${steps
            .map((s) =>
              s.stdout
                .split('\n')
                .filter((l) => /Blocking|error/.test(l))
                .join('\n'),
            )
            .join('\n---\n')}`,
    );
    for (const j of [j1, j2, j3, j4]) j.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. pytest with xdist: two concurrent jobs whose tests write to $TMPDIR and to tmp_path, with
// the basetemp a CI config hard-codes.
const PYTEST_FILE = `
import os, pathlib, tempfile, time
import pytest

JOB = os.environ["JOB_NAME"]

@pytest.mark.parametrize("n", range(4))
def test_state_in_tmpdir(n):
    state = pathlib.Path(tempfile.gettempdir()) / f"app-state-{n}.txt"
    state.write_text(JOB)
    time.sleep(1.0)
    assert state.read_text() == JOB, f"{state} was overwritten by another job"

@pytest.mark.parametrize("n", range(4))
def test_data_in_tmp_path(tmp_path, n):
    data = tmp_path / "data.txt"
    data.write_text(JOB)
    time.sleep(1.5)
    assert data.read_text() == JOB
`;

/** The verdict on two concurrent pytest jobs run with runlane: both must pass. */
function twoJobsVerdict(name, outcomes, output, summary) {
  const held = outcomes.every((o) => o.code === 0);
  verdict(
    name,
    'with',
    held,
    held
      ? `both jobs passed (${outcomes.map((o) => summary(output(o))).join(' / ')}), each with its own TMPDIR and basetemp`
      : outcomes.map((o) => output(o).slice(-600)).join('\n---\n'),
  );
}

/** pytest's own summary line ("8 passed in 5.70s"), wherever runlane's lines put it. */
const summary = (out) => {
  const lines = out.trim().split('\n');
  return (lines.reverse().find((line) => /\d+ (passed|failed)/.test(line)) ?? lines[0] ?? '').trim();
};

async function pytestScenario() {
  const name = 'pytest -n 2, two concurrent jobs';
  const sharedTmp = path.join(scratch, 'shared-tmp');
  fs.mkdirSync(sharedTmp);
  const addopts = `--basetemp=${path.join(sharedTmp, 'pytest-ci')} -p no:cacheprovider`;
  const pytest = ['/usr/bin/python3', '-m', 'pytest', '-n', '2', '-q', 'test_race.py'];

  // Without: the host's shared /tmp (here a shared directory) and the hard-coded basetemp.
  {
    const runs = ['A', 'B'].map(async (jobName, i) => {
      const dir = path.join(scratch, `pytest-without-${jobName}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'test_race.py'), PYTEST_FILE);
      await sleep(i * 700);
      const env = { ...process.env, TMPDIR: sharedTmp, PYTEST_ADDOPTS: addopts, JOB_NAME: jobName };
      return startStep(env, pytest.join(' '), dir).done;
    });
    const outcomes = await Promise.all(runs);
    const failed = outcomes.filter((o) => o.code !== 0);
    verdict(
      name,
      'without',
      false,
      failed.length
        ? `${failed.length} of 2 jobs failed: ${failed.map((o) => summary(o.out)).join(' / ')}`
        : 'both jobs passed here (the race did not strike this time)',
    );
  }

  // With: presets tmp and pytest, the same hard-coded option still in PYTEST_ADDOPTS.
  {
    const root = path.join(scratch, 'pytest-root');
    const outcomes = await Promise.all(
      ['A', 'B'].map(async (jobName, i) => {
        const j = newJob({
          env: { PYTEST_ADDOPTS: addopts, JOB_NAME: jobName, GITHUB_RUN_ID: String(600 + i) },
          inputs: { root, presets: 'tmp, pytest' },
        });
        fs.writeFileSync(path.join(j.workspace, 'test_race.py'), PYTEST_FILE);
        await sleep(i * 700);
        await j.phase('main');
        const began = Date.now();
        const step = await j.run(pytest[0], pytest.slice(1), { timeoutMs: 120_000 });
        const ended = Date.now();
        const lane = j.outputs.path;
        await j.phase('post');
        j.dispose();
        return { ...step, lane, began, ended };
      }),
    );
    // The proof holds only if the two jobs really ran at the same time, each in its own lane.
    const [a, b] = outcomes;
    const apart = a.lane !== b.lane && a.began < b.ended && b.began < a.ended;
    if (!apart) {
      verdict(name, 'with', false, `the two jobs did not overlap in two lanes: ${a.lane} / ${b.lane}`);
      return;
    }
    twoJobsVerdict(name, outcomes, (o) => o.stdout, summary);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. An application's own state directory, with a root-owned read-only leftover at its
// default path, for a job running as an unprivileged runner user.
const APP = `#!/bin/sh
dir="\${FOO_CHECKPOINT_DIR:-$HOME/.foo/checkpoints}"
mkdir -p "$dir" && echo "step 1" > "$dir/ckpt-1" && echo "checkpointed to $dir"
`;

async function appScenario() {
  const name = 'app checkpoints, root-owned leftover at the default path';
  const home = path.join(scratch, 'runner-home');
  fs.mkdirSync(path.join(home, '.foo', 'checkpoints'), { recursive: true });
  spawnSync('chown', ['65534:65534', home]);
  fs.chmodSync(path.join(home, '.foo', 'checkpoints'), 0o555);
  fs.chmodSync(path.join(home, '.foo'), 0o555);
  const app = path.join(scratch, 'foo-app');
  fs.writeFileSync(app, APP, { mode: 0o755 });

  {
    const out = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', app], {
      encoding: 'utf8',
      env: { ...process.env, HOME: home },
    });
    verdict(
      name,
      'without',
      false,
      out.status !== 0
        ? `the job failed: ${(out.stderr || out.stdout).trim()}`
        : 'the job passed (the leftover did not stop it)',
    );
  }
  {
    const rootParent = path.join(scratch, 'app-lanes');
    fs.mkdirSync(rootParent);
    spawnSync('chown', ['65534:65534', rootParent]);
    const j = newJob({
      user: 'nobody',
      env: { HOME: home },
      inputs: { root: path.join(rootParent, 'root'), env: 'FOO_CHECKPOINT_DIR=checkpoints' },
    });
    const main = await j.phase('main');
    const step = await j.run(app);
    const post = await j.phase('post');
    const held = main.code === 0 && step.code === 0 && post.code === 0;
    verdict(
      name,
      'with',
      held,
      held
        ? `the job passed: ${step.stdout.trim()}`
        : `${main.stdout}${main.stderr}${step.stdout}${step.stderr}${post.stdout}`,
    );
    j.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// 4. The same tools through `runlane run`, as any CI system or a shell would use it: a real cargo
// build of the generated workspace, and the two concurrent pytest -n 2 jobs.
const CLI = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'cli', 'index.js');

function runlaneRun(args, env, cwd) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'run', ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    child.on('close', (code) => resolve({ code, out }));
  });
}

// 5. A fleet: host A builds on the default branch and uploads to the forge's cache service
// (protocol v1 over real HTTP); host B, another root with nothing parked, runs a PR job.
async function remoteScenario() {
  const name = 'cargo on a second host, warm through the cache service';
  const ws = path.join(scratch, 'remote-ws');
  generateWorkspace(ws, { crates: 6, functions: 20 });
  const build = `cargo build --offline --manifest-path ${path.join(ws, 'Cargo.toml')} 2>&1`;
  const compiled = (out) => (out.match(/^\s*Compiling /gm) ?? []).length;
  const server = await startCacheServer();
  try {
    const hostJob = (host, ref, payload) => {
      const job = newJob({
        ref,
        event: payload,
        env: { ACTIONS_CACHE_URL: server.url, ACTIONS_RUNTIME_TOKEN: 'token', GITHUB_WORKSPACE: ws },
        inputs: { root: path.join(scratch, `${host}-root`), presets: 'cargo', warm: 'true' },
      });
      job.workspace = ws;
      return job;
    };
    const pr = {
      name: 'pull_request',
      payload: {
        repository: { default_branch: 'main', full_name: 'acme/widgets' },
        pull_request: { number: 3, head: { repo: { full_name: 'acme/widgets' } }, base: { ref: 'main' } },
      },
    };
    // Without: host B has nothing parked and no second tier; the PR's first run there is cold.
    {
      const cold = newJob({ inputs: { root: path.join(scratch, 'cold-root'), presets: 'cargo', warm: 'true' } });
      await cold.phase('main');
      const out = await runStep(cold, build, ws);
      cold.status = 'success';
      await cold.phase('post');
      verdict(name, 'without', true, `host B's first run of the PR compiled ${compiled(out.out)} crates from scratch`);
    }
    // With: host A uploads from the default branch; host B restores, and cargo finds it fresh.
    const a = hostJob('host-a', 'refs/heads/main', {
      name: 'push',
      payload: { repository: { default_branch: 'main' } },
    });
    await a.phase('main');
    const built = await runStep(a, build, ws);
    a.status = 'success';
    const aPost = await a.phase('post');
    const b = hostJob('host-b', 'refs/pull/3/merge', pr);
    const bMain = await b.phase('main');
    const started = Date.now();
    const rebuilt = await runStep(b, build, ws);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    b.status = 'success';
    const bPost = await b.phase('post');
    const uploads = server.entries.filter((entry) => entry.committed).length;
    const held =
      built.code === 0 &&
      /runlane: uploaded /.test(aPost.stdout) &&
      b.outputs['warm-source'] === 'remote' &&
      rebuilt.code === 0 &&
      compiled(rebuilt.out) === 0 &&
      /not uploaded to the cache service: pull requests/.test(bPost.stdout) &&
      uploads === 1;
    verdict(
      name,
      'with',
      held,
      held
        ? `host A compiled ${compiled(built.out)} crates and uploaded; host B restored (warm-source ${b.outputs['warm-source']}), cargo compiled ${compiled(rebuilt.out)} in ${seconds} s, and its PR post uploaded nothing`
        : `host A build ${built.code}, uploaded: ${/runlane: uploaded /.test(aPost.stdout)}; host B warm-source '${b.outputs['warm-source']}', ${compiled(rebuilt.out)} compiled, ${uploads} entries\n${bMain.stdout}\n${rebuilt.out}`,
    );
  } finally {
    await server.close();
  }
}

/** Runs a step's script in the job's environment (the lane's variables), in `cwd`. */
async function runStep(job, script, cwd) {
  const { done } = startStep({ ...process.env, ...job.exported }, script, cwd);
  return done;
}

async function runScenario() {
  const root = path.join(scratch, 'run-root');
  {
    const name = 'cargo build through runlane run';
    const manifest = path.join(scratch, 'cargo-ws', 'Cargo.toml');
    const script = `cargo build --offline --manifest-path ${manifest} 2>&1 && ls "$CARGO_TARGET_DIR/debug" >/dev/null && echo "target: $CARGO_TARGET_DIR"`;
    const out = await runlaneRun(['--root', root, '--preset', 'cargo', '--', 'sh', '-c', script], process.env, scratch);
    const target = /target: (.*)/.exec(out.out)?.[1] ?? '';
    const held = out.code === 0 && target.startsWith(path.join(root, 'lanes')) && !fs.existsSync(target);
    verdict(
      name,
      'with',
      held,
      held ? `built in ${target}, and the lane was closed when cargo ended` : out.out.slice(-800),
    );
  }
  {
    const name = 'pytest -n 2 through runlane run, two concurrent jobs';
    const sharedTmp = path.join(scratch, 'shared-tmp-run');
    fs.mkdirSync(sharedTmp);
    const addopts = `--basetemp=${path.join(sharedTmp, 'pytest-ci')} -p no:cacheprovider`;
    const outcomes = await Promise.all(
      ['A', 'B'].map(async (jobName, i) => {
        const dir = path.join(scratch, `pytest-run-${jobName}`);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, 'test_race.py'), PYTEST_FILE);
        await sleep(i * 700);
        const env = { ...process.env, TMPDIR: sharedTmp, PYTEST_ADDOPTS: addopts, JOB_NAME: jobName };
        const args = [
          '--root',
          root,
          '--preset',
          'tmp,pytest',
          '--',
          '/usr/bin/python3',
          '-m',
          'pytest',
          '-n',
          '2',
          '-q',
          'test_race.py',
        ];
        return runlaneRun(args, env, dir);
      }),
    );
    twoJobsVerdict(name, outcomes, (o) => o.out, summary);
  }
}

try {
  const started = Date.now();
  await cargoScenario();
  await pytestScenario();
  await appScenario();
  await runScenario();
  await remoteScenario();
  const withHalves = results.filter((r) => r.half === 'with');
  const passed = withHalves.filter((r) => r.held).length;
  log(`e2e finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  log(`${passed} passed, ${withHalves.length - passed} failed`);
  process.exitCode = passed === withHalves.length ? 0 : 1;
} finally {
  awaitBackgroundDeletes(scratch);
  spawnSync('chmod', ['-R', 'u+w', scratch]);
  fs.rmSync(scratch, { recursive: true, force: true });
}
