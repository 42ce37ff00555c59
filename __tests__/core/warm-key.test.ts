import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hashFiles, isWarmKeyHash, parseWarmKey, resolveWarmKey } from '../../src/core/warm/key.js';
import { remoteKeys } from '../../src/remote/plan.js';
import { warmSlot } from '../../src/core/warm/warm.js';
import { type SlotParts } from '../../src/core/lane/ci-identity.js';

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
function workspace(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlane-warmkey-'));
  made.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const resolve = (text: string, env: Record<string, string | undefined> = {}, dir?: string) =>
  resolveWarmKey(parseWarmKey('warm-key', text), { env, workspace: dir });

describe('warm-key', () => {
  it('refuses what it cannot resolve, naming the input and the offending part', () => {
    expect(() => parseWarmKey('warm-key', 'a-{rust}')).toThrow(/'warm-key'.*'\{rust\}' is not a placeholder/);
    expect(() => parseWarmKey('warm-key', 'a-{env:1X}')).toThrow(/'1X' is not a variable name/);
    expect(() => parseWarmKey('warm-key', '{hash:../etc/passwd}')).toThrow(/not a glob inside the workspace/);
    expect(() => parseWarmKey('warm-key', '{hash:/etc/*}')).toThrow(/not a glob inside the workspace/);
    expect(() => parseWarmKey('warm-key', 'a-{rustc')).toThrow(/is not closed/);
    expect(() => parseWarmKey('warm-key', 'a}b')).toThrow(/without/);
    expect(() => parseWarmKey('warm-key', 'a\u0007b')).toThrow(/control character/);
    expect(() => parseWarmKey('--warm-key', 'x'.repeat(1025))).toThrow(/Option '--warm-key'.*too long/);
    expect(parseWarmKey('warm-key', '  ').parts).toEqual([]);
  });

  it('no warm-key leaves the slot as it was; any component narrows it, refs and trust still decide', () => {
    const parts: SlotParts = {
      repository: 'acme/w',
      scopeId: 'refs/heads/main',
      trust: 'trusted',
      workflow: 'ci.yml',
      job: 'build',
      step: 'lane',
      matrix: '',
    };
    const none = resolve('');
    expect(none.hash).toBe('');
    expect(warmSlot({ ...parts, warmKey: none.hash || undefined })).toBe(warmSlot(parts));
    const a = resolve('ci-1').hash;
    const b = resolve('ci-2').hash;
    expect(isWarmKeyHash(a)).toBe(true);
    expect(a).not.toBe(b);
    expect(resolve('ci-1').hash).toBe(a);
    const slotA = warmSlot({ ...parts, warmKey: a });
    expect(slotA).not.toBe(warmSlot(parts));
    expect(slotA).not.toBe(warmSlot({ ...parts, warmKey: b }));
    // The same warm-key on another ref, or another trust class, is another slot.
    expect(warmSlot({ ...parts, scopeId: 'pr:1', trust: 'untrusted', warmKey: a })).not.toBe(slotA);
    expect(warmSlot({ ...parts, trust: 'privileged', warmKey: a })).not.toBe(slotA);
    // The remote keys follow it, restore prefix included.
    const id = { repository: 'acme/w', workflow: 'ci.yml', job: 'build', step: 'lane', matrix: '' };
    const plain = remoteKeys(id, ['cargo'], ['x'], 'lock', 'linux-x64');
    const keyed = remoteKeys({ ...id, warmKey: a }, ['cargo'], ['x'], 'lock', 'linux-x64');
    expect(keyed.key.startsWith(plain.restoreKeys[0])).toBe(false);
    expect(isWarmKeyHash('../x')).toBe(false);
  });

  it('{env:NAME}: unset and empty differ, the log never shows the value', () => {
    const unset = resolve('{env:FEATURES}', {});
    const empty = resolve('{env:FEATURES}', { FEATURES: '' });
    const set = resolve('{env:FEATURES}', { FEATURES: 'secret-value' });
    expect(new Set([unset.hash, empty.hash, set.hash]).size).toBe(3);
    expect(set.described).not.toContain('secret-value');
    expect(set.described).toBe('{env:FEATURES: set}');
    expect(unset.described).toContain('unset');
  });

  it('{hash:GLOB}: names and contents of matching regular files; ** walks, symlinked dirs are not entered', () => {
    const dir = workspace({ 'Cargo.lock': 'a', 'crates/x/Cargo.toml': '1', 'crates/y/Cargo.toml': '2', README: 'r' });
    const outside = workspace({ 'deep/Cargo.toml': 'outside' });
    fs.symlinkSync(outside, path.join(dir, 'link'));
    const first = hashFiles(dir, '**/Cargo.toml');
    expect(first.count).toBe(2);
    expect(hashFiles(dir, 'Cargo.lock').count).toBe(1);
    expect(hashFiles(dir, 'crates/*/Cargo.toml').count).toBe(2);
    expect(hashFiles(dir, 'crates/?/Cargo.t?ml').count).toBe(2);
    expect(hashFiles(dir, 'nothing*').hash).toBe('none');
    fs.writeFileSync(path.join(dir, 'crates/y/Cargo.toml'), '3');
    expect(hashFiles(dir, '**/Cargo.toml').hash).not.toBe(first.hash);
    // A FIFO that matches is never waited on; a symlink that matches is not read.
    spawnSync('mkfifo', [path.join(dir, 'crates/pipe.lock')]);
    fs.symlinkSync('/etc/hostname', path.join(dir, 'crates/host.lock'));
    expect(hashFiles(dir, 'crates/*.lock').count).toBe(0);
    // A trailing ** matches every file below.
    expect(hashFiles(dir, 'crates/**').count).toBe(2);
    expect(hashFiles(dir, '**').count).toBe(4);
    // Framing: two files and one file whose content spells both never hash alike.
    const two = workspace({ 'a.lock': 'x', 'b.lock': 'y' });
    const one = workspace({ 'a.lock': 'x\u0000b.lock\u0000y' });
    expect(hashFiles(two, '*.lock').hash).not.toBe(hashFiles(one, '*.lock').hash);
    const described = resolve('k-{hash:**/Cargo.toml}', {}, dir).described;
    expect(described).toMatch(/2 files/);
  });

  it("{rustc} never hands the run's tokens to a toolchain; a privileged run never runs one its workspace names", () => {
    const dir = workspace({});
    fs.mkdirSync(path.join(dir, 'tc/bin'), { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'tc/bin/rustc'),
      `#!/bin/sh\necho "rustc 9.9.9 (planted)"; env > '${path.join(dir, 'seen')}'\n`,
    );
    fs.chmodSync(path.join(dir, 'tc/bin/rustc'), 0o755);
    fs.writeFileSync(path.join(dir, 'rust-toolchain.toml'), `[toolchain]\npath = "${path.join(dir, 'tc')}"\n`);
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, ACTIONS_RUNTIME_TOKEN: 'tok', INPUT_KEY: 'x' };
    const template = parseWarmKey('warm-key', '{rustc}');
    const trusted = resolveWarmKey(template, { env, workspace: dir, trust: 'trusted' });
    // rustup (installed here) honours the workspace's toolchain for a trusted run: it saw nothing of the run.
    expect(trusted.described).toContain('planted');
    const seen = fs.readFileSync(path.join(dir, 'seen'), 'utf8');
    expect(seen).toContain('PATH=');
    expect(seen).not.toContain('ACTIONS_RUNTIME_TOKEN');
    expect(seen).not.toContain('INPUT_KEY');
    fs.rmSync(path.join(dir, 'seen'));
    const privileged = resolveWarmKey(template, { env, workspace: dir, trust: 'privileged' });
    expect(privileged.described).not.toContain('planted');
    expect(fs.existsSync(path.join(dir, 'seen'))).toBe(false);
  });

  it('{rustc}: a hash of rustc -vV in the workspace, or a marker when rustc cannot run', () => {
    const dir = workspace({});
    const real = resolve('{rustc}', { PATH: process.env.PATH }, dir);
    const missing = resolve('{rustc}', { PATH: '/nonexistent' }, dir);
    expect(missing.described).toMatch(/no rustc/);
    expect(real.hash).not.toBe(missing.hash);
    const version = spawnSync('rustc', ['-vV'], { encoding: 'utf8' });
    expect(version.status).toBe(0);
    expect(real.described).toContain(version.stdout.split('\n')[0]);
  });
});
