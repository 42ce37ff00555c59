import { remoteMain } from '../remote/remote.js';

await remoteMain(process.argv.slice(2));
