import fs from 'node:fs';
import { humanBytes } from './units.js';
import type { SpaceTarget } from './units.js';

/** Bytes an unprivileged user can still write on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

/** The free bytes a keep-free target asks for on the file system holding `dir`. */
export function requiredFree(dir: string, target: SpaceTarget): number {
  if ('bytes' in target) return target.bytes;
  const stats = fs.statfsSync(dir);
  return (stats.blocks * stats.bsize * target.percent) / 100;
}

export function formatSpace(target: SpaceTarget): string {
  return 'bytes' in target ? humanBytes(target.bytes) : `${target.percent}%`;
}
