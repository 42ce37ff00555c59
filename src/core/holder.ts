import fs from 'node:fs';
import { processStartTime } from './lease.js';

const CHECK_MS = 500;

/**
 * The lease holder's life: it holds the inherited lock (fd 3) and exits, releasing it, when
 * told to (SIGTERM from post), when the worker process that ran the step dies, or at the
 * deadline. The runner's orphan cleanup kills it too (it keeps RUNNER_TRACKING_ID).
 */
export function holdLease(argv: readonly string[]): void {
  const [lockPath, workerArg, workerStart, deadlineArg] = argv;
  const lockFd = 3;
  try {
    const held = fs.fstatSync(lockFd);
    const named = fs.lstatSync(lockPath);
    if (held.ino !== named.ino || held.dev !== named.dev) process.exit(2);
  } catch {
    process.exit(2);
  }
  const workerPid = Number(workerArg);
  const deadline = Number(deadlineArg);
  const end = () => process.exit(0);
  process.on('SIGTERM', end);
  // A cancel's SIGINT goes to the step, never to the lease: only post, the worker's death or
  // the orphan cleanup's SIGKILL end it.
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  setInterval(() => {
    if (Date.now() >= deadline) end();
    if (workerPid > 0 && workerStart !== '' && processStartTime(workerPid) !== workerStart) end();
  }, CHECK_MS);
}
