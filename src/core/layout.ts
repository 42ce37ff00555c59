import fs from 'node:fs';
import path from 'node:path';
import { readJson, writeFileAtomic } from './atomic.js';

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

  constructor(readonly root: string) {
    this.lanes = path.join(root, 'lanes');
    this.locks = path.join(root, 'locks');
    this.meta = path.join(root, 'meta');
    this.trash = path.join(root, 'trash');
  }

  ensure(): void {
    for (const dir of [this.lanes, this.locks, this.meta, this.trash])
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  }

  lane(key: string): string {
    return path.join(this.lanes, key);
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
