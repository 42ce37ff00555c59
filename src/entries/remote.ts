import { remoteMain } from '../remote/remote.js';

await remoteMain();
