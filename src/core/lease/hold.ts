import fs from 'node:fs';
import { processStartTime } from './held.js';

const CHECK_MS = 500;

/** What main tells the holder (one JSON argument). */
export interface HolderArgs {
  /** The lock file's path; the holder checks that fd 3 is still that file. */
  lock: string;
  /** The process whose death ends the lease (the runner's worker), 0 for none, and its start time. */
  worker: number;
  workerStart: string;
  /** Milliseconds of lease from now, on the monotonic clock; null for no deadline (`lease-timeout: none`). */
  leaseMs: number | null;
  /** Directories whose removal or replacement ends the job (per-job directories of the runner). */
  watch: { path: string; dev: number; ino: number }[];
}

/**
 * The lease holder's life: it holds the inherited lock (fd 3) and exits, releasing it, when
 * told to (SIGTERM from post), when the worker process that ran the step dies, when a per-job
 * directory of the runner goes, or when its lease time has passed on the monotonic clock (a
 * wall-clock step never ends it). It says "ready" to main over its stdout once it has checked
 * the lock, then closes it. It names itself `runlane-lease <lock>` (so `pkill node` and
 * `killall node` do not match it), asks for the lowest OOM score it may have, and lives in a
 * session of its own (no signal to the step's process group reaches it). The runner's orphan
 * cleanup kills it with the job (it keeps RUNNER_TRACKING_ID), and a container's end kills it
 * with the container.
 */
export function holdLease(argv: readonly string[]): void {
  let args: HolderArgs;
  try {
    args = JSON.parse(argv[0] ?? '') as HolderArgs;
    const held = fs.fstatSync(3);
    const named = fs.lstatSync(args.lock);
    if (held.ino !== named.ino || held.dev !== named.dev) throw new Error('the lock file was replaced');
  } catch (error) {
    process.stdout.write(`failed ${(error as Error).message}\n`);
    process.exit(2);
  }
  process.title = `runlane-lease ${args.lock}`;
  lowerOomScore();
  const end = () => process.exit(0);
  process.on('SIGTERM', end);
  // A cancel's SIGINT goes to the step, never to the lease: only post, the job's end or the
  // deadline end it.
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  process.on('SIGPIPE', () => undefined);
  const started = process.hrtime.bigint();
  const leaseNs = args.leaseMs === null ? undefined : BigInt(Math.round(args.leaseMs)) * 1_000_000n;
  setInterval(() => {
    if (leaseNs !== undefined && process.hrtime.bigint() - started >= leaseNs) end();
    if (args.worker > 0 && args.workerStart !== '' && processStartTime(args.worker) !== args.workerStart) end();
    for (const watched of args.watch) {
      const now = fs.statSync(watched.path, { throwIfNoEntry: false });
      if (!now || now.dev !== watched.dev || now.ino !== watched.ino) end();
    }
  }, CHECK_MS);
  process.stdout.write('ready\n', () => fs.closeSync(1));
}

/**
 * The OOM killer should take the job's build before the lease: the lowest score this process
 * may set, never above the one it inherited. -1000 when privileged; else a few writes find the
 * lowest the kernel allows (oom_score_adj_min, which cannot be read), searching down from the
 * inherited value.
 */
function lowerOomScore(): void {
  const file = '/proc/self/oom_score_adj';
  const set = (score: number) => {
    try {
      fs.writeFileSync(file, String(score));
      return true;
    } catch {
      return false;
    }
  };
  let allowed: number;
  try {
    allowed = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(allowed) || allowed <= -1000 || set(-1000)) return;
  let refused = -1000;
  while (allowed - refused > 1) {
    const middle = Math.floor((allowed + refused) / 2);
    if (set(middle)) allowed = middle;
    else refused = middle;
  }
}
