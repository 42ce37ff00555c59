import { isMainThread, workerData } from 'node:worker_threads';
import { deleteWorker, type WorkerData } from '../core/delete/parallel.js';

// A worker thread of a parallel delete (see removeInParallel); run directly, it does nothing.
if (!isMainThread) void deleteWorker(workerData as WorkerData);
