import type { Identity } from './ci-identity.js';
import { slotParts } from './ci-identity.js';
import type { Layout } from './layout.js';
import { ageOf } from './report.js';
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
      if (claimed) return claimed;
      notes.push(`warm: nothing parked for ${identity.scope} (${identity.trust})`);
      continue;
    }
    const branch = source === 'base' ? baseBranch : source;
    if (!branch) continue;
    // A trusted run of this very branch claims its own slot with `same`: nothing to copy.
    if (identity.trust === 'trusted' && identity.scopeId === `refs/heads/${branch}`) continue;
    const copy = copyParked(layout, warmSlot(slotParts(identity, branch)), key);
    if (copy && 'copied' in copy) return copy.copied;
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
