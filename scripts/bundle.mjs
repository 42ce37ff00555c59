// Bundles each entry point into dist/<entry>/index.js with ncc. dist/ is committed and must
// always equal this script's output: CI rebuilds it and fails on any difference.
// Entries build in parallel (one ncc per core) into a staging directory that replaces dist/
// only when every build succeeded: a failed or interrupted bundle never leaves dist/ deleted
// or half-built. ncc only transpiles (`--transpile-only`, with src/entries/tsconfig.json, which
// ts-loader finds beside the entries and which emits ES modules, as the type-checked build
// did): `npm run typecheck` checks the whole program once, instead of ncc checking it again
// for each of eight entries (the bundle took 70-80 s that way; now about 20 s).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const entries = ['remote', 'cli', 'main', 'post', 'pre', 'holder', 'delete-worker', 'tar-guard'];
const staging = 'dist.building';
fs.rmSync(staging, { recursive: true, force: true });

function build(entry) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        'node_modules/@vercel/ncc/dist/ncc/cli.js',
        'build',
        `src/entries/${entry}.ts`,
        '-o',
        path.join(staging, entry),
        '--minify',
        '--quiet',
        '--target',
        'es2022',
        '--transpile-only',
      ],
      { stdio: 'inherit' },
    );
    child.on('close', (code) => resolve(code ?? 1));
  });
}

const queue = [...entries];
const lanes = Array.from({ length: Math.max(1, Math.min(os.availableParallelism(), entries.length)) }, async () => {
  let failed = 0;
  while (queue.length > 0) {
    const entry = queue.shift();
    const code = await build(entry);
    if (code !== 0) {
      console.error(`bundle: ${entry} failed (exit ${code})`);
      failed = code;
    }
  }
  return failed;
});
const failures = (await Promise.all(lanes)).filter((code) => code !== 0);
if (failures.length > 0) {
  fs.rmSync(staging, { recursive: true, force: true });
  process.exit(failures[0]);
}
fs.chmodSync(path.join(staging, 'cli', 'index.js'), 0o755);
// The perl lease holder is a script of its own, beside the node holder it stands in for.
fs.copyFileSync('src/entries/holder.pl', path.join(staging, 'holder', 'holder.pl'));
// runlane run's keeper (the parent and subreaper of COMMAND) likewise, beside the CLI.
fs.copyFileSync('src/entries/keeper.pl', path.join(staging, 'cli', 'keeper.pl'));
// The remote tier's transfers run with this first on PATH: it checks an archive before tar extracts it.
fs.mkdirSync(path.join(staging, 'remote', 'bin'));
fs.writeFileSync(
  path.join(staging, 'remote', 'bin', 'tar'),
  '#!/bin/sh\nexec "$RUNLANE_NODE" "$RUNLANE_TAR_GUARD" "$@"\n',
  { mode: 0o755 },
);
// tar's decompressor in a restore: the stream is cut at a byte bound, so no archive fills the
// disk; a failed decompression (not a broken pipe: tar stops reading at the end marker) is
// recorded, since a pipeline's status is head's.
fs.writeFileSync(
  path.join(staging, 'remote', 'bin', 'runlane-decompress'),
  [
    '#!/bin/sh',
    '{ "$@" -c; status=$?; [ "$status" -eq 0 ] || [ "$status" -eq 141 ] || echo "$status" > "$RUNLANE_DECOMPRESS_FAILED"; } |',
    '  head -c "$RUNLANE_STREAM_CAP"',
    '',
  ].join('\n'),
  { mode: 0o755 },
);
fs.rmSync('dist', { recursive: true, force: true });
fs.renameSync(staging, 'dist');
