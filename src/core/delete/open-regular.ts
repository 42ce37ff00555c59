// Opening a file a job may have planted something in place of. Its own module, with nothing but
// node:fs, so the lease holder's bundle (started on main's path) stays small.
import fs from 'node:fs';
import { errorCode } from '../common/errors.js';

const C = fs.constants;
/** open(2)'s O_PATH (Linux; the same value on x86-64 and arm64): a handle that needs no permission. */
export const O_PATH = 0o10000000;

/** A file opened by openRegular, with the lstat its handle gave before it was opened. */
export interface OpenedFile {
  fd: number;
  stat: fs.Stats;
}

/**
 * Opens a regular file with `flags` (O_RDONLY, O_WRONLY | O_APPEND, ...; with `create`, one
 * is made when none is there), never following a symlink and never opening anything else.
 * The name is taken with O_PATH first, which runs no driver's open, needs no permission and
 * cannot block; only when that handle shows a regular file is the file opened through it
 * (/proc/self/fd/N names that very inode, wherever the name points by then). A job that
 * plants a device where runlane reads or writes (root in a container can mknod on the
 * mounted work directory) gets no driver's open (a tape that rewinds, a watchdog that arms),
 * and a FIFO's writer is never woken. Anything but a regular file throws EINVAL.
 */
export function openRegular(target: string | Buffer, flags: number, create = false): OpenedFile {
  let handle: number;
  try {
    handle = fs.openSync(target, O_PATH | C.O_NOFOLLOW);
  } catch (error) {
    if (!create || errorCode(error) !== 'ENOENT') throw error;
    try {
      // A new file is a regular one: O_EXCL makes it ours, and never follows a symlink.
      const fd = fs.openSync(target, flags | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644);
      return { fd, stat: fs.fstatSync(fd) };
    } catch (again) {
      if (errorCode(again) !== 'EEXIST') throw again;
      return openRegular(target, flags); // Made by another process meanwhile.
    }
  }
  try {
    const stat = fs.fstatSync(handle);
    if (!stat.isFile()) {
      const [kind, code] = stat.isSymbolicLink()
        ? ['a symlink', 'ELOOP']
        : stat.isDirectory()
          ? ['a directory', 'EISDIR']
          : ['not a regular file', 'EINVAL'];
      throw Object.assign(new Error(`${String(target)} is ${kind}`), { code });
    }
    const fd = fs.openSync(`/proc/self/fd/${handle}`, flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW));
    return { fd, stat };
  } finally {
    fs.closeSync(handle);
  }
}

const READ_BUFFER = Buffer.alloc(64 * 1024);

/** JSON from a file opened without following a symlink; undefined when missing or not JSON. */
export function readJsonNoFollow(file: string): unknown {
  let fd: number;
  try {
    ({ fd } = openRegular(file, fs.constants.O_RDONLY));
  } catch {
    return undefined;
  }
  try {
    // One read into a reused buffer: metadata is small, and a scan reads 100,000 of them.
    const read = fs.readSync(fd, READ_BUFFER, 0, READ_BUFFER.length, 0);
    const text =
      read < READ_BUFFER.length
        ? READ_BUFFER.toString('utf8', 0, read)
        : READ_BUFFER.toString('utf8') + fs.readFileSync(fd, 'utf8');
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
