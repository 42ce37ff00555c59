import { createHash } from 'node:crypto';

/** A short, stable hex digest of a value, used to keep sanitised names distinct. */
export function shortHash(value: string, length = 8): string {
  return createHash('sha256').update(value, 'utf8').digest('hex').slice(0, length);
}

const UNSAFE = /[^a-z0-9._-]+/g;
const EDGE = /^[-._]+|[-._]+$/g;

/**
 * A readable, lower-case path-segment form of an untrusted value: at most `max` characters of
 * `[a-z0-9._-]`, never starting or ending with a separator (so never `.` or `..`), never empty.
 * It is lossy on purpose (readability); distinctness comes from the hash the key appends.
 */
export function slug(value: string, max: number, empty = 'none'): string {
  const folded = value
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(UNSAFE, '-')
    .replace(/\.{2,}/g, '.')
    .replace(/-{2,}/g, '-')
    .replace(EDGE, '');
  const cut = folded.slice(0, max).replace(EDGE, '');
  return cut === '' ? empty : cut;
}

/** True when `segment` is something `slug` could have produced: safe as one path component. */
export function isSafeSegment(segment: string, max: number): boolean {
  return (
    segment.length > 0 &&
    segment.length <= max &&
    /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/.test(segment) &&
    !segment.includes('..')
  );
}
