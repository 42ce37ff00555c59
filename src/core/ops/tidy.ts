import { unlinkIfAny } from '../delete/remove.js';
import { heldFlocks } from '../lease/held.js';
import { dropUnder } from '../lease/lock.js';
import type { Layout } from '../root/layout.js';
import { leaseHeld } from '../root/liveness.js';

/**
 * Lock files and metadata whose lane is gone, trash locks and failure records whose entry is
 * gone, and temporary files of interrupted metadata writes. Every metadata write happens under
 * the lane's lease, so a temporary file whose lease is free has no writer left (or is a size
 * measurement's, prepared ahead of its lock: that one then records nothing): no clock decides.
 */
export function tidyStale(layout: Layout, scanned: ReadonlySet<string>): number {
  let tidied = 0;
  // Keys the scan saw with a lane are not candidates: on a root of 100,000 lanes, only the few
  // without one are collected and looked at (a lane made since is found by laneExists below).
  const keys = new Set<string>();
  const candidate = (key: string) => {
    if (!scanned.has(key)) keys.add(key);
  };
  layout.dirIfAny('locks')?.eachName((name) => {
    if (name.endsWith('.lock')) candidate(name.slice(0, -'.lock'.length));
  });
  const temps = new Map<string, string[]>();
  layout.dirIfAny('meta')?.eachName((name) => {
    const temp = /^\.tmp-(.+)\.json-[0-9a-f]+$/.exec(name);
    if (temp) temps.set(temp[1], [...(temps.get(temp[1]) ?? []), layout.dir('meta').at(name)]);
    else if (name.endsWith('.json')) candidate(name.slice(0, -'.json'.length));
  });
  // Files are deleted here on "not held" alone, with no lock taken first: always probed for real.
  const held = { ...heldFlocks(), complete: false };
  const heldOrBad = (key: string) => {
    try {
      return leaseHeld(layout.lock(key), held);
    } catch {
      return true;
    }
  };
  for (const [key, files] of temps) {
    if (heldOrBad(key)) continue;
    for (const file of files) unlinkIfAny(file);
    tidied += files.length;
  }
  for (const key of keys) {
    if (layout.laneExists(key) || heldOrBad(key)) continue;
    if (dropUnder(layout.lock(key), () => !layout.laneExists(key), [layout.metaFile(key)])) tidied++;
  }
  const trash = layout.dirIfAny('trash');
  for (const name of trash?.names() ?? []) {
    const entry = /^(.+)\.(lock|failed\.json)$/.exec(name);
    if (!entry || !trash || trash.exists(entry[1])) continue;
    const gone = () => !trash.exists(entry[1]);
    try {
      if (dropUnder(layout.trashLock(entry[1]), gone, [trash.at(`${entry[1]}.failed.json`)])) tidied++;
    } catch {
      // An unusable lock file beside a gone entry: reported by status, left for a human.
    }
  }
  return tidied;
}
