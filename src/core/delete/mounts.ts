import fs from 'node:fs';

/** One line of /proc/self/mountinfo: what is mounted where, in this mount namespace. */
export interface Mount {
  id: number;
  /** Where it is mounted (unescaped). */
  mountPoint: string;
  /** What is mounted: the device or source, and the directory of it that is mounted (bind mounts). */
  source: string;
  root: string;
  fsType: string;
}

/** The kernel escapes space, tab, newline and backslash in mountinfo paths as octal (\040). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses the text of /proc/<pid>/mountinfo (proc(5)); malformed lines are skipped. */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (fields.length < 10 || dash < 0 || fields.length < dash + 3) continue;
    mounts.push({
      id: Number(fields[0]),
      root: unescape(fields[3]),
      mountPoint: unescape(fields[4]),
      fsType: fields[dash + 1],
      source: unescape(fields[dash + 2]),
    });
  }
  return mounts;
}

/** This process's mounts; empty when /proc is not there (callers then rely on mount ids). */
export function currentMounts(): Mount[] {
  try {
    return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch {
    return [];
  }
}

/** The mounts at `dir` or anywhere below it (`dir` a real, absolute path). */
export function mountsUnder(dir: string, mounts: readonly Mount[] = currentMounts()): Mount[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mounts.filter((mount) => mount.mountPoint === dir || mount.mountPoint.startsWith(prefix));
}

/** How a mount reads in a report: `/srv/cache (ext4 /dev/vda)`. */
export function describeMount(mount: Mount | undefined): string {
  if (!mount) return 'another mount';
  const what = mount.root !== '/' ? `${mount.source}:${mount.root}` : mount.source;
  return `${what} (${mount.fsType})`;
}
