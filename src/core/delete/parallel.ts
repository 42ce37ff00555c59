import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { errorCode } from '../common/errors.js';
import { clearIn, removeIn } from './remove.js';
import { Dir, type DirIdentity } from './dir.js';
import type { Tick } from '../common/progress.js';

/** How a big delete is shared out: the worker bundle, and how many threads run it. */
export interface Parallel {
  /** dist/delete-worker/index.js: runs `deleteWorker` in a worker thread. */
  script: string;
  workers: number;
}

/** What a worker thread is given: the shared directories, the work items and the counters. */
export interface WorkerData {
  dirs: { fd: number; path: string; identity: DirIdentity }[];
  /** [index into dirs, entry name, whether readdir said it is a directory] */
  items: [number, string, boolean][];
  /** Int32 counters: next item, entries removed, workers started, workers done. */
  counters: SharedArrayBuffer;
}

const NEXT = 0;
const REMOVED = 1;
const STARTED = 2;
const DONE = 3;

/** Work items wanted before the split stops descending: several per thread, for balance. */
const ITEMS_WANTED = 64;
/** Directories opened (one descriptor each, held until the threads finish) at most for the split. */
const MAX_SPLIT_DIRS = 256;
/** How long the waiting thread goes without any progress before it stops waiting for a worker. */
const STALL_MS = 60_000;

/**
 * A first pass over a big tree with several threads: the entry `name` of `parent` is split
 * into subtrees (descending a few levels through opened directories, never across a mount),
 * and worker threads and this one take them from a shared queue, each removing its subtree
 * with the same walker as removeIn, through descriptors this thread opened and they check
 * again. Descriptors are shared by all threads of a process, so no path is ever resolved
 * from the root. It reports nothing: the caller's removeIn runs after it, removes what is left
 * (the split's own directories) and reports whatever resisted, exactly as it would alone.
 */
export function removeInParallel(parent: Dir, name: string, parallel: Parallel, tick?: Tick): void {
  if (parallel.workers < 2 || !fs.existsSync(parallel.script)) return;
  let top: Dir;
  try {
    top = parent.openChild(name);
  } catch {
    return; // A file, a symlink, gone: removeIn deals with it.
  }
  const opened: Dir[] = [top];
  // Once a thread may hold these descriptors' numbers, they are closed only after every
  // thread that started is done: closed earlier, a number could be reused for another
  // directory (the next trash entry, or one outside the trash) while a thread still unlinks
  // through it. On any other way out (an exception, a hung thread) they stay open.
  let threadsDone = true;
  let counters: Int32Array | undefined;
  let itemCount = 0;
  const workers: Worker[] = [];
  try {
    if (!parent.sameMount(top)) return;
    const items = split(top, opened);
    if (items.length < parallel.workers) return;
    counters = new Int32Array(new SharedArrayBuffer(4 * 4));
    itemCount = items.length;
    const data: WorkerData = {
      dirs: opened.map((dir) => ({ fd: dir.fd, path: dir.path, identity: dir.identity })),
      items: items.map(([dir, entry, isDir]) => [opened.indexOf(dir), entry, isDir]),
      counters: counters.buffer as SharedArrayBuffer,
    };
    threadsDone = false;
    for (let i = 0; i < parallel.workers - 1; i++) {
      try {
        const worker = new Worker(parallel.script, { workerData: data, stdout: true, stderr: true });
        // A thread's failure is never the process's: what it left, the final pass reports.
        worker.on('error', () => undefined);
        worker.unref();
        workers.push(worker);
      } catch {
        break; // Fewer threads (a resource limit): this one takes the rest.
      }
    }
    // This thread works the queue too, then waits for the threads that started.
    const shared = counters;
    const reported = { removed: 0 };
    const report = () => {
      const removed = Atomics.load(shared, REMOVED);
      try {
        tick?.(removed - reported.removed);
      } catch {
        // Progress (a meter that looks at the root's free space) never stops a delete.
      }
      reported.removed = removed;
    };
    work(data, shared, (dirIndex) => opened[dirIndex], report);
    let last = { removed: -1, at: Date.now() };
    for (;;) {
      // The queue is empty: a thread that starts from now on finds nothing to take.
      const done = Atomics.load(shared, DONE);
      if (done >= Atomics.load(shared, STARTED)) {
        threadsDone = true;
        break;
      }
      Atomics.wait(shared, DONE, done, 250);
      report();
      const removed = Atomics.load(shared, REMOVED);
      if (removed !== last.removed) last = { removed, at: Date.now() };
      // A thread hung inside a call: the final pass goes on without it.
      else if (Date.now() - last.at > STALL_MS) break;
    }
    report();
  } finally {
    if (threadsDone) {
      for (const worker of workers) void worker.terminate();
      for (const dir of opened.reverse()) dir.close();
    } else {
      // No thread takes another item; the descriptors stay open for the rest of the process,
      // and referenced, so that no garbage collection closes them either.
      if (counters) Atomics.store(counters, NEXT, itemCount);
      for (const worker of workers) void worker.terminate();
      abandoned.push(opened);
    }
  }
}

/** Directories a thread may still work in after removeInParallel returned: never closed. */
const abandoned: Dir[][] = [];

/** Runs in a worker thread: checks the shared descriptors, then works the queue. */
export async function deleteWorker(data: WorkerData): Promise<void> {
  const counters = new Int32Array(data.counters);
  Atomics.add(counters, STARTED, 1);
  try {
    const dirs = new Map<number, Dir | null>();
    const dirAt = (index: number): Dir | null => {
      if (!dirs.has(index)) {
        const { fd, path, identity } = data.dirs[index];
        try {
          dirs.set(index, Dir.borrow(fd, path, identity));
        } catch {
          dirs.set(index, null); // Not what the owner opened: left to the final pass.
        }
      }
      return dirs.get(index) ?? null;
    };
    await workAsync(data, counters, dirAt);
  } finally {
    Atomics.add(counters, DONE, 1);
    Atomics.notify(counters, DONE);
  }
}

/** Items a worker thread takes off the queue at once: its files' unlinks overlap (see clearIn). */
const WORKER_BATCH = 16;

/**
 * A worker thread's share: batches off the shared queue until it is empty, each item cleared
 * by clearIn, whose unlinks overlap. It never throws (see work).
 */
async function workAsync(data: WorkerData, counters: Int32Array, dirAt: (index: number) => Dir | null): Promise<void> {
  const count = (entries: number) => void Atomics.add(counters, REMOVED, entries);
  for (;;) {
    const first = Atomics.add(counters, NEXT, WORKER_BATCH);
    if (first >= data.items.length) return;
    // The batch's entries by directory: each directory's files have their unlinks overlapped.
    const byDir = new Map<number, { files: string[]; directories: string[] }>();
    for (const [dirIndex, entry, isDir] of data.items.slice(first, first + WORKER_BATCH)) {
      const group = byDir.get(dirIndex) ?? { files: [], directories: [] };
      (isDir ? group.directories : group.files).push(entry);
      byDir.set(dirIndex, group);
    }
    for (const [dirIndex, { files, directories }] of byDir) {
      const dir = dirAt(dirIndex);
      try {
        if (dir) await clearIn(dir, files, directories, count);
      } catch {
        // Left for the final pass, as in work.
      }
    }
  }
}

/**
 * Takes items off the shared queue until it is empty. It never throws: an item's trouble is
 * left for the final pass, and the thread that split the tree must not close the directories
 * while another still works in them.
 */
function work(data: WorkerData, counters: Int32Array, dirAt: (index: number) => Dir | null, onItem?: () => void): void {
  const count = (entries: number) => Atomics.add(counters, REMOVED, entries);
  for (;;) {
    const index = Atomics.add(counters, NEXT, 1);
    if (index >= data.items.length) return;
    const [dirIndex, entry] = data.items[index];
    try {
      const dir = dirAt(dirIndex);
      if (dir) removeIn(dir, entry, '', count);
      onItem?.();
    } catch {
      // Reported by the final single-threaded pass, which meets the same obstacle.
    }
  }
}

/**
 * Splits a tree into work items, breadth first: directories are opened (kept in `opened`)
 * and replaced by their entries until there are enough items or directories. Names that are
 * not valid UTF-8, and anything on another mount, stay out of the split for the final pass.
 */
function split(top: Dir, opened: Dir[]): [Dir, string, boolean][] {
  let items: [Dir, string, boolean][] = entriesOf(top);
  for (let depth = 0; depth < 4; depth++) {
    const dirs = items.filter(([, , isDir]) => isDir).length;
    if (dirs === 0 || items.length >= ITEMS_WANTED) break;
    const next: [Dir, string, boolean][] = [];
    for (const item of items) {
      const [dir, entry, isDir] = item;
      if (!isDir || opened.length >= MAX_SPLIT_DIRS) {
        next.push(item);
        continue;
      }
      let child: Dir;
      try {
        child = dir.openChild(entry);
      } catch (error) {
        // Another mount (refused by its handle) stays out, for the final pass to report.
        if (errorCode(error) !== 'EBUSY') next.push(item);
        continue;
      }
      // A directory this user may not search or change (mode 0600, another owner's) stays one
      // item: removeIn fixes the mode through its descriptor, or reports it.
      if (!searchable(child)) {
        child.close();
        next.push(item);
        continue;
      }
      opened.push(child);
      next.push(...entriesOf(child));
    }
    items = next;
  }
  return items;
}

function searchable(dir: Dir): boolean {
  const uid = process.getuid?.() ?? 0;
  return uid === 0 || (dir.stat.uid === uid && (dir.stat.mode & 0o700) === 0o700);
}

function entriesOf(dir: Dir): [Dir, string, boolean][] {
  try {
    return dir
      .entries()
      .filter((entry): entry is fs.Dirent<string> => typeof entry.name === 'string')
      .map((entry) => [dir, entry.name, entry.isDirectory()]);
  } catch {
    return [];
  }
}
