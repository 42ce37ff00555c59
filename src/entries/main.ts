import { main } from '../action/main.js';
import { runPhase } from '../action/run.js';

await runPhase('main', main);
