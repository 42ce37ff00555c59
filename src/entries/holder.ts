import { holdLease } from '../core/holder.js';

holdLease(process.argv.slice(2));
