import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as cache from '@actions/cache';

/**
 * The remote tier's transfers, run in a child process of main or post (`dist/remote`), so that
 * `@actions/cache` and its HTTP stack load only when a transfer happens, and a hung service or
 * tar is bounded by killing one process group. The request comes as JSON on stdin; the answer
 * goes as one JSON line to fd 3, apart from the log (stdout), where `@actions/cache` writes its
 * own notices and masks.
 */
export interface RemoteRequest {
  op: 'restore' | 'save';
  /** The directory the archive's paths are relative to (a staging directory, or the lane). */
  dir: string;
  paths: string[];
  key: string;
  restoreKeys: string[];
  /** save: what runlane selected to archive (lane-relative; see archive-select.ts). */
  members?: string[];
}

export interface RemoteAnswer {
  /** restore: the key of the entry restored; save: the key saved. Empty when nothing was. */
  key: string;
  /** Why nothing was transferred when that is no failure (a miss, an entry that exists). */
  note?: string;
  /** What failed (an entry that could not be restored, an upload the service refused). */
  error?: string;
}

export async function remoteMain(): Promise<void> {
  watchOwnEnd();
  const request = JSON.parse(fs.readFileSync(0, 'utf8')) as RemoteRequest;
  // Archives hold paths relative to the lane, so an entry restores into any lane on any host.
  process.chdir(request.dir);
  process.env.GITHUB_WORKSPACE = request.dir;
  const answer = request.op === 'restore' ? await restore(request) : await save(request);
  fs.writeSync(3, `${JSON.stringify(answer)}\n`);
}

/**
 * The transfer ends with the step that started it: past its own deadline, or as soon as its
 * parent is gone (main killed or cancelled), it kills its whole process group (tar, zstd), so
 * nothing writes into a lane that post has since removed.
 */
function watchOwnEnd(): void {
  // The parent's pid as main gave it: read here, it could already be the reaper's if main
  // died while this bundle was loading.
  const parent = Number(process.env.RUNLANE_PARENT_PID ?? process.ppid);
  const deadline = Date.now() + Number(process.env.RUNLANE_TRANSFER_MS ?? 600_000);
  const end = () => {
    try {
      process.kill(0, 'SIGKILL');
    } finally {
      process.exit(9);
    }
  };
  const check = () => {
    if (process.ppid !== parent || Date.now() >= deadline) end();
  };
  check();
  setInterval(check, 500).unref();
}

async function restore(request: RemoteRequest): Promise<RemoteAnswer> {
  const key = await cache.restoreCache([...request.paths], request.key, request.restoreKeys);
  if (key) return { key };
  // Nothing restored: a miss, or an entry that exists but could not be restored (refused by
  // the guard, corrupt, cut off), which is reported as the failure it is. Asked only now, so
  // a hit costs one lookup.
  const found = await cache.restoreCache([...request.paths], request.key, request.restoreKeys, { lookupOnly: true });
  if (!found) return { key: '', note: 'no entry for this job' };
  let why = 'see the warning above';
  try {
    why = fs.readFileSync(process.env.RUNLANE_GUARD_REPORT ?? '', 'utf8').trim() || why;
  } catch {
    // The guard said nothing: the download or tar failed another way.
  }
  return { key: '', error: `the entry ${found} could not be restored: ${why}` };
}

async function save(request: RemoteRequest): Promise<RemoteAnswer> {
  // An entry under the exact key is immutable: found, it is not uploaded again.
  const existing = await cache.restoreCache([...request.paths], request.key, [], { lookupOnly: true });
  if (existing === request.key) return { key: '', note: 'an entry with this exact key exists already' };
  // The archive holds what runlane selected, read through the lane post holds open (the tar
  // guard creates it); the paths still go to the library, whose entry version is their hash.
  const list = path.join(process.env.RUNNER_TEMP ?? os.tmpdir(), 'runlane-members.json');
  fs.writeFileSync(list, JSON.stringify(request.members ?? []));
  process.env.RUNLANE_SAVE_MEMBERS = list;
  process.env.RUNLANE_SAVE_DIR = request.dir;
  const id = await cache.saveCache([...request.paths], request.key);
  return id === -1
    ? { key: '', error: 'the cache service did not take it (see the warning above)' }
    : { key: request.key };
}
