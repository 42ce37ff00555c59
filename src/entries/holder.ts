import { holdLease } from '../core/lease/hold.js';

holdLease(process.argv.slice(2));
