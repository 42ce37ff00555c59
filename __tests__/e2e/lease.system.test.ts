import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ACTION_DIR, parseFileCommands } from '../../scripts/runner-sim.mjs';
import { cli, disposeJobs, laneStates, newJob, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

type Job = ReturnType<typeof newJob>;
const MAIN = path.join(ACTION_DIR, 'dist', 'main', 'index.js');

/** The environment a runner gives main (inputs, GITHUB_* files), for running it our own way. */
function mainEnv(job: Job): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...job.stepEnv(), ...job.inputEnv() }))
    if (value !== undefined) env[name] = value;
  for (const [name, stem] of [
    ['GITHUB_OUTPUT', 'own-output'],
    ['GITHUB_STATE', 'own-state'],
    ['GITHUB_ENV', 'own-env'],
    ['GITHUB_STEP_SUMMARY', 'own-summary'],
  ]) {
    env[name] = path.join(job.dir, stem);
    fs.writeFileSync(env[name], '');
  }
  return env;
}

function outputsOf(job: Job): Record<string, string> {
  return parseFileCommands(fs.readFileSync(path.join(job.dir, 'own-output'), 'utf8'));
}

/** The one lane under a root and its state. */
function onlyLane(root: string): [string, string] {
  const entries = Object.entries(laneStates(root));
  expect(entries).toHaveLength(1);
  return entries[0] as [string, string];
}

describe('the lease bound is monotonic', () => {
  it.each(['perl', 'node'])(
    "a wall-clock jump of 10 days keeps the %s holder's lease; the bound still ends it, by the monotonic clock",
    async (holderKind) => {
      const lib = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu']
        .map((dir) => path.join(dir, 'faketime', 'libfaketime.so.1'))
        .find((file) => fs.existsSync(file));
      expect(lib).toBeDefined();
      // Long enough that the checks below (node start-ups on a loaded machine) finish within it.
      const job = newJob({ inputs: { 'lease-timeout': '20s' } });
      const stamp = path.join(job.dir, 'faketime');
      fs.writeFileSync(stamp, '+0\n');
      const faked = {
        LD_PRELOAD: lib as string,
        FAKETIME_TIMESTAMP_FILE: stamp,
        FAKETIME_NO_CACHE: '1',
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      };
      const began = Date.now();
      // The node holder stands in where the system's perl is not a program (masked in a mount namespace).
      const main =
        holderKind === 'perl'
          ? await job.run(process.execPath, [MAIN], { env: { ...job.inputEnv(), ...faked } })
          : await job.run(
              'unshare',
              [
                '--mount',
                // bash, not dash: dash drops INPUT_LEASE-TIMEOUT (a hyphen in its name) from the environment.
                'bash',
                '-c',
                'for p in /usr/bin/perl /bin/perl; do [ -e "$p" ] && mount --bind /dev/null "$p"; done; exec "$NODE" "$MAIN"',
              ],
              { env: { ...job.inputEnv(), ...faked, NODE: process.execPath, MAIN } },
            );
      expect(main.code).toBe(0);
      const holder = Number(main.state['holder-pid']);
      expect(fs.realpathSync(`/proc/${holder}/exe`)).toBe(
        fs.realpathSync(holderKind === 'perl' ? '/usr/bin/perl' : process.execPath),
      );
      const [key, before] = onlyLane(job.root);
      expect(before).toBe('live');

      fs.writeFileSync(stamp, '+10d\n');
      // The jump is real for every process under libfaketime, the holder included.
      const clock = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(Date.now()))'], {
        encoding: 'utf8',
        env: { ...process.env, ...faked },
      });
      expect(Number(clock.stdout) - Date.now()).toBeGreaterThan(9 * 86_400_000);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(laneStates(job.root)[key]).toBe('live');
      // And the bound still comes, measured on the clock that did not jump: not before 20 s.
      expect(await within(60_000, () => laneStates(job.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
      expect(Date.now() - began).toBeGreaterThanOrEqual(20_000);
    },
  );
});

describe('a holder a step cannot kill by accident', () => {
  it.each(['perl', 'node'])(
    'pkill node, killall node, pkill perl and a kill of the step process group leave the %s holder held (in a pid namespace)',
    async (holderKind) => {
      const job = newJob();
      const mark = path.join(job.dir, 'done');
      // pid 1 of a new pid namespace with its own /proc: pkill and killall see only its processes.
      // A later step runs in a session of its own, as a runner starts it, and signals the group
      // main ran in, then its own.
      const step = [
        // A decoy shows that pkill would have killed a node process.
        'node -e "setInterval(() => {}, 1000)" & decoy=$!',
        'sleep 0.5',
        'pkill node; killall node; pkill perl; killall perl',
        'sleep 0.5',
        'if kill -0 $decoy 2>/dev/null; then echo decoy-alive; else echo decoy-dead; fi > "$MARK.decoy"',
        // The process group main ran in (pid 1's, which ignores them): a holder left in it would die.
        'pg=$(ps -o pgid= -p 1 | tr -d " ")',
        'kill -HUP -- -$pg; kill -INT -- -$pg; kill -TERM -- -$pg',
        'kill -TERM -- -$$',
      ].join('\n');
      const script = [
        '[ "$$" = 1 ] || exit 9',
        // The node holder stands in where the system's perl is not a program (masked in this mount namespace).
        ...(holderKind === 'node'
          ? ['for p in /usr/bin/perl /bin/perl; do [ -e "$p" ] && mount --bind /dev/null "$p"; done']
          : []),
        // pid 1 plays the runner's worker: main is its child, and it lives on (exec keeps its pid).
        'node "$MAIN" > "$JOB_DIR/main.out" 2>&1 || exit 7',
        'setsid -w bash -c "$STEP"',
        'cat "$MARK.decoy" > "$MARK"',
        'exec sleep 600',
      ].join('\n');
      const namespace = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'bash', '-c', script], {
        env: { ...mainEnv(job), MAIN, MARK: mark, JOB_DIR: job.dir, STEP: step },
        stdio: 'ignore',
        detached: true,
      });
      try {
        expect(
          await within(30_000, () => fs.existsSync(mark) && fs.readFileSync(mark, 'utf8') !== ''),
        ).toBeGreaterThanOrEqual(0);
        expect(fs.readFileSync(path.join(job.dir, 'main.out'), 'utf8')).toContain('lease: held by pid');
        expect(fs.readFileSync(mark, 'utf8').trim()).toBe('decoy-dead');
        // Longer than the holder's check interval: had anything ended it, it would show now.
        await new Promise((resolve) => setTimeout(resolve, 1200));
        const [key, state] = onlyLane(job.root);
        expect(state).toBe('live');
        const sweep = cli('sweep', '--root', job.root, '--json');
        expect(sweep.code).toBe(0);
        expect(sweep.json().entries).toEqual([expect.objectContaining({ key, state: 'live', outcome: 'left' })]);
        expect(fs.existsSync(outputsOf(job).path)).toBe(true);
      } finally {
        namespace.kill('SIGKILL');
      }
      // The namespace gone (a container removed), its holder went with it: the lane is an orphan.
      const [key] = onlyLane(job.root);
      expect(await within(20_000, () => laneStates(job.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
    },
  );

  it("in a container-like job (main's parent outside its pid namespace), the lease ends with the container", async () => {
    const job = newJob();
    const container = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '600'], {
      stdio: 'ignore',
    });
    try {
      let init = 0;
      expect(
        await within(10_000, () => {
          const children = spawnSync('pgrep', ['-P', String(container.pid)], { encoding: 'utf8' }).stdout.trim();
          init = Number(children.split('\n')[0]);
          return init > 0;
        }),
      ).toBeGreaterThanOrEqual(0);
      // Like `docker exec`: main enters the container's namespaces from outside (its ppid is 0).
      const exec = spawnSync(
        'nsenter',
        [
          '--target',
          String(init),
          '--pid',
          '--mount',
          '--',
          process.execPath,
          '-e',
          `process.stderr.write('ppid=' + process.ppid + '\\n'); await import(${JSON.stringify(MAIN)});`,
          '--input-type=module',
        ],
        { encoding: 'utf8', env: mainEnv(job), timeout: 30_000 },
      );
      expect(exec.stderr).toContain('ppid=0');
      expect(exec.status).toBe(0);
      const [, state] = onlyLane(job.root);
      expect(state).toBe('live');
    } finally {
      container.kill('SIGKILL');
    }
    const [key] = onlyLane(job.root);
    expect(await within(20_000, () => laneStates(job.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
  });
});

describe('job-end signals where post may not run', () => {
  it("act_runner / Forgejo host mode: the lease ends when the runner removes the job's directory", async () => {
    const job = newJob({ platform: 'gitea' });
    // act's host executor: <workdir_parent>/<16 hex>/tmp is RUNNER_TEMP, removed with the job.
    const jobRoot = path.join(job.dir, 'act', randomBytes(8).toString('hex'));
    job.env.RUNNER_TEMP = path.join(jobRoot, 'tmp');
    fs.mkdirSync(job.env.RUNNER_TEMP, { recursive: true });
    // The step's parent is the long-lived daemon: this test process, which lives on.
    expect((await job.phase('main')).code).toBe(0);
    const key = job.outputs.key;
    // A step that removes RUNNER_TEMP itself (cleaning up its temporary files) ends nothing.
    fs.rmSync(job.env.RUNNER_TEMP, { recursive: true, force: true });
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(laneStates(job.root)[key]).toBe('live');
    fs.rmSync(jobRoot, { recursive: true, force: true });
    expect(await within(60_000, () => laneStates(job.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
    expect(cli('sweep', '--root', job.root).code).toBe(0);
    expect(laneStates(job.root)).toEqual({});
  });
});
