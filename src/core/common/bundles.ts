import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The path of another bundle of this action (dist/<name>/index.js), beside the running one.
 * Computed at run time, so ncc keeps each a bundle of its own.
 */
export function bundled(name: 'holder' | 'cli' | 'delete-worker' | 'remote' | 'tar-guard'): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', name, 'index.js');
}
