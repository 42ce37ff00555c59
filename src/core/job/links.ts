import fs from 'node:fs';
import path from 'node:path';
import { SettingError, errorCode } from '../common/errors.js';
import type { LinkRequest } from '../lane/requests.js';
import { resolveExisting } from '../root/root.js';

export interface LinkPlan {
  /** Absolute path of the link in the workspace. */
  link: string;
  /** Absolute directory in the lane it points at. */
  target: string;
  /** What is at the link's path now and will be replaced: nothing, an old link, an empty directory. */
  replaces: 'nothing' | 'symlink' | 'empty directory';
}

/**
 * Checks every requested link before anything is created: its path stays inside the
 * workspace (also through symlinked parents), and what is there may be replaced: a
 * symlink or an empty directory. A file or a non-empty directory is never clobbered.
 */
export function planLinks(workspace: string | undefined, requests: readonly LinkRequest[], lane: string): LinkPlan[] {
  if (requests.length === 0) return [];
  const given = requests.map((request) => `${request.path}=${request.subdir}`).join('\n');
  if (!workspace || !path.isAbsolute(workspace)) {
    throw new SettingError('link', given, 'links only where GITHUB_WORKSPACE is set', 'there is no workspace');
  }
  const realWorkspace = resolveExisting(workspace);
  return requests.map((request) => {
    const line = `${request.path}=${request.subdir}`;
    const link = path.join(workspace, request.path);
    const realParent = resolveExisting(path.dirname(link));
    if (realParent !== realWorkspace && !realParent.startsWith(`${realWorkspace}/`)) {
      throw new SettingError(
        'link',
        line,
        'a path inside the workspace',
        `its parent resolves to ${realParent}, outside ${realWorkspace}`,
      );
    }
    return { link, target: path.join(lane, request.subdir), replaces: existing(link, line) };
  });
}

function existing(link: string, line: string): LinkPlan['replaces'] {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(link);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 'nothing';
    throw error;
  }
  if (stat.isSymbolicLink()) return 'symlink';
  const accepted = 'a workspace path that is missing, a symlink or an empty directory';
  if (stat.isDirectory()) {
    const entries = fs.readdirSync(link).length;
    if (entries === 0) return 'empty directory';
    throw new SettingError(
      'link',
      line,
      accepted,
      `${link} is a directory with ${entries} entries; runlane will not replace it (remove it, or link another path)`,
    );
  }
  throw new SettingError('link', line, accepted, `${link} is a file; runlane will not replace it`);
}

const inside = (child: string, parent: string) => {
  const relative = path.relative(parent, child);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
};

/**
 * Why a link plan read back from saved state must not be acted on, or undefined: its link
 * must lie in the workspace (also through symlinked parents) and point into the lane.
 */
export function checkLinkPlan(value: unknown, workspace: string | undefined, lane: string): string | undefined {
  if (typeof value !== 'object' || value === null) return 'a link is not an object';
  const plan = value as Record<string, unknown>;
  if (typeof plan.link !== 'string' || typeof plan.target !== 'string') return 'a link lacks its paths';
  if (!workspace || !path.isAbsolute(plan.link)) return `${plan.link} is not in a workspace`;
  const realWorkspace = resolveExisting(workspace);
  const realParent = resolveExisting(path.dirname(plan.link));
  if (!inside(plan.link, workspace) || (realParent !== realWorkspace && !inside(realParent, realWorkspace))) {
    return `${plan.link} is outside the workspace ${workspace}`;
  }
  if (path.normalize(plan.target) !== plan.target || !(plan.target === lane || inside(plan.target, lane))) {
    return `${plan.target} is not inside the lane ${lane}`;
  }
  return undefined;
}

/**
 * Makes the planned links; each replaces what it found atomically (rename over). The targets
 * inside the lane are made by openLane through its opened directories (a warm lane may bring
 * symlinks along); here only the workspace side is touched.
 */
export function makeLinks(plans: readonly LinkPlan[]): void {
  for (const plan of plans) {
    fs.mkdirSync(path.dirname(plan.link), { recursive: true });
    if (plan.replaces === 'empty directory') fs.rmdirSync(plan.link);
    const temp = `${plan.link}.runlane-${process.pid}`;
    fs.symlinkSync(plan.target, temp);
    fs.renameSync(temp, plan.link);
  }
}

/** Removes the links main made, if they are still ours; reports each one it left and why. */
export function removeLinks(plans: readonly LinkPlan[]): string[] {
  const problems: string[] = [];
  for (const plan of plans) {
    try {
      if (fs.readlinkSync(plan.link) === plan.target) fs.unlinkSync(plan.link);
      else problems.push(`${plan.link} now points elsewhere; left in place`);
    } catch (error) {
      if (errorCode(error) === 'EINVAL') problems.push(`${plan.link} is no longer a link; left in place`);
      else if (errorCode(error) !== 'ENOENT') problems.push(`${plan.link}: ${(error as Error).message}`);
    }
  }
  return problems;
}
