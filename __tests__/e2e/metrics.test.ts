import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { cli, disposeJobs, laneStates, newJob, within } from '../helpers/jobs.js';

afterEach(disposeJobs);

/** The samples of one metric family, by their labels. */
function family(text: string, name: string): Map<string, number> {
  const parsed = parsePrometheusTextFormat(text).find((each) => each.name === name);
  expect(parsed).toBeDefined();
  return new Map((parsed?.metrics ?? []).map((sample) => [JSON.stringify(sample.labels ?? {}), Number(sample.value)]));
}

describe('runlane metrics, for node_exporter and alerts', () => {
  it('reports lanes by state, space against keep-free, the oldest live lane, removals by reason, and the last sweep', async () => {
    const live = newJob();
    await live.phase('main');
    const root = live.root;
    const orphan = newJob({ root });
    await orphan.phase('main');
    fs.writeFileSync(path.join(orphan.outputs.path, 'blob'), Buffer.alloc(128 * 1024));
    process.kill(Number(orphan.state['holder-pid']), 'SIGKILL');
    expect(await within(10_000, () => laneStates(root)[orphan.outputs.key] === 'orphan')).toBeGreaterThanOrEqual(0);

    const before = cli('metrics', '--root', root, '--sizes');
    expect(before.code).toBe(0);
    const lanes = family(before.stdout, 'runlane_lanes');
    expect(lanes.get('{"state":"live"}')).toBe(1);
    expect(lanes.get('{"state":"orphan"}')).toBe(1);
    expect(lanes.get('{"state":"parked"}')).toBe(0);
    expect(family(before.stdout, 'runlane_lane_bytes').get('{"state":"orphan"}')).toBeGreaterThanOrEqual(128 * 1024);
    const free = family(before.stdout, 'runlane_root_free_bytes').get('{}') as number;
    const size = family(before.stdout, 'runlane_root_size_bytes').get('{}') as number;
    expect(free).toBeGreaterThan(0);
    expect(family(before.stdout, 'runlane_keep_free_target_bytes').get('{}')).toBeCloseTo(size * 0.1, -3);
    expect(family(before.stdout, 'runlane_oldest_live_lane_age_seconds').get('{}')).toBeGreaterThanOrEqual(0);

    expect(cli('sweep', '--root', root).code).toBe(0);
    const textfile = path.join(live.dir, 'textfile', 'runlane.prom');
    fs.mkdirSync(path.dirname(textfile));
    expect(cli('metrics', '--root', root, '--textfile', textfile).code).toBe(0);
    const after = fs.readFileSync(textfile, 'utf8');
    expect(fs.readdirSync(path.dirname(textfile))).toEqual(['runlane.prom']);
    expect(family(after, 'runlane_lanes').get('{"state":"orphan"}')).toBe(0);
    expect(family(after, 'runlane_removals_total').get('{"action":"reaped","reason":"orphan"}')).toBe(1);
    expect(family(after, 'runlane_deleted_bytes_total').get('{}')).toBeGreaterThanOrEqual(0);
    const swept = family(after, 'runlane_last_sweep_timestamp_seconds').get('{}') as number;
    expect(Math.abs(swept - Date.now() / 1000)).toBeLessThan(600);
    expect(family(after, 'runlane_last_sweep_duration_seconds').get('{}')).toBeGreaterThanOrEqual(0);
    expect(family(after, 'runlane_delete_failures_total').get('{}')).toBe(0);
    expect(family(after, 'runlane_problems').get('{}')).toBe(0);
  });
});
