import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { CLI, cli, cliAsNobody, laneStates, within } from '../helpers/jobs.js';
import { run, usePlaces } from '../helpers/run.js';
import { awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';

const place = usePlaces();

/** A process that runs (not gone, not a zombie waiting for its parent). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

describe('runlane run: exit status', () => {
  it.each([
    [['sh', '-c', 'exit 0'], 0],
    [['sh', '-c', 'exit 1'], 1],
    [['sh', '-c', 'exit 3'], 3],
    [['sh', '-c', 'kill -KILL $$'], 137],
    [['sh', '-c', 'kill -TERM $$'], 143],
    [['no-such-command-here'], 127],
  ])('%j exits %d, and its lane is closed', (command, status) => {
    const where = place();
    const out = run(where, ['--', ...command]);
    expect(out.status).toBe(status);
    expect(Object.values(laneStates(where.root)).filter((state) => state !== 'trash')).toEqual([]);
  });

  it('a file that cannot be executed exits 126', () => {
    const where = place();
    const file = path.join(where.cwd, 'not-executable');
    fs.writeFileSync(file, '#!/bin/sh\n');
    expect(run(where, ['--', file]).status).toBe(126);
  });

  it("runlane's own failure exits 125 with the reason, and runs nothing", () => {
    const where = place();
    const mark = path.join(where.cwd, 'ran');
    for (const args of [
      ['--cleanup', 'sometimes'],
      ['--preset', 'rustup'],
      ['--env', 'BASH_ENV=rc'],
      ['--lease-timeout', '10'],
      ['--no-such-flag'],
    ]) {
      const out = run(where, [...args, '--', 'touch', mark]);
      expect(out.status).toBe(125);
      expect(out.stderr).not.toBe('');
      expect(fs.existsSync(mark)).toBe(false);
    }
    const rootSlash = spawnSync(process.execPath, [CLI, 'run', '--root', '/', '--', 'touch', mark], {
      encoding: 'utf8',
    });
    expect(rootSlash.status).toBe(125);
    expect(rootSlash.stderr).toMatch(/Option '--root' has an invalid value "\/": it is the file-system root/);
    // A root runlane did not make is refused under the name it came from: the flag or the variable.
    const foreign = path.join(path.dirname(where.root), 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'data'), 'x');
    const byFlag = spawnSync(process.execPath, [CLI, 'run', '--root', foreign, '--', 'touch', mark], {
      encoding: 'utf8',
    });
    expect(byFlag.status).toBe(125);
    expect(byFlag.stderr).toContain(
      `Option '--root' has an invalid value ${JSON.stringify(foreign)}: it holds 1 entry`,
    );
    const byVariable = spawnSync(process.execPath, [CLI, 'run', '--', 'touch', mark], {
      encoding: 'utf8',
      env: { ...process.env, RUNLANE_ROOT: foreign },
    });
    expect(byVariable.status).toBe(125);
    expect(byVariable.stderr).toContain(`Variable 'RUNLANE_ROOT' has an invalid value ${JSON.stringify(foreign)}`);
    expect(fs.readdirSync(foreign)).toEqual(['data']);
    expect(fs.existsSync(mark)).toBe(false);
  });

  it('a root that is a file, lies below one, or holds a control character is refused by name and escaped; nothing is made', () => {
    const where = place();
    const mark = path.join(where.cwd, 'ran');
    const base = path.dirname(where.root);
    const file = path.join(base, 'a-file');
    fs.writeFileSync(file, 'x');
    const before = fs.readdirSync(base).sort();
    for (const [root, why] of [
      [file, 'it is not a directory'],
      [path.join(file, 'root'), 'a path above it is not a directory'],
      [path.join(base, 'r\n::error::forged'), 'it holds a control character (U+000A)'],
      [path.join(base, 'r\u001b[31m'), 'it holds a control character (U+001B)'],
    ]) {
      for (const command of ['run', 'status']) {
        const args = command === 'run' ? ['run', '--root', root, '--', 'touch', mark] : ['status', '--root', root];
        const out = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
        expect(out.status).toBe(command === 'run' ? 125 : 2);
        expect(out.stderr).toMatch(/^runlane: Option '--root' has an invalid value "[^\n]*": /);
        expect(out.stderr).toContain(`": ${why}. Accepted: `);
        // The value comes back escaped: one line (so no line a runner reads as a command), no terminal escape.
        expect(out.stderr.trimEnd().split('\n')).toHaveLength(1);
        expect(out.stderr).not.toMatch(/^::/m);
        expect(out.stderr).not.toContain('\u001b');
        expect(out.stderr).not.toMatch(/ENOTDIR|EEXIST/);
      }
    }
    expect(fs.readdirSync(base).sort()).toEqual(before);
    expect(fs.existsSync(mark)).toBe(false);
  });
});

describe('runlane run: the lane and its lease', () => {
  it("gives COMMAND the lane's variables in its own lane, and two runs at once two lanes", async () => {
    const where = place();
    const outs = await Promise.all(
      [1, 2].map(
        (n) =>
          new Promise<string>((resolve) => {
            const child = spawn(
              process.execPath,
              [
                CLI,
                'run',
                '--root',
                where.root,
                '--preset',
                'cargo',
                '--env',
                'FOO_CHECKPOINT_DIR=ckpt',
                '--scope',
                'main',
                '--',
                'sh',
                '-c',
                `echo "$RUNLANE_DIR|$CARGO_TARGET_DIR|$FOO_CHECKPOINT_DIR"; sleep 1`,
              ],
              { cwd: where.cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, RUN: String(n) } },
            );
            let out = '';
            child.stdout.on('data', (chunk) => (out += chunk));
            child.on('close', () => resolve(out.trim()));
          }),
      ),
    );
    const [a, b] = outs.map((out) => out.split('|'));
    expect(a[0]).not.toBe(b[0]);
    for (const [lane, target, checkpoint] of [a, b]) {
      expect(lane.startsWith(path.join(where.root, 'lanes'))).toBe(true);
      expect(target).toBe(path.join(lane, 'cargo-target'));
      expect(checkpoint).toBe(path.join(lane, 'ckpt'));
    }
  });

  it("--lease-timeout is refused for run (its lease ends with runlane); --scope main is the branch main's slot", () => {
    const where = place();
    const refused = run(where, ['--lease-timeout', '30m', '--', 'true']);
    expect(refused.status).toBe(125);
    expect(refused.stderr).toMatch(/option '--lease-timeout' has an invalid value "30m".*timeout\(1\)/i);
    expect(run(where, ['--lease-timeout', 'none', '--', 'true']).status).toBe(0);
    // A run with --scope main parks where a shell on branch main claims (and the other way round).
    fs.writeFileSync(path.join(where.cwd, 'f'), '');
    spawnSync('git', ['init', '-q', '-b', 'main'], { cwd: where.cwd });
    const parked = run(where, ['--warm', '--scope', 'main', '--', 'sh', '-c', 'echo state > "$RUNLANE_DIR/s"']);
    expect(parked.status).toBe(0);
    const claimed = run(where, ['--warm', '--', 'sh', '-c', 'cat "$RUNLANE_DIR/s"']);
    expect(claimed.status).toBe(0);
    expect(claimed.stdout.trim()).toBe('state');
  });

  it.each([
    ['SIGTERM', 'TERM', 143],
    ['SIGHUP', 'HUP', 129],
  ])(
    "%s to runlane reaches COMMAND's grandchild; runlane exits with COMMAND's status and closes the lane",
    async (signal, trapName, status) => {
      const where = place();
      const started = path.join(where.cwd, 'started');
      const got = path.join(where.cwd, 'got-signal');
      const inner = `trap 'echo ${trapName} > ${got}; exit 0' ${trapName}; touch ${started}; while :; do sleep 0.1; done`;
      const child = spawn(
        process.execPath,
        [CLI, 'run', '--root', where.root, '--', 'sh', '-c', `sh -c "${inner}" & wait`],
        { cwd: where.cwd, stdio: 'ignore' },
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      expect(await within(15_000, () => fs.existsSync(started))).toBeGreaterThanOrEqual(0);
      expect(Object.values(laneStates(where.root))).toEqual(['live']);
      child.kill(signal as NodeJS.Signals);
      expect(await exited).toBe(status);
      expect(fs.readFileSync(got, 'utf8').trim()).toBe(trapName);
      expect(Object.values(laneStates(where.root)).filter((state) => state !== 'trash')).toEqual([]);
    },
  );

  it.each([
    ['never', 'sh -c "exit 0"', 0, 'kept'],
    ['on-success', 'sh -c "exit 4"', 4, 'kept'],
    ['on-success', 'sh -c "exit 0"', 0, 'removed'],
    ['defer', 'sh -c "exit 0"', 0, 'orphan'],
  ])('--cleanup %s after `%s` (exit %d) leaves the lane %s', (cleanup, command, status, state) => {
    const where = place();
    const result = run(where, ['--cleanup', cleanup, '--', 'sh', '-c', command]);
    expect(result.status).toBe(status);
    const states = Object.values(laneStates(where.root)).filter((each) => each !== 'trash');
    expect(states).toEqual(state === 'removed' ? [] : [state]);
  });

  it('--link turns a work-tree path into a symlink into the lane for COMMAND, and removes it after', () => {
    const where = place();
    spawnSync('git', ['init', '-q'], { cwd: where.cwd });
    const result = run(where, ['--link', 'target', '--', 'sh', '-c', 'readlink target; echo built > target/out']);
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toMatch(new RegExp(`^${where.root}/lanes/[^/]+/target$`));
    expect(fs.existsSync(path.join(where.cwd, 'target'))).toBe(false);
  });

  it.each([
    ['SIGKILL of runlane alone', false],
    ["SIGKILL of runlane's whole process group (Forgejo's cancel)", true],
  ])(
    '%s takes COMMAND and every process it started along, a setsid daemon too; then the lane is an orphan the sweep reaps',
    async (_, wholeGroup) => {
      const where = place();
      const pidFile = path.join(where.cwd, 'pid');
      const daemonFile = path.join(where.cwd, 'daemon');
      const daemon = `setsid sh -c 'echo $$ > ${daemonFile}; while :; do date > "$RUNLANE_DIR/d"; sleep 0.1; done' &`;
      const child = spawn(
        process.execPath,
        [CLI, 'run', '--root', where.root, '--', 'sh', '-c', `${daemon} echo $$ > ${pidFile}; exec sleep 600`],
        { cwd: where.cwd, stdio: 'ignore', detached: wholeGroup },
      );
      const written = (file: string) => fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim() !== '';
      expect(await within(15_000, () => written(pidFile) && written(daemonFile))).toBeGreaterThanOrEqual(0);
      const pids = [pidFile, daemonFile].map((file) => Number(fs.readFileSync(file, 'utf8')));
      expect(pids.every(running)).toBe(true);
      const [key] = Object.keys(laneStates(where.root));
      expect(laneStates(where.root)[key]).toBe('live');
      if (wholeGroup) process.kill(-child.pid!, 'SIGKILL');
      else child.kill('SIGKILL');
      await new Promise((resolve) => child.on('exit', resolve));
      expect(await within(15_000, () => !pids.some(running))).toBeGreaterThanOrEqual(0);
      expect(await within(15_000, () => laneStates(where.root)[key] === 'orphan')).toBeGreaterThanOrEqual(0);
      const sweep = cli('sweep', '--root', where.root, '--json');
      expect(sweep.code).toBe(0);
      expect(sweep.json().entries).toEqual([expect.objectContaining({ key, outcome: 'reaped' })]);
    },
  );

  it('what COMMAND leaves running is ended before the lane is parked, and the summary says how many', () => {
    const where = place();
    const writer = (name: string, ignoreTerm: boolean) =>
      `perl -e '${ignoreTerm ? '$SIG{TERM} = "IGNORE"; ' : ''}open(my $f, ">>", "$ENV{RUNLANE_DIR}/${name}") or die; ` +
      `open(my $p, ">", "${name}.pid") or die; print $p $$; close $p; ` +
      `while (1) { syswrite $f, "x"; select(undef, undef, undef, 0.05) }'`;
    const script = [
      `${writer('plain', false)} &`,
      `setsid ${writer('stubborn', true)} &`,
      'while [ ! -s plain.pid ] || [ ! -s stubborn.pid ]; do sleep 0.05; done',
    ].join('\n');
    const out = run(where, ['--warm', '--grace', '1s', '--scope', 'main', '--', 'sh', '-c', script]);
    expect(out.status).toBe(0);
    expect(out.stderr).toMatch(
      /COMMAND left 2 processes running: ended them \(SIGTERM, 1 needed SIGKILL\) before closing/,
    );
    const pids = ['plain', 'stubborn'].map((name) =>
      Number(fs.readFileSync(path.join(where.cwd, `${name}.pid`), 'utf8')),
    );
    expect(pids.some(running)).toBe(false);
    expect(Object.values(laneStates(where.root))).toEqual(['parked']);
  });

  it("COMMAND reads runlane's stdin and gets the job's PERL5LIB, which runlane's keeper does not", () => {
    const where = place();
    const out = spawnSync(
      process.execPath,
      [CLI, 'run', '--root', where.root, '--', 'sh', '-c', 'read line; echo "$line|$PERL5LIB"'],
      {
        cwd: where.cwd,
        input: 'from stdin\n',
        encoding: 'utf8',
        // A PERL5OPT that would break any perl runlane started (the keeper) reaches COMMAND only.
        env: { ...process.env, PERL5LIB: '/job/lib', PERL5OPT: '-Mno::such::module' },
      },
    );
    expect(out.stderr).not.toMatch(/keeper|no::such/);
    expect(out.status).toBe(0);
    expect(out.stdout.trim()).toBe('from stdin|/job/lib');
  });

  it('--warm with a directory the runner user cannot read (mode 000, as nobody): not measured, so not parked, and it says why', () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-hidden-'));
    try {
      fs.chmodSync(parent, 0o755);
      for (const dir of ['work', 'root']) {
        fs.mkdirSync(path.join(parent, dir));
        fs.chownSync(path.join(parent, dir), 65534, 65534);
      }
      const script =
        'mkdir -p "$RUNLANE_DIR/h/x" && head -c 3145728 /dev/zero > "$RUNLANE_DIR/h/x/big" && chmod 000 "$RUNLANE_DIR/h"';
      const root = path.join(parent, 'root');
      const args = ['run', '--root', root, '--warm', '--warm-max-size', '1M', '--', 'sh', '-c', script];
      const [command, ...argv] = cliAsNobody(...args);
      const out = spawnSync(command, argv, {
        cwd: path.join(parent, 'work'),
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: path.join(parent, 'work') },
      });
      expect(out.status).toBe(0);
      expect(out.stderr).toMatch(
        /warm lane not measured: "h" cannot be opened \(EACCES\); what runlane cannot see into counts as over warm-max-size 1\.0 MiB, so the lane is not parked/,
      );
      expect(out.stderr).not.toMatch(/parked for the next run/);
      expect(Object.values(laneStates(root)).filter((state) => state !== 'trash')).toEqual([]);
    } finally {
      spawnSync('chmod', ['-R', 'u+rwx', parent]);
      awaitBackgroundDeletes(parent, 120_000);
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });

  it('--warm parks a successful lane and the next run of the same scope claims it', () => {
    const where = place();
    const warmRun = (script: string) =>
      run(where, ['--warm', '--preset', 'cargo', '--scope', 'main', '--', 'sh', '-c', script]);
    const first = warmRun('mkdir -p "$CARGO_TARGET_DIR" && echo built > "$CARGO_TARGET_DIR/state"');
    expect(first.status).toBe(0);
    expect(first.stderr).toMatch(/parked for the next run/);
    expect(Object.values(laneStates(where.root))).toEqual(['parked']);
    const second = warmRun('cat "$CARGO_TARGET_DIR/state"');
    expect(second.status).toBe(0);
    expect(second.stdout.trim()).toBe('built');
    expect(second.stderr).toMatch(/warm: true \(claimed from /);
  });

  it('runlane env prints the variables, holds the lease until runlane close', () => {
    const where = place();
    const env = spawnSync(process.execPath, [CLI, 'env', '--root', where.root, '--preset', 'tmp', '--format', 'json'], {
      cwd: where.cwd,
      encoding: 'utf8',
    });
    expect(env.status).toBe(0);
    const vars = JSON.parse(env.stdout);
    expect(vars.TMPDIR).toBe(path.join(vars.RUNLANE_DIR, 'tmp'));
    expect(fs.statSync(vars.TMPDIR).isDirectory()).toBe(true);
    expect(laneStates(where.root)[vars.RUNLANE_KEY]).toBe('live');
    const shell = spawnSync(process.execPath, [CLI, 'env', '--root', where.root, '--quiet'], {
      cwd: where.cwd,
      encoding: 'utf8',
    });
    expect(shell.stdout).toMatch(/^export RUNLANE_DIR=.+\nexport RUNLANE_KEY=.+\n$/);
    const close = cli('close', vars.RUNLANE_KEY, '--root', where.root);
    expect(close.code).toBe(0);
    expect(laneStates(where.root)[vars.RUNLANE_KEY]).not.toBe('live');
    expect(fs.existsSync(vars.RUNLANE_DIR)).toBe(false);
    const bad = cli('close', '../../etc', '--root', where.root);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`Argument 'KEY' has an invalid value "../../etc"`);
  });
});
