import type { Identity } from '../lane/ci-identity.js';
import { SettingError } from '../common/errors.js';
import { slotParts } from '../lane/ci-identity.js';
import type { Layout } from '../root/layout.js';
import { ageOf } from '../common/units.js';
import { claimParked, copyParked, warmSlot, type WarmOrigin } from './warm.js';

/**
 * Makes the new lane `key` from a parked one, trying `sources` in order: `same` claims this
 * run's slot's newest parked lane by rename; `base` (the pull request's base branch) or a
 * branch name copies that branch's trusted slot, leaving it in place. Undefined: start cold.
 * What was tried and not taken is added to `notes`.
 */
export function startWarm(
  layout: Layout,
  sources: readonly string[],
  identity: Identity,
  key: string,
  notes: string[],
  baseBranch?: string,
): WarmOrigin | undefined {
  for (const source of sources) {
    if (source === 'same') {
      const claimed = claimParked(layout, warmSlot(slotParts(identity)), key, identity.trust);
      if (claimed) return { ...claimed, source: 'same' };
      notes.push(`warm: nothing parked for ${identity.scope} (${identity.trust})`);
      continue;
    }
    const branch = source === 'base' ? baseBranch : source;
    if (!branch) continue;
    // A trusted run of this very branch claims its own slot with `same`: nothing to copy.
    if (identity.trust === 'trusted' && identity.scopeId === `refs/heads/${branch}`) continue;
    const copy = copyParked(layout, warmSlot(slotParts(identity, branch)), key);
    if (copy && 'copied' in copy) return { ...copy.copied, source: source === 'base' ? 'base' : 'branch' };
    notes.push(copy ? `warm: not copied from ${branch}: ${copy.skipped}` : `warm: nothing parked for ${branch}`);
  }
  return undefined;
}

/** How a warm start reads in a log: `true (claimed from <key> by run 12, parked 3m ago)`. */
export function describeWarm(origin: WarmOrigin): string {
  const age = origin.parked ? `, parked ${ageOf(origin.parked)} ago` : '';
  const run = origin.runId ? ` by run ${origin.runId}` : '';
  const how = origin.how === 'claimed' ? 'claimed' : origin.how === 'reflink' ? 'cloned (reflink)' : 'copied';
  return `true (${how} from ${origin.from}${run}${age})`;
}

/**
 * A branch name as git accepts it (check-ref-format, roughly): no control characters, space,
 * `~^:?*[\\`, `..`, `@{`, no leading `-` or `/`, no trailing `/`, `.` or `.lock`.
 */
function isBranchName(name: string): boolean {
  return (
    // eslint-disable-next-line no-control-regex
    !/[\u0000-\u0020\u007f~^:?*[\\]|\.\.|@\{|\/\/|^[-/]|[/.]$|\.lock$/.test(name) && name !== '@' && name !== ''
  );
}

/** The `warm-from` list: `same`, `base` or branch names, separated by commas or newlines. */
export function parseWarmFrom(setting: string, value: string): string[] {
  const items = value
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter((item) => item !== '');
  if (items.length === 0) return ['same', 'base'];
  for (const item of items) {
    if (item !== 'same' && item !== 'base' && !isBranchName(item)) {
      throw new SettingError(setting, value, 'a list of same, base or branch names', `'${item}' is not a branch name`);
    }
  }
  return items;
}

/** `warm-keep`: parked lanes kept per slot, 1 to 100 (default 1). */
export function parseWarmKeep(setting: string, value: string): number {
  const text = value.trim() || '1';
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 100) {
    throw new SettingError(setting, value, 'a whole number from 1 to 100');
  }
  return Number(text);
}
