import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** A file written and synced beside its final name, not yet in place. */
export interface PreparedWrite {
  /** Renames it over the final name (readers see the old content or the new, never a part). */
  commit(): void;
  /** Drops it. */
  discard(): void;
}

/**
 * The slow half of an atomic write, done ahead: a temporary file beside `file`
 * (`.tmp-<name>-<hex>`), written and fsynced. A crash leaves at most that file, which the
 * sweep tidies once no lease covers its writer.
 */
export function prepareAtomic(file: string, content: string): PreparedWrite {
  const temp = path.join(path.dirname(file), `.tmp-${path.basename(file)}-${randomBytes(4).toString('hex')}`);
  const fd = fs.openSync(temp, 'wx', 0o644);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  const discard = () => fs.rmSync(temp, { force: true });
  return {
    commit() {
      try {
        fs.renameSync(temp, file);
      } catch (error) {
        discard();
        throw error;
      }
    },
    discard,
  };
}

/** Writes a file so that readers see the old content or the new, never a part, and syncs the directory. */
export function writeFileAtomic(file: string, content: string): void {
  prepareAtomic(file, content).commit();
  fsyncDir(path.dirname(file));
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
