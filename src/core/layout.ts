import fs from 'node:fs';
import path from 'node:path';
import { readJson, writeFileAtomic } from './atomic.js';
import { errorCode } from './errors.js';

/** What runlane records about a lane, beside it (never inside the user's directory). */
export interface LaneMeta {
  version: 1;
  key: string;
  repository: string;
  scope: string;
  runId: string;
  runAttempt: string;
  job: string;
  matrix: string;
  /** ISO time of creation. */
  created: string;
  host: string;
  cleanup: string;
  /** Pid of the lease holder, for the post phase and for humans; liveness is the lock's. */
  holderPid?: number;
  /** Kept on purpose (`cleanup: never`, or `on-success` after a failure): not an orphan. */
  retained?: string;
  /** The warm slot (repository, scope, job, matrix leg) whose next run may claim it. */
  slot?: string;
  /** ISO time it was parked for the next run, when it is. */
  parked?: string;
  /** How long its job ran (main to post): what a warm start can save at most. */
  jobMs?: number;
  /** Where this lane came from, when it was started warm. */
  warmFrom?: string;
}

/**
 * The root's layout. Lanes are flat under `lanes/` so a scan is one readdir; each lane's lock
 * and metadata live in sibling directories, at paths that stay put when the lane is renamed.
 */
export class Layout {
  readonly lanes: string;
  readonly locks: string;
  readonly meta: string;
  /** Lanes renamed out of the way, waiting for the background delete or the sweep. */
  readonly trash: string;
  /** Lanes of successful jobs, per warm slot, waiting for the next run to claim them. */
  readonly parked: string;

  constructor(readonly root: string) {
    this.lanes = path.join(root, 'lanes');
    this.locks = path.join(root, 'locks');
    this.meta = path.join(root, 'meta');
    this.trash = path.join(root, 'trash');
    this.parked = path.join(root, 'parked');
  }

  ensure(): void {
    for (const dir of [this.lanes, this.locks, this.meta, this.trash, this.parked])
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  }

  lane(key: string): string {
    return path.join(this.lanes, key);
  }

  parkedLane(slot: string, key: string): string {
    return path.join(this.parked, slot, key);
  }

  /** Whether the lane of `key` exists, in lanes/ or parked in its slot. */
  laneExists(key: string): boolean {
    if (fs.existsSync(this.lane(key))) return true;
    const slot = this.readMeta(key)?.slot;
    return slot !== undefined && fs.existsSync(this.parkedLane(slot, key));
  }

  lock(key: string): string {
    return path.join(this.locks, `${key}.lock`);
  }

  metaFile(key: string): string {
    return path.join(this.meta, `${key}.json`);
  }

  readMeta(key: string): LaneMeta | undefined {
    return readJson<LaneMeta>(this.metaFile(key));
  }

  /** Atomic; callers hold the lane's lease. */
  writeMeta(meta: LaneMeta): void {
    writeFileAtomic(this.metaFile(meta.key), `${JSON.stringify(meta, null, 2)}\n`);
  }
}

/** The names in a directory, or none when it does not exist (yet, or any more). */
export function readdirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}
