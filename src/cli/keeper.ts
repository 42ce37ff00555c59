import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundled } from '../core/common/bundles.js';
import { errorCode, errorMessage } from '../core/common/errors.js';
import { PERLS, executable } from '../core/lease/holder.js';

/** How COMMAND ended, and what it left running that runlane ended before the lane was closed. */
export interface CommandEnd {
  /** COMMAND's exit status, 128+N for a death by signal N, 126/127 when it could not be run. */
  status: number;
  /** Processes COMMAND left that were ended (SIGTERM, then SIGKILL after the grace). */
  ended: number;
  /** Of those, how many needed SIGKILL. */
  killed: number;
  /** What runlane has to say about it (a command that could not run, a keeper that died). */
  problem?: string;
}

/** COMMAND, running. */
export interface RunningCommand {
  /** Passes on a signal runlane took: to COMMAND's process group, or once it exited, to what it left. */
  signal(signal: NodeJS.Signals): void;
  done: Promise<CommandEnd>;
  /** Why processes that leave COMMAND's session cannot be ended, if they cannot. */
  limit?: string;
}

export interface CommandOptions {
  env: NodeJS.ProcessEnv;
  /** After COMMAND exits, how long what it left gets between SIGTERM and SIGKILL. */
  graceMs: number;
  /** The lease's locked descriptor: the keeper holds it too, so the lease lasts while COMMAND's processes do. */
  lockFd: number;
}

const KEEPER = () => path.join(path.dirname(bundled('cli')), 'keeper.pl');

/**
 * Starts COMMAND under the keeper (`keeper.pl`): a perl process in a session of its own that
 * is COMMAND's parent and a child subreaper. Why a keeper and not a process group or a
 * PR_SET_PDEATHSIG alone: a CI's cancel signals the job script's process group and SIGKILLs
 * runlane before any grace (Forgejo), and a SIGKILLed process can do nothing; a process group
 * or a session is left by one setsid(2), and a parent-death signal reaches only the direct
 * child. The subreaper sees every process COMMAND starts, however it detaches, and holds the
 * lease (its copy of the locked descriptor) until the last of them is gone. Node cannot make
 * itself a subreaper (no prctl), perl can in a process that starts in milliseconds.
 *
 * Without a usable perl, COMMAND runs as runlane's child in a session of its own, as before,
 * and `limit` says what is then not contained.
 */
export function startCommand(command: readonly string[], options: CommandOptions): RunningCommand {
  const perl = PERLS.find((file) => executable(file));
  let program: string | undefined;
  try {
    program = perl ? fs.readFileSync(KEEPER(), 'utf8') : undefined;
  } catch {
    program = undefined;
  }
  if (!perl || !program) {
    const why = perl ? `no keeper.pl beside runlane's bundle` : `no perl at ${PERLS.join(' or ')}`;
    return { ...startDirect(command, options.env), limit: `${why}: COMMAND runs unkept` };
  }
  return startKept(perl, program, command, options);
}

function startKept(perl: string, program: string, command: readonly string[], options: CommandOptions): RunningCommand {
  const environment = Object.entries(options.env).flatMap(([name, value]) =>
    value === undefined ? [] : [`${name}=${value}`],
  );
  const child = spawn(perl, ['-'], {
    argv0: 'runlane-run-keeper',
    // No PERL5OPT, PERL5LIB or PERL5DB of the job's runs in the keeper; COMMAND gets them back.
    env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PERL'))),
    detached: true,
    stdio: ['pipe', 'inherit', 'inherit', options.lockFd, 0, 'pipe'],
  });
  const lifeline = child.stdin;
  lifeline?.on('error', () => undefined);
  const fields = [String(Math.round(options.graceMs)), String(environment.length), ...environment];
  fields.push(String(command.length), ...command);
  lifeline?.write(`${program}\n__END__\n${fields.map((field) => `${field}\0`).join('')}`);
  let commandPid: number | undefined;
  const running: RunningCommand = {
    signal(signal) {
      lifeline?.write(`${signal}\n`);
    },
    done: new Promise<CommandEnd>((resolve) => {
      let result: CommandEnd | undefined;
      const reports = (child.stdio as unknown as (NodeJS.ReadableStream | null)[])[5];
      onLines(reports, (line) => {
        const [word, ...rest] = line.split(' ');
        if (word === 'started') {
          commandPid = Number(rest[0]);
          if (rest[1] !== '1')
            running.limit = 'prctl(PR_SET_CHILD_SUBREAPER) failed: only what stays in its process tree is ended';
        } else if (word === 'failed') {
          const errno = Number(rest[0]);
          const message = rest.slice(1).join(' ');
          result = { status: errno === os.constants.errno.ENOENT ? 127 : 126, ended: 0, killed: 0, problem: message };
        } else if (word === 'exited') {
          const [code, signal, ended, killed] = rest.map(Number);
          result = { status: signal ? 128 + signal : code, ended, killed };
        }
      });
      child.once('error', (error) => resolve({ status: 125, ended: 0, killed: 0, problem: errorMessage(error) }));
      child.once('close', (code, signal) => {
        lifeline?.destroy();
        if (result) return resolve(result);
        // The keeper died without a word (killed): COMMAND's group goes with it.
        if (commandPid) killGroup(commandPid, 'SIGKILL');
        resolve({
          status: 125,
          ended: 0,
          killed: 0,
          problem: `runlane's keeper process ended (${signal ?? `exit ${code}`}) before COMMAND's end was known; COMMAND's process group was killed`,
        });
      });
    }),
  };
  return running;
}

/** Calls `each` with every whole line `stream` writes (the keeper's reports: one word, then fields). */
function onLines(stream: NodeJS.ReadableStream | null | undefined, each: (line: string) => void): void {
  let text = '';
  stream?.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n')) {
      const line = text.slice(0, end);
      text = text.slice(end + 1);
      each(line);
    }
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** COMMAND as runlane's own child in a session of its own: for hosts without perl. */
function startDirect(command: readonly string[], env: NodeJS.ProcessEnv): RunningCommand {
  const child: ChildProcess = spawn(command[0], command.slice(1), { stdio: 'inherit', env, detached: true });
  let exited = false;
  return {
    signal(signal) {
      if (!exited && child.pid) killGroup(child.pid, signal);
    },
    done: new Promise<CommandEnd>((resolve) => {
      child.once('error', (error) => {
        exited = true;
        const status = errorCode(error) === 'ENOENT' ? 127 : 126;
        resolve({ status, ended: 0, killed: 0, problem: errorMessage(error) });
      });
      child.once('exit', (code, signal) => {
        exited = true;
        resolve({ status: code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0), ended: 0, killed: 0 });
      });
    }),
  };
}
