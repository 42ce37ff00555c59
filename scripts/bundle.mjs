// Bundles each entry point into dist/<entry>/index.js with ncc. dist/ is committed and must
// always equal this script's output: CI rebuilds it and fails on any difference.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const entries = ['pre', 'main', 'post', 'holder', 'cli', 'delete-worker', 'remote'];
fs.rmSync('dist', { recursive: true, force: true });
for (const entry of entries) {
  const out = path.join('dist', entry);
  const result = spawnSync(
    process.execPath,
    [
      'node_modules/@vercel/ncc/dist/ncc/cli.js',
      'build',
      `src/entries/${entry}.ts`,
      '-o',
      out,
      '--minify',
      '--quiet',
      '--target',
      'es2022',
    ],
    { stdio: 'inherit' },
  );
  if (result.status !== 0) process.exit(result.status ?? 1);
}
fs.chmodSync('dist/cli/index.js', 0o755);
// The perl lease holder is a script of its own, beside the node holder it stands in for.
fs.copyFileSync('src/entries/holder.pl', 'dist/holder/holder.pl');
// The remote tier's transfers run with this first on PATH: it checks an archive before tar extracts it.
fs.mkdirSync('dist/remote/bin');
fs.writeFileSync('dist/remote/bin/tar', '#!/bin/sh\nexec "$RUNLANE_NODE" "$RUNLANE_REMOTE" tar-guard "$@"\n', {
  mode: 0o755,
});
