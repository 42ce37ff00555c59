import { tarGuard } from '../remote/tar-guard.js';

process.exitCode = await tarGuard(process.argv.slice(2));
