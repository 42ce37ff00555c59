import { post } from '../action/post.js';
import { runPhase } from '../action/run.js';

await runPhase('post', post);
