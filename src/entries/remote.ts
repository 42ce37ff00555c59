import { remoteMain } from '../remote/transfer.js';

await remoteMain();
