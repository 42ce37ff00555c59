import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { topLevelNames } from '../../src/remote/remote.js';
import { runIdentity } from '../../src/action/identity.js';
import {
  archivedRoots,
  lockFilesHash,
  parseRemotePaths,
  remoteKeys,
  remotePaths,
  remoteService,
  saveDecision,
} from '../../src/remote/plan.js';

const identity = { repository: 'acme/widgets', workflow: 'ci.yml', job: 'build', step: 'lane', matrix: '' };

describe('remote tier decisions', () => {
  it('what an archive may hold: literal leading components, `./` dropped, a leading glob is the whole lane', () => {
    const paths = ['cargo-target/*/*', './go-cache', 'a/b/c', '!cargo-target/*/incremental'];
    expect(archivedRoots(paths)).toEqual([['cargo-target'], ['go-cache'], ['a', 'b', 'c']]);
    expect(topLevelNames(paths)).toEqual(new Set(['cargo-target', 'go-cache', 'a']));
    for (const whole of ['.', '*', '**/x', './*']) {
      expect(archivedRoots([whole])).toEqual([[]]);
      expect(topLevelNames(['go-cache', whole])).toBeUndefined();
    }
  });

  it('keys: exact over job, leg, platform, presets and paths; the restore key drops only the lock hash', () => {
    const base = remoteKeys(identity, ['cargo'], ['cargo-target/*/*'], 'abc', 'linux-x64');
    expect(base.key.startsWith(base.restoreKeys[0])).toBe(true);
    expect(base.key.endsWith('-abc')).toBe(true);
    expect(base.key.startsWith('runlane-trusted-linux-x64-build-')).toBe(true);
    for (const other of [
      remoteKeys({ ...identity, matrix: '{"os":"a"}' }, ['cargo'], ['cargo-target/*/*'], 'abc', 'linux-x64'),
      remoteKeys({ ...identity, job: 'test' }, ['cargo'], ['cargo-target/*/*'], 'abc', 'linux-x64'),
      remoteKeys({ ...identity, repository: 'acme/other' }, ['cargo'], ['cargo-target/*/*'], 'abc', 'linux-x64'),
      remoteKeys(identity, ['cargo'], ['cargo-target/*/*'], 'abc', 'linux-arm64'),
      remoteKeys(identity, ['cargo', 'npm'], ['cargo-target/*/*'], 'abc', 'linux-x64'),
    ])
      expect(other.key.startsWith(base.restoreKeys[0])).toBe(false);
    expect(remoteKeys(identity, ['cargo'], ['cargo-target/*/*'], 'def', 'linux-x64').restoreKeys).toEqual(
      base.restoreKeys,
    );
  });

  it('paths per preset, never tmp, pytest or app directories; remote-paths overrides', () => {
    expect(remotePaths(['cargo', 'tmp', 'pytest'], [])).toEqual(['cargo-target/*/*', '!cargo-target/*/incremental']);
    expect(remotePaths(['go-cache', 'pip', 'npm'], [])).toEqual(['go-build', 'pip-cache', 'npm-cache']);
    expect(remotePaths(['tmp', 'python'], [])).toEqual([]);
    expect(remotePaths(['cargo'], ['state'])).toEqual(['state']);
    expect(parseRemotePaths('remote-paths', 'a\n  !a/b  \n\n*.bin')).toEqual(['a', '!a/b', '*.bin']);
    for (const bad of ['/etc', '../x', 'a/../../b', '!/abs', '~/x'])
      expect(() => parseRemotePaths('remote-paths', bad)).toThrow(/remote-paths/);
  });

  it('lock files: their contents decide the hash; none without any', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-locks-'));
    try {
      expect(lockFilesHash(['cargo'], dir)).toBe('none');
      fs.writeFileSync(path.join(dir, 'Cargo.lock'), 'v1');
      const first = lockFilesHash(['cargo'], dir);
      fs.writeFileSync(path.join(dir, 'Cargo.lock'), 'v2');
      expect(lockFilesHash(['cargo'], dir)).not.toBe(first);
      expect(lockFilesHash(['tmp'], dir)).toBe('none');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a FIFO as a lock file or as the event payload is never opened (it would hang the step), a symlink never followed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-fifo-'));
    const lock = path.join(dir, 'Cargo.lock');
    const event = path.join(dir, 'event.json');
    const writers: ReturnType<typeof spawn>[] = [];
    try {
      fs.writeFileSync(path.join(dir, 'secret'), 'not for the hash');
      fs.symlinkSync(path.join(dir, 'secret'), lock);
      const linked = lockFilesHash(['cargo'], dir);
      fs.rmSync(lock);
      for (const fifo of [lock, event]) expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const woken: string[] = [];
      // Each writer blocks in open(2) until a reader opens its FIFO, then says so and closes it.
      for (const fifo of [lock, event]) {
        const writer = spawn('python3', ['-c', 'import sys; open(sys.argv[1], "w"); print("woken", flush=True)', fifo]);
        writer.stdout?.on('data', () => woken.push(fifo));
        writers.push(writer);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      const fifoHash = lockFilesHash(['cargo'], dir);
      expect(fifoHash).toMatch(/^[0-9a-f]{20}$/);
      // Unreadable either way: the symlink's target never went into the hash.
      expect(fifoHash).toBe(linked);
      const identity = runIdentity(
        {
          GITHUB_EVENT_PATH: event,
          GITHUB_EVENT_NAME: 'pull_request',
          GITHUB_REPOSITORY: 'acme/widgets',
          GITHUB_REF: 'refs/pull/7/merge',
        },
        '',
      );
      expect(identity.scopeId).toBe('pr:7');
      expect(
        saveDecision('auto', { trust: 'trusted', scopeId: 'refs/heads/main' }, { GITHUB_EVENT_PATH: event }).save,
      ).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(woken).toEqual([]);
    } finally {
      for (const writer of writers) writer.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the service and ACTIONS_CACHE_MODE', () => {
    expect(remoteService({})).toBeUndefined();
    expect(remoteService({ ACTIONS_CACHE_URL: 'http://c/' })).toEqual({ url: 'http://c/', read: true, write: true });
    expect(remoteService({ ACTIONS_RESULTS_URL: 'http://r/', ACTIONS_CACHE_MODE: 'read' })).toMatchObject({
      read: true,
      write: false,
    });
    expect(remoteService({ ACTIONS_CACHE_URL: 'http://c/', ACTIONS_CACHE_MODE: 'write' })).toMatchObject({
      read: false,
      write: true,
    });
    expect(remoteService({ ACTIONS_CACHE_URL: 'http://c/', ACTIONS_CACHE_MODE: 'none' })).toMatchObject({
      read: false,
      write: false,
    });
  });

  it('save: never untrusted or privileged code; auto only on the default branch, never a PR', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-event-'));
    try {
      const event = path.join(dir, 'event.json');
      fs.writeFileSync(event, JSON.stringify({ repository: { default_branch: 'trunk' } }));
      const env = { GITHUB_EVENT_PATH: event };
      const trusted = { trust: 'trusted' as const, scopeId: 'refs/heads/trunk' };
      expect(saveDecision('auto', trusted, env).save).toBe(true);
      expect(saveDecision('auto', { ...trusted, scopeId: 'refs/heads/feature' }, env).save).toBe(false);
      expect(saveDecision('auto', { ...trusted, scopeId: 'pr:5' }, env).save).toBe(false);
      expect(saveDecision('auto', trusted, {}).save).toBe(false);
      expect(saveDecision('true', { ...trusted, scopeId: 'pr:5' }, env).save).toBe(true);
      expect(saveDecision('false', trusted, env).save).toBe(false);
      for (const trust of ['untrusted', 'privileged'] as const)
        expect(saveDecision('true', { trust, scopeId: 'refs/heads/trunk' }, env)).toEqual({
          save: false,
          why: `a run of ${trust} code never uploads`,
        });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
