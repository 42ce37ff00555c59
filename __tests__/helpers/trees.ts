// Trees for containment tests: what a walker must never change, mounts made and undone, and
// the trash a background delete empties.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect } from '@jest/globals';
import { mountsUnder } from '../../src/core/delete/mounts.js';
import { Dir } from '../../src/core/delete/dir.js';
import { removeIn } from '../../src/core/delete/remove.js';
import { newJob, within } from './jobs.js';

export const sh = (command: string, ...args: string[]) => spawnSync(command, args, { encoding: 'utf8' });

/** Every path below `dir` with its type, mode, owner, link count, link target or content: any change shows. Throws if it is gone. */
export function treeHash(dir: string): string {
  const hash = createHash('sha256');
  const walk = (current: string, relative: string) => {
    const stat = fs.lstatSync(current);
    hash.update(`${relative}\0${stat.mode}\0${stat.uid}\0${stat.nlink}\0`);
    if (stat.isSymbolicLink()) hash.update(fs.readlinkSync(current));
    else if (stat.isFile()) hash.update(fs.readFileSync(current));
    else if (stat.isDirectory())
      for (const name of fs.readdirSync(current).sort()) walk(path.join(current, name), `${relative}/${name}`);
    hash.update('\0');
  };
  walk(dir, '.');
  return hash.digest('hex');
}

/** A tree that looks like lanes, trash entries, slots, locks and metadata, for a naive sweep to take. */
export function decoyLayout(dir: string): string {
  const files: Record<string, string> = {
    'top.txt': 'top',
    'victim-lane/data.bin': 'data',
    'victim-lane/sub/deep.txt': 'deep',
    'slot/key/parked.txt': 'parked',
    'entry~20260101T000000Z-abcdef/trashed.txt': 'trashed',
    'victim-lane.lock': '',
    'victim-lane.json': '{"version":1,"key":"victim-lane"}',
  };
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

/** An outside directory worth protecting: files, a subdirectory, a read-only directory. */
export function preciousTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(dir, `precious-${i}`), `data ${i}`);
  fs.writeFileSync(path.join(dir, 'sub', 'deep'), 'deep');
  fs.mkdirSync(path.join(dir, 'ro'));
  fs.writeFileSync(path.join(dir, 'ro', 'file'), 'ro');
  fs.chmodSync(path.join(dir, 'ro'), 0o555);
}

/** Many small files in nested directories, like a build output. */
export function fill(dir: string, files: number): void {
  for (let d = 0; d * 250 < files; d++) {
    const sub = path.join(dir, 'target', 'debug', `deps-${d}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let f = 0; f < Math.min(250, files - d * 250); f++) fs.writeFileSync(path.join(sub, `f${f}.rlib`), 'x');
  }
}

export function bind(source: string, target: string): void {
  expect(sh('mount', '--bind', source, target).status).toBe(0);
}

/** Unmounts every mount of `source`, wherever a rename may have moved it. */
export function unmountAll(source: string): void {
  for (let round = 0; round < 5; round++) {
    const targets = sh('findmnt', '-rn', '-o', 'TARGET,FSROOT')
      .stdout.split('\n')
      .map((line) => line.split(' '))
      .filter(([, root]) => root === source)
      .map(([target]) => target);
    if (targets.length === 0) return;
    for (const target of targets.reverse()) if (sh('umount', target).status !== 0) sh('umount', '-l', target);
  }
}

/**
 * A scratch directory for the tests of one file, made before them and removed after, with
 * whatever they left mounted or immutable in it undone first. Returns a getter.
 */
export function useScratch(prefix: string): () => string {
  let scratch = '';
  beforeAll(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    for (const mount of mountsUnder(fs.realpathSync(scratch)).reverse()) spawnSync('umount', ['-l', mount.mountPoint]);
    spawnSync('chattr', ['-R', '-i', scratch], { stdio: 'ignore' });
    fs.rmSync(scratch, { recursive: true, force: true });
  });
  return () => scratch;
}

/** removeIn of `name` in `parentDir`, through a Dir opened and closed around it. */
export function removeAt(parentDir: string, name: string) {
  const parent = Dir.open(parentDir);
  try {
    return removeIn(parent, name);
  } finally {
    parent.close();
  }
}

export const trashOf = (root: string) => fs.readdirSync(path.join(root, 'trash'));
/** Generous: the background delete runs at nice 10, and gets little CPU on a loaded machine. */
export const trashEmpty = (root: string) => within(90_000, () => trashOf(root).length === 0);

/** A root with one job's lane made and removed, its trash emptied. */
export async function usedRoot() {
  const job = newJob();
  expect((await job.phase('main')).code).toBe(0);
  expect((await job.phase('post')).code).toBe(0);
  expect(await trashEmpty(job.root)).toBeGreaterThanOrEqual(0);
  return job;
}
