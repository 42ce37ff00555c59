// A stand-in for the runner, for tests and the demo: runs each phase of the bundled action as
// its own `node` process, as GitHub's runner and act_runner do - INPUT_* from `with:` and
// action.yml defaults, file commands (GITHUB_ENV, GITHUB_OUTPUT, GITHUB_STATE,
// GITHUB_STEP_SUMMARY) read back after each step, STATE_* handed to the later phases, and the
// exported environment handed to the steps that follow.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

export const ACTION_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = path.join('scripts', 'fake-worker.mjs');

let staged;
/**
 * A copy of the bundled action (dist/, action.yml, the fake worker) that any user can read,
 * for phases and commands run as another user: a clone under /root or in a mktemp directory
 * is not readable by them. Made once per process, removed when it exits.
 */
export function stagedActionDir() {
  if (staged && fs.existsSync(staged)) return staged;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-action-'));
  fs.cpSync(path.join(ACTION_DIR, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(ACTION_DIR, 'action.yml'), path.join(dir, 'action.yml'));
  fs.mkdirSync(path.join(dir, 'scripts'));
  fs.copyFileSync(path.join(ACTION_DIR, WORKER), path.join(dir, WORKER));
  const open = (target) => {
    const stat = fs.statSync(target);
    fs.chmodSync(target, stat.isDirectory() ? 0o755 : 0o644 | (stat.mode & 0o111 ? 0o111 : 0));
    if (stat.isDirectory()) for (const name of fs.readdirSync(target)) open(path.join(target, name));
  };
  open(dir);
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  staged = dir;
  return dir;
}

/** Parses a file written with `name<<delimiter` blocks or `name=value` lines. */
export function parseFileCommands(text) {
  const values = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i]);
      values[heredoc[1]] = body.join('\n');
    } else {
      const eq = line.indexOf('=');
      values[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return values;
}

function evaluateDefault(value, job) {
  return String(value ?? '').replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expression) => {
    if (expression === 'toJSON(matrix)') return job.matrix === undefined ? 'null' : JSON.stringify(job.matrix, null, 2);
    if (expression === 'job.status') return job.status;
    throw new Error(`the simulated runner cannot evaluate \${{ ${expression} }}`);
  });
}

/**
 * One job on a simulated runner. `options`: inputs (the step's `with:`), env (extra or
 * overriding variables), platform ('github' | 'gitea' | 'forgejo'), matrix (object), ref,
 * event ({ name, payload }), dir (scratch directory; made if absent), user ('nobody' to run
 * every phase and step unprivileged).
 */
export class SimulatedJob {
  constructor(options = {}) {
    this.dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-job-'));
    this.inputs = options.inputs ?? {};
    this.matrix = options.matrix;
    this.status = 'success';
    this.state = {};
    this.exported = {};
    this.outputs = {};
    this.summary = '';
    this.workspace = path.join(this.dir, '_work', 'repo', 'repo');
    fs.mkdirSync(this.workspace, { recursive: true });
    fs.mkdirSync(path.join(this.dir, '_work', '_temp'), { recursive: true });
    const event = options.event ?? { name: 'push', payload: {} };
    const eventPath = path.join(this.dir, 'event.json');
    fs.writeFileSync(eventPath, JSON.stringify(event.payload));
    const platform = options.platform ?? 'github';
    this.env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? os.homedir(),
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_REPOSITORY: 'acme/widgets',
      GITHUB_REF: options.ref ?? 'refs/heads/main',
      GITHUB_RUN_ID: '1000',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_JOB: 'build',
      GITHUB_EVENT_NAME: event.name,
      GITHUB_EVENT_PATH: eventPath,
      GITHUB_WORKSPACE: this.workspace,
      RUNNER_WORKSPACE: path.dirname(this.workspace),
      RUNNER_TEMP: path.join(this.dir, '_work', '_temp'),
      ...(platform === 'github' ? { RUNNER_TRACKING_ID: `github_${randomUUID()}` } : {}),
      ...(platform !== 'github' ? { GITEA_ACTIONS: 'true', GITHUB_RUN_ATTEMPT: '' } : {}),
      ...(platform === 'forgejo'
        ? {
            FORGEJO_ACTIONS: 'true',
            FORGEJO_REPOSITORY: 'acme/widgets',
            FORGEJO_RUN_ID: '1000',
            GITHUB_RUN_ATTEMPT: '1',
          }
        : {}),
      ...(options.env ?? {}),
    };
    this.steps = 0;
    // `user: 'nobody'`: every phase and step runs unprivileged, as a runner user would, from
    // a copy of the action that user can read.
    this.uid = options.user === 'nobody' ? 65534 : undefined;
    this.actionDir = this.uid === undefined ? ACTION_DIR : stagedActionDir();
    this.action = parseYaml(fs.readFileSync(path.join(this.actionDir, 'action.yml'), 'utf8'));
    if (this.uid !== undefined) {
      for (const dir of [
        this.dir,
        path.join(this.dir, '_work'),
        path.dirname(this.workspace),
        this.workspace,
        this.env.RUNNER_TEMP,
      ]) {
        fs.chownSync(dir, this.uid, this.uid);
      }
      fs.chmodSync(this.dir, 0o755);
    }
  }

  /** INPUT_* as the runner sets them: `with:` values, else action.yml defaults, evaluated. */
  inputEnv() {
    const env = {};
    for (const [name, spec] of Object.entries(this.action.inputs ?? {})) {
      const value = Object.hasOwn(this.inputs, name) ? String(this.inputs[name]) : evaluateDefault(spec.default, this);
      env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value;
    }
    return env;
  }

  /**
   * Runs one phase ('pre' | 'main' | 'post') of the bundled action. With `worker: true` the
   * phase is started by a fake worker process (like Runner.Worker) that stays alive until
   * `killWorker()`, so a test can kill the job the way a crashed runner does.
   */
  async phase(name, { worker = false, timeoutMs = 60_000 } = {}) {
    const script = path.join(this.actionDir, this.action.runs[name]);
    const env = { ...this.env, ...this.exported, ...this.inputEnv() };
    for (const [key, value] of Object.entries(this.state)) env[`STATE_${key}`] = value;
    return this.step(process.execPath, [script], env, { worker, timeoutMs, phase: name });
  }

  /** Runs an ordinary step (a command, no shell) with the environment exported so far. */
  async run(command, args = [], { timeoutMs = 120_000, env = {}, onSpawn } = {}) {
    return this.step(command, args, { ...this.env, ...this.exported, ...env }, { worker: false, timeoutMs, onSpawn });
  }

  async step(command, args, env, { worker, timeoutMs, phase, onSpawn }) {
    const id = ++this.steps;
    const files = {};
    for (const [variable, stem] of [
      ['GITHUB_ENV', 'env'],
      ['GITHUB_OUTPUT', 'output'],
      ['GITHUB_STATE', 'state'],
      ['GITHUB_STEP_SUMMARY', 'summary'],
    ]) {
      files[variable] = path.join(this.dir, `${stem}-${id}`);
      fs.writeFileSync(files[variable], '');
      if (this.uid !== undefined) fs.chownSync(files[variable], this.uid, this.uid);
      env[variable] = files[variable];
    }
    let argv = worker ? [path.join(this.actionDir, WORKER), command, ...args] : args;
    let program = worker ? process.execPath : command;
    if (this.uid !== undefined) {
      argv = [`--reuid=${this.uid}`, `--regid=${this.uid}`, '--clear-groups', program, ...argv];
      program = 'setpriv';
    }
    const child = spawn(program, argv, {
      cwd: this.workspace,
      env,
      stdio: ['ignore', 'pipe', 'pipe', ...(worker ? ['ipc'] : [])],
    });
    if (worker) this.worker = child;
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const finished = worker
      ? new Promise((resolve) => child.once('message', (message) => resolve(message.code)))
      : new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? signal)));
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(
            `step ${phase ?? command} did not finish in ${timeoutMs} ms (its stdio stayed open?)\n${stdout}\n${stderr}`,
          ),
        );
      }, timeoutMs);
    });
    const code = await Promise.race([finished, timeout]).finally(() => clearTimeout(timer));
    if (worker) {
      // Give the worker's pipes a moment; the worker itself lives on until killed.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const read = (variable) => fs.readFileSync(files[variable], 'utf8');
    const exported = parseFileCommands(read('GITHUB_ENV'));
    const outputs = parseFileCommands(read('GITHUB_OUTPUT'));
    const state = parseFileCommands(read('GITHUB_STATE'));
    Object.assign(this.exported, exported);
    Object.assign(this.outputs, outputs);
    Object.assign(this.state, state);
    const summary = read('GITHUB_STEP_SUMMARY');
    this.summary += summary;
    const annotations = (kind) =>
      stdout
        .split('\n')
        .filter((line) => line.startsWith(`::${kind}`))
        .map((line) =>
          line
            .slice(line.indexOf('::', 2) + 2)
            .replace(/%0A/g, '\n')
            .replace(/%25/g, '%'),
        );
    return {
      code,
      stdout,
      stderr,
      exported,
      outputs,
      state,
      summary,
      warnings: annotations('warning'),
      errors: annotations('error'),
    };
  }

  /** SIGKILLs the fake worker, as a crashed runner or a killed host would end it. */
  killWorker() {
    this.worker?.kill('SIGKILL');
  }

  /** Every variable the runner would give the next step. */
  stepEnv() {
    return { ...this.env, ...this.exported };
  }

  dispose() {
    this.killWorker();
    awaitBackgroundDeletes(this.dir);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Waits (up to `timeoutMs`) for the background deletes that post and `runlane run` started on
 * roots under `dir`: removing the directory under them races their renames in the trash.
 */
export function awaitBackgroundDeletes(dir, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  const running = () =>
    fs.readdirSync('/proc').some((pid) => {
      if (!/^\d+$/.test(pid)) return false;
      try {
        const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return args.includes('empty-trash') && args.some((arg) => arg.startsWith(dir + path.sep));
      } catch {
        return false;
      }
    });
  while (running() && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
}
