import fs from 'node:fs';
import type { AnyStats } from './lock.js';

/** Flocks held on the machine, from /proc/locks, and whether that list is the whole truth. */
export interface HeldLocks {
  /** `major:minor:inode` of every file with a flock held. */
  ids: Set<string>;
  /**
   * True when every held flock is listed. /proc/locks hides a lock whose owner pid is not
   * visible in the reader's pid namespace, and runlane's locks are taken by a short-lived
   * `flock` child whose pid is gone at once: from a container's own pid namespace none of
   * them shows. The initial namespace sees every pid, dead ones included, so there it is complete.
   */
  complete: boolean;
}

/** The initial pid namespace's inode number (PROC_PID_INIT_INO in the kernel). */
const INIT_PID_NAMESPACE = 'pid:[4026531836]';

/**
 * The held flocks, in one read: a scan of 100,000 lanes is then a stat each and no process
 * per lane. Decides states for reports only: anything the sweep removes, it locks for real first.
 */
export function heldFlocks(): HeldLocks {
  const ids = new Set<string>();
  let text: string;
  let namespace = '';
  try {
    text = fs.readFileSync('/proc/locks', 'utf8');
    namespace = fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    return { ids, complete: false };
  }
  for (const line of text.split('\n')) {
    const match = /\bFLOCK\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+):([0-9a-f]+):(\d+)/.exec(line);
    if (match) ids.add(`${parseInt(match[1], 16)}:${parseInt(match[2], 16)}:${match[3]}`);
  }
  return { ids, complete: namespace === INIT_PID_NAMESPACE };
}

/** The /proc/locks identity of a file, from its stat (glibc's major/minor split of st_dev). */
export function flockIdentity(stat: AnyStats): string {
  const dev = BigInt(stat.dev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${stat.ino}`;
}

/**
 * The start time of a running process (clock ticks since boot), so a reused pid is not
 * mistaken for it; undefined once it has ended: gone, or a zombie whose threads have all
 * exited. A process that is exiting loses its command line (its memory goes first) before
 * its files close, so a holder whose command line is gone may hold its flock a moment longer.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z' && fields[0] !== 'X') return fields[19];
    // A zombie leader whose other threads still run (node has several) still has its files
    // open through them: it has ended only when they are gone too.
    return fs.readdirSync(`/proc/${pid}/task`).length > 1 ? fields[19] : undefined;
  } catch {
    return undefined;
  }
}
