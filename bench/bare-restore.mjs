// The baseline of the remote-tier bench: the entry restored by bare @actions/cache, with the
// same paths (and so the same version) as runlane's cargo preset, into the current directory.
import * as cache from '@actions/cache';

const key = process.argv[2];
const hit = await cache.restoreCache(['cargo-target/*/*', '!cargo-target/*/incremental'], key, []);
if (hit !== key) {
  console.error(`no hit for ${key}: ${hit}`);
  process.exit(1);
}
