import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

/**
 * The part of the runner's step protocol the action speaks: inputs and state from the
 * environment, outputs, state and variables through the runner's command files, log commands
 * on stdout, and the job summary. Written here rather than taken from `@actions/core`, whose
 * HTTP client (for OIDC tokens runlane never asks for) made every phase's bundle 570 KB and
 * its start-up about 100 ms slower. Behaviour follows the runner's documented protocol.
 */

/** The value of input `name` (`INPUT_<NAME>`, spaces as `_`, upper case), trimmed; '' when unset. */
export function getInput(name: string): string {
  return (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] ?? '').trim();
}

/** State that an earlier phase of this step saved (`STATE_<name>`); '' when unset. */
export function getState(name: string): string {
  return process.env[`STATE_${name}`] ?? '';
}

export function saveState(name: string, value: string): void {
  fileCommand('GITHUB_STATE', 'save-state', name, value);
}

export function setOutput(name: string, value: string): void {
  fileCommand('GITHUB_OUTPUT', 'set-output', name, value);
}

/** Sets a variable for this process and every later step of the job. */
export function exportVariable(name: string, value: string): void {
  process.env[name] = value;
  fileCommand('GITHUB_ENV', 'set-env', name, value);
}

export function info(message: string): void {
  process.stdout.write(message + os.EOL);
}

export function warning(message: string): void {
  logCommand('warning', message);
}

export function notice(message: string): void {
  logCommand('notice', message);
}

export function error(message: string): void {
  logCommand('error', message);
}

export function startGroup(name: string): void {
  logCommand('group', name);
}

export function endGroup(): void {
  logCommand('endgroup', '');
}

/** Marks the step failed: an error annotation and exit status 1 when the process ends. */
export function setFailed(message: string): void {
  process.exitCode = 1;
  error(message);
}

/**
 * `name<<delimiter` / value / `delimiter` appended to the runner's command file, or the older
 * `::name::` log command on a runner that gives no file. The delimiter is random per write; a
 * value that contains it (it cannot by chance) is refused rather than allowed to forge lines.
 */
function fileCommand(variable: string, command: string, name: string, value: string): void {
  const file = process.env[variable];
  if (!file) {
    logCommand(command, value, { name });
    return;
  }
  const delimiter = `runlane_${randomUUID()}`;
  if (name.includes(delimiter) || value.includes(delimiter)) {
    throw new Error(`the value of ${name} contains the command file's delimiter ${delimiter}`);
  }
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${value}${os.EOL}${delimiter}${os.EOL}`, 'utf8');
}

/** `::command key=value::message`, with the runner's escapes so no text can end the command early. */
function logCommand(command: string, message: string, properties: Record<string, string> = {}): void {
  const props = Object.entries(properties)
    .map(([key, value]) => `${key}=${escapeProperty(value)}`)
    .join(',');
  process.stdout.write(`::${command}${props ? ` ${props}` : ''}::${escapeData(message)}${os.EOL}`);
}

function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(text: string): string {
  return escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

export type SummaryCell = string | { data: string; header?: boolean };

/** The job summary (Markdown with HTML) built up and appended to `GITHUB_STEP_SUMMARY`. */
export class Summary {
  private buffer = '';

  /** Cells are HTML: callers escape what they did not write themselves. */
  addHeading(text: string, level = 1): this {
    const tag = `h${Math.min(Math.max(Math.trunc(level), 1), 6)}`;
    return this.addRaw(`<${tag}>${text}</${tag}>`, true);
  }

  addRaw(html: string, newline = false): this {
    this.buffer += html + (newline ? os.EOL : '');
    return this;
  }

  addTable(rows: readonly (readonly SummaryCell[])[]): this {
    const body = rows
      .map((row) => {
        const cells = row.map((cell) => {
          const { data, header } = typeof cell === 'string' ? { data: cell, header: false } : cell;
          const tag = header ? 'th' : 'td';
          return `<${tag}>${data}</${tag}>`;
        });
        return `<tr>${cells.join('')}</tr>`;
      })
      .join('');
    return this.addRaw(`<table>${body}</table>`, true);
  }

  /** Appends what was built to the summary file (a no-op without one) and starts afresh. */
  write(): void {
    const file = process.env.GITHUB_STEP_SUMMARY;
    if (file && this.buffer) fs.appendFileSync(file, this.buffer, 'utf8');
    this.buffer = '';
  }
}
