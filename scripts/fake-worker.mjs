// Stands in for the runner's worker process: runs one step, reports its exit code to the
// parent over IPC, then stays alive (as Runner.Worker does for the rest of the job) until killed.
import { spawn } from 'node:child_process';

const [command, ...args] = process.argv.slice(2);
const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
child.on('close', (code, signal) => {
  process.send?.({ code: code ?? signal });
  setInterval(() => undefined, 60_000);
});
