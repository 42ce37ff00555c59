import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { awaitBackgroundDeletes } from '../../scripts/runner-sim.mjs';
import { cli, cliAsNobody, disposeJobs, laneStates, newJob, within } from '../helpers/jobs.js';
import { fill, trashEmpty, trashOf } from '../helpers/trees.js';

afterEach(disposeJobs);

const chattr = (flag: string, file: string) => expect(spawnSync('chattr', [flag, file]).status).toBe(0);

/** `runlane empty-trash` as an unprivileged runner user (uid 65534). */
function emptyTrashAsNobody(root: string, extra: string[] = [], env: NodeJS.ProcessEnv = process.env) {
  const [command, ...args] = cliAsNobody('empty-trash', '--root', root, ...extra);
  return spawnSync(command, args, { encoding: 'utf8', env });
}

/** A marked root with its layout, as runlane makes it. */
function markedRoot(root: string): void {
  for (const dir of ['lanes', 'locks', 'meta', 'trash']) fs.mkdirSync(path.join(root, dir), { recursive: true });
  fs.writeFileSync(path.join(root, '.runlane-root'), '{}');
}

describe('post in O(1): rename to trash, delete in the background', () => {
  it('files a job planted in lanes/ or in the trash are deleted, not kept forever (a disk filler)', async () => {
    const job = newJob();
    await job.phase('main');
    await job.phase('post');
    awaitBackgroundDeletes(path.dirname(job.root));
    const outside = path.join(job.dir, 'outside-target');
    fs.writeFileSync(outside, 'precious');
    // A big file named like a lane, a symlink and a file planted straight into the trash.
    fs.writeFileSync(path.join(job.root, 'lanes', 'acme.main.1-1.build.single-0123456789ab'), Buffer.alloc(1 << 20));
    fs.symlinkSync(outside, path.join(job.root, 'lanes', 'acme.main.2-1.build.single-0123456789ab'));
    fs.writeFileSync(path.join(job.root, 'trash', 'planted'), Buffer.alloc(1 << 20));
    const first = cli('sweep', '--root', job.root, '--json');
    expect(first.code).toBe(0);
    const second = cli('sweep', '--root', job.root, '--json');
    expect(second.code).toBe(0);
    expect(fs.readdirSync(path.join(job.root, 'lanes'))).toEqual([]);
    expect(fs.readdirSync(path.join(job.root, 'trash')).filter((name) => !name.endsWith('.lock'))).toEqual([]);
    expect(fs.readFileSync(outside, 'utf8')).toBe('precious');
  });

  it('removes links, never what they point at, inside or outside the root', async () => {
    const job = newJob();
    const outside = path.join(job.dir, 'precious');
    fs.mkdirSync(path.join(outside, 'dir'), { recursive: true });
    fs.writeFileSync(path.join(outside, 'dir', 'keep'), 'keep');
    fs.writeFileSync(path.join(outside, 'file'), 'keep');
    const other = newJob({ root: job.root, inputs: { root: job.root } });
    await job.phase('main');
    await other.phase('main');
    fs.symlinkSync(path.join(outside, 'dir'), path.join(job.outputs.path, 'to-dir'));
    fs.symlinkSync(path.join(outside, 'file'), path.join(job.outputs.path, 'to-file'));
    fs.symlinkSync(other.outputs.path, path.join(job.outputs.path, 'to-other-lane'));
    fs.symlinkSync('/', path.join(job.outputs.path, 'to-root'));
    await job.phase('post');
    expect(await trashEmpty(job.root)).toBeGreaterThanOrEqual(0);
    expect(fs.readFileSync(path.join(outside, 'dir', 'keep'), 'utf8')).toBe('keep');
    expect(fs.readFileSync(path.join(outside, 'file'), 'utf8')).toBe('keep');
    expect(fs.existsSync(other.outputs.path)).toBe(true);
    expect(laneStates(job.root)).toEqual({ [other.outputs.key]: 'live' });
  });

  it('removes read-only nested trees, also as an unprivileged runner user', async () => {
    const root = path.join(newJob().dir, 'nobody-root');
    fs.mkdirSync(path.join(root, 'trash', 'lane~1', 'mod', 'a', 'b'), { recursive: true });
    markedRoot(root);
    fs.writeFileSync(path.join(root, 'trash', 'lane~1', 'mod', 'a', 'b', 'go.mod'), 'module x');
    spawnSync('chown', ['-R', 'nobody:nogroup', root]);
    fs.chmodSync(path.dirname(root), 0o755);
    for (const dir of ['mod/a/b', 'mod/a', 'mod']) fs.chmodSync(path.join(root, 'trash', 'lane~1', dir), 0o555);
    const asNobody = emptyTrashAsNobody(root, ['--json']);
    expect(asNobody.stderr).toBe('');
    expect(JSON.parse(asNobody.stdout).trash[0]).toMatchObject({ outcome: 'deleted' });
    expect(asNobody.status).toBe(0);
    expect(trashOf(root)).toEqual([]);
  });

  it('never changes the mode of a mount it meets, even one it cannot read (as an unprivileged runner user)', async () => {
    const scratch = newJob().dir;
    fs.chmodSync(scratch, 0o755);
    const root = path.join(scratch, 'nobody-root');
    const entry = path.join(root, 'trash', 'lane~1');
    fs.mkdirSync(path.join(entry, 'm'), { recursive: true });
    fs.writeFileSync(path.join(entry, 'own.o'), 'x');
    markedRoot(root);
    const outside = path.join(scratch, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'precious'), 'keep');
    spawnSync('chown', ['-R', 'nobody:nogroup', root, outside]);
    fs.chmodSync(outside, 0o000);
    expect(spawnSync('mount', ['--bind', outside, path.join(entry, 'm')]).status).toBe(0);
    try {
      const run = emptyTrashAsNobody(root, ['--json']);
      expect(run.status).toBe(1);
      const [result] = JSON.parse(run.stdout).trash;
      expect(result.outcome).toBe('failed');
      expect(result.failures).toEqual([expect.objectContaining({ path: path.join(entry, 'm'), code: 'EBUSY' })]);
      expect(fs.statSync(outside).mode & 0o7777).toBe(0);
      expect(fs.existsSync(path.join(entry, 'own.o'))).toBe(false);
    } finally {
      spawnSync('umount', [path.join(entry, 'm')]);
    }
    expect(fs.readFileSync(path.join(outside, 'precious'), 'utf8')).toBe('keep');
  });

  it("reports another owner's files (EACCES) with what they need, and hands them to 'sudo -n rm' with privileged-cleanup: sudo", async () => {
    const scratch = newJob().dir;
    const root = path.join(scratch, 'shared-root');
    const entry = path.join(root, 'trash', 'lane~1');
    const make = () => {
      fs.mkdirSync(path.join(entry, 'docker-out'), { recursive: true });
      fs.writeFileSync(path.join(entry, 'docker-out', 'root-owned.o'), 'x');
      fs.writeFileSync(path.join(entry, 'mine.o'), 'x');
      spawnSync('chown', ['nobody:nogroup', root, path.join(root, 'trash'), entry, path.join(entry, 'mine.o')]);
    };
    fs.mkdirSync(root);
    markedRoot(root);
    make();
    fs.chmodSync(scratch, 0o755);
    const bin = path.join(scratch, 'bin');
    const run = (...extra: string[]) =>
      emptyTrashAsNobody(root, extra, { ...process.env, PATH: `${bin}:/usr/bin:/bin` });
    const denied = run();
    expect(denied.status).toBe(1);
    expect(denied.stdout).toMatch(
      /docker-out\/root-owned\.o: EACCES \(its directory belongs to uid 0, not to the runner user \(uid 65534\).*privileged-cleanup: sudo\)/,
    );
    expect(fs.existsSync(path.join(entry, 'mine.o'))).toBe(false);
    expect(fs.existsSync(`${entry}.failed.json`)).toBe(true);
    const status = cli('status', '--root', root);
    expect(status.stdout).toMatch(/lane~1\s+trash/);
    expect(status.stdout).toContain('resists deletion');

    if (!fs.existsSync('/usr/bin/sudo') && !fs.existsSync('/bin/sudo')) {
      expect(run('--privileged', 'sudo').stdout).toMatch(/root-owned\.o: EACCES \(sudo is not available \(ENOENT\)/);
    }

    // A stand-in for sudo that records what it is asked to run and runs it without privilege
    // (no passwordless sudo exists here): the contract is the exact, shell-free argv, with the
    // entry named through the deleting process's own open trash directory (no path to swap).
    fs.mkdirSync(bin);
    const log = path.join(scratch, 'sudo.log');
    fs.writeFileSync(log, '');
    fs.chmodSync(log, 0o666);
    fs.writeFileSync(
      path.join(bin, 'sudo'),
      `#!/bin/sh\nprintf '%s\\n' "$*" >> ${log}\n[ "$1" = -n ] && shift\nexec "$@"\n`,
      {
        mode: 0o755,
      },
    );
    const withSudo = run('--privileged', 'sudo');
    const calls = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/^-n rm -rf --one-file-system -- \/proc\/\d+\/fd\/\d+\/lane~1$/);
    expect(withSudo.stdout).toMatch(/root-owned\.o: EACCES \(sudo -n rm failed: rm: cannot remove .*Permission denied/);
    expect(withSudo.status).toBe(1);
  });
});

describe('what cannot be deleted never fails a job, is reported, and goes once it can', () => {
  it('an immutable file: post succeeds, status and the next post report it, a later sweep removes it', async () => {
    const job = newJob();
    await job.phase('main');
    const stuck = path.join(job.outputs.path, 'cache', 'stuck.bin');
    fs.mkdirSync(path.dirname(stuck));
    fs.writeFileSync(stuck, 'x');
    chattr('+i', stuck);
    let entry = '';
    try {
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      expect(fs.existsSync(job.outputs.path)).toBe(false);
      expect(
        await within(20_000, () => trashOf(job.root).some((name) => name.endsWith('.failed.json'))),
      ).toBeGreaterThanOrEqual(0);
      entry = trashOf(job.root).find((name) => fs.statSync(path.join(job.root, 'trash', name)).isDirectory()) ?? '';
      const status = cli('status', '--root', job.root, '--json').json();
      expect(status.lanes).toEqual([
        expect.objectContaining({
          state: 'trash',
          failures: [expect.objectContaining({ code: 'EPERM', hint: expect.stringContaining('chattr -i') })],
        }),
      ]);

      const next = newJob({ root: job.root, inputs: { root: job.root } });
      await next.phase('main');
      const nextPost = await next.phase('post');
      expect(nextPost.code).toBe(0);
      expect(nextPost.warnings.join('\n')).toMatch(/still resists deletion:\n.*stuck\.bin: EPERM \(immutable/);

      // The next post's background delete retries the entry: while it holds the entry's lock, a
      // sweep rightly counts it busy. Once it has given up, the sweep meets the same obstacle.
      awaitBackgroundDeletes(path.dirname(job.root));
      const blocked = cli('sweep', '--root', job.root, '--json');
      expect(blocked.code).toBe(1);
      expect(blocked.json().trash.find((t: { outcome: string }) => t.outcome === 'failed').failures[0].path).toMatch(
        /stuck\.bin$/,
      );
    } finally {
      chattr('-i', path.join(job.root, 'trash', entry, 'cache', 'stuck.bin'));
    }
    expect(cli('sweep', '--root', job.root).code).toBe(0);
    expect(trashOf(job.root)).toEqual([]);
  });

  it('refuses a trash on another mount, and deletes in place instead, with a warning', async () => {
    const job = newJob();
    await job.phase('main');
    const trash = path.join(job.root, 'trash');
    fs.mkdirSync(trash, { recursive: true });
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', trash]).status).toBe(0);
    try {
      fill(job.outputs.path, 500);
      const post = await job.phase('post');
      expect(post.code).toBe(0);
      expect(post.warnings.join('\n')).toMatch(
        /could not rename .* into the trash \(the root's trash directory .* is refused: another file system is mounted there.*\); deleted it synchronously instead/,
      );
      expect(fs.existsSync(job.outputs.path)).toBe(false);
      const status = cli('status', '--root', job.root, '--json');
      expect(status.code).toBe(1);
      expect(status.json().lanes).toEqual([]);
      expect(status.json().problems.join('\n')).toMatch(/trash directory .* another file system is mounted there/);
    } finally {
      spawnSync('umount', [trash]);
    }
  });
});
