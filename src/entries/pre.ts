import { pre } from '../action/pre.js';
import { runPhase } from '../action/run.js';

await runPhase('pre', pre);
