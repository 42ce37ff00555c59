import { SettingError } from '../common/errors.js';

/** Lines of a multi-line input, trimmed, without blanks and `#` comments. */
export function inputLines(input: string): string[] {
  return input
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/**
 * A relative path below the lane (or the workspace): components separated by `/`, none of
 * them empty, `.` or `..`, no control characters or backslashes. Returns it normalised.
 */
export function checkRelativePath(setting: string, line: string, path: string): string {
  const accepted = 'a relative path such as `checkpoints` or `data/run`, without `..`';
  if (path.startsWith('/')) throw new SettingError(setting, line, accepted, `'${path}' is absolute`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(path)) {
    throw new SettingError(setting, line, accepted, `'${path}' has a control character or backslash`);
  }
  const parts = path.split('/').filter((part) => part !== '');
  if (parts.length === 0) throw new SettingError(setting, line, accepted, 'the path is empty');
  if (parts.some((part) => part === '.' || part === '..')) {
    throw new SettingError(setting, line, accepted, `'${path}' has a '.' or '..' component`);
  }
  return parts.join('/');
}

export interface EnvRequest {
  name: string;
  /** Relative to the lane; '' is the lane itself. */
  subdir: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Variables the job itself depends on: pointing them at a directory would break it. */
const RESERVED =
  /^(PATH|HOME|SHELL|USER|LOGNAME|PWD|OLDPWD|CDPATH|CI|RUNLANE_.*|GITHUB_.*|RUNNER_.*|ACTIONS_.*|GITEA_.*|FORGEJO_.*)$/;
/**
 * Variables that change how later steps' shells, interpreters and tools start (a file they
 * source, a module they preload, a repository they act on): never pointed at a directory a
 * job can write, so the env input refuses them.
 */
const ALTERS_LATER_STEPS =
  /^(BASH_ENV|ENV|IFS|SHELLOPTS|BASHOPTS|PS4|PROMPT_COMMAND|GLOBIGNORE|INPUTRC|ZDOTDIR|PYTHONSTARTUP|PYTHONHOME|PYTHONPATH|PYTHONUSERBASE|PERL5OPT|PERL5LIB|PERLLIB|RUBYOPT|RUBYLIB|NODE_OPTIONS|NODE_PATH|JAVA_TOOL_OPTIONS|JDK_JAVA_OPTIONS|_JAVA_OPTIONS|GIT_.*|LD_.*|DYLD_.*|GCONV_PATH|LOCPATH|NLSPATH|HOSTALIASES|RESOLV_HOST_CONF|SSH_ASKPASS|SUDO_ASKPASS|EDITOR|VISUAL|PAGER|BROWSER)$/;

/** Parses the `env` input: `NAME=relative/subdir` or `NAME` (the lane itself), one a line. */
export function parseEnvRequests(input: string): EnvRequest[] {
  const requests: EnvRequest[] = [];
  for (const line of inputLines(input)) {
    const eq = line.indexOf('=');
    const name = (eq < 0 ? line : line.slice(0, eq)).trim();
    const accepted = 'lines of `NAME=relative/subdir` or `NAME`, NAME a shell-style variable name';
    if (!NAME.test(name)) {
      throw new SettingError('env', line, accepted, `'${name}' is not a valid variable name`);
    }
    if (RESERVED.test(name)) {
      throw new SettingError('env', line, accepted, `'${name}' is reserved for the runner, the job or runlane`);
    }
    if (ALTERS_LATER_STEPS.test(name)) {
      throw new SettingError(
        'env',
        line,
        accepted,
        `'${name}' changes how later steps' shells or tools start; runlane never points it at a directory a job can write`,
      );
    }
    if (requests.some((request) => request.name === name)) {
      throw new SettingError('env', line, accepted, `'${name}' is given twice`);
    }
    const subdir = eq < 0 ? '' : checkRelativePath('env', line, line.slice(eq + 1).trim());
    requests.push({ name, subdir });
  }
  return requests;
}

export interface LinkRequest {
  /** Relative to the workspace. */
  path: string;
  /** Relative to the lane. */
  subdir: string;
}

/** Parses the `link` input: `workspace/path[=subdir]`, one a line; the subdir defaults to the path. */
export function parseLinkRequests(input: string): LinkRequest[] {
  const links: LinkRequest[] = [];
  for (const line of inputLines(input)) {
    const eq = line.indexOf('=');
    const path = checkRelativePath('link', line, (eq < 0 ? line : line.slice(0, eq)).trim());
    const subdir = eq < 0 ? path : checkRelativePath('link', line, line.slice(eq + 1).trim());
    const clash = links.find(
      (link) => link.path === path || link.path.startsWith(`${path}/`) || path.startsWith(`${link.path}/`),
    );
    if (clash) {
      throw new SettingError(
        'link',
        line,
        'each workspace path once, none inside another',
        `'${path}' overlaps '${clash.path}'`,
      );
    }
    links.push({ path, subdir });
  }
  return links;
}
