import { Counter, Gauge, Registry } from 'prom-client';
import { writeFileAtomic } from '../common/atomic.js';
import { readJournal, type JournalRecord } from '../root/journal.js';
import { Layout } from '../root/layout.js';
import { freeBytes, requiredFree } from '../common/space.js';
import type { SpaceTarget } from '../common/units.js';
import { takeCensus } from './census.js';
import fs from 'node:fs';

/** Why a lane went, as a bounded label: orphan, max-age, keep-free, warm-keep or other. */
export function reasonLabel(reason: string | undefined): string {
  const text = reason ?? '';
  if (text.startsWith('orphan')) return 'orphan';
  if (text.includes('max-age')) return 'max-age';
  if (text.includes('keep-free')) return 'keep-free';
  if (text.includes('warm-keep')) return 'warm-keep';
  return 'other';
}

export interface MetricsOptions {
  keepFree?: SpaceTarget;
  /** Walk every lane for its size (costs a tree walk per lane). */
  sizes: boolean;
}

/**
 * What a fleet operator graphs and alerts on, in Prometheus' text format: lanes (and, with
 * sizes, bytes) by state, the root's free space against the keep-free target, the oldest live
 * lane's age, reaps and evictions by reason, delete failures and resisting trash entries, and
 * the last sweep's time and duration (the last two from the journal).
 */
export async function metricsText(root: string, options: MetricsOptions): Promise<string> {
  const registry = new Registry();
  const layout = new Layout(root);
  try {
    const figures = laneMetrics(registry, layout, options);
    spaceMetrics(registry, root, options.keepFree);
    if (figures.oldestLive !== undefined) {
      gaugeIn(registry, 'runlane_oldest_live_lane_age_seconds', 'Age of the oldest lane whose lease is held.').set(
        (Date.now() - figures.oldestLive) / 1000,
      );
    }
    gaugeIn(
      registry,
      'runlane_trash_resisting_entries',
      'Trash entries that resisted deletion (retried every sweep).',
    ).set(figures.resisting);
    gaugeIn(
      registry,
      'runlane_problems',
      'Parts of the root a listing had to skip (refused directories, unusable locks).',
    ).set(figures.problems);
    journalMetrics(registry, readJournal(layout));
  } finally {
    layout.close();
  }
  return registry.metrics();
}

function gaugeIn(registry: Registry, name: string, help: string, labelNames: string[] = []): Gauge {
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

/** What laneMetrics found beyond the per-state gauges. */
interface LaneFigures {
  oldestLive?: number;
  resisting: number;
  problems: number;
}

/** Lanes, parked lanes and trash entries counted (and sized) by state, one at a time. */
function laneMetrics(registry: Registry, layout: Layout, options: MetricsOptions): LaneFigures {
  const lanes = gaugeIn(registry, 'runlane_lanes', 'Lanes under the root by state.', ['state']);
  const bytes = gaugeIn(
    registry,
    'runlane_lane_bytes',
    'Disk use of the lanes by state: as measured when a lane was kept or parked; with --sizes, every lane and trash entry measured now.',
    ['state'],
  );
  const figures: LaneFigures = { resisting: 0, problems: 0 };
  const counts = new Map<string, number>(
    ['live', 'orphan', 'kept', 'unknown', 'parked', 'trash'].map((state) => [state, 0]),
  );
  const onProblem = () => figures.problems++;
  takeCensus(layout, { sizes: options.sizes, onProblem }, (entry) => {
    // Live is what the kernel says (the lease is held), whatever the lane's metadata says:
    // a job can write a `retained` marker into its own live lane, not take its lease away.
    const state = entry.leased ? 'live' : entry.state;
    counts.set(state, (counts.get(state) ?? 0) + 1);
    if (entry.size) bytes.inc({ state }, entry.size.bytes);
    if (state === 'unknown') figures.problems++;
    if (entry.failures?.length) figures.resisting++;
    const created = Date.parse(entry.since ?? '');
    if (state === 'live' && !Number.isNaN(created))
      figures.oldestLive = Math.min(figures.oldestLive ?? created, created);
  });
  for (const [state, count] of counts) lanes.set({ state }, count);
  if (options.sizes) for (const state of counts.keys()) bytes.inc({ state }, 0);
  return figures;
}

/** The root's file system: free bytes, size, and the keep-free target when one is set. */
function spaceMetrics(registry: Registry, root: string, keepFree: SpaceTarget | undefined): void {
  gaugeIn(registry, 'runlane_root_free_bytes', "Bytes free for unprivileged users on the root's file system.").set(
    freeBytes(root),
  );
  const stats = fs.statfsSync(root);
  gaugeIn(registry, 'runlane_root_size_bytes', "Size of the root's file system.").set(stats.blocks * stats.bsize);
  if (keepFree) {
    gaugeIn(registry, 'runlane_keep_free_target_bytes', 'Free space the sweep keeps (keep-free).').set(
      requiredFree(root, keepFree),
    );
  }
}

/** Counters over the journal (they restart when it rotates, which Prometheus' rate() handles). */
function journalMetrics(registry: Registry, records: readonly JournalRecord[]): void {
  const removals = new Counter({
    name: 'runlane_removals_total',
    help: 'Lanes reaped or evicted, by reason (orphan, max-age, keep-free, warm-keep, other).',
    labelNames: ['action', 'reason'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'runlane_delete_failures_total',
    help: 'Deletions that left something behind (a root-owned or immutable file, a mount).',
    registers: [registry],
  });
  const freed = new Counter({
    name: 'runlane_deleted_bytes_total',
    help: 'Bytes freed by deleting trash entries.',
    registers: [registry],
  });
  failures.inc(0);
  freed.inc(0);
  let lastSweep: JournalRecord | undefined;
  // Compared as instants (the reader keeps only ISO-8601 ones, none in the future), not as strings.
  for (const record of records) {
    if (record.action === 'reaped' || record.action === 'evicted')
      removals.inc({ action: record.action, reason: reasonLabel(record.reason) });
    else if (record.action === 'delete-failed') failures.inc();
    else if (record.action === 'deleted') freed.inc(record.bytes ?? 0);
    else if (record.action === 'swept' && (!lastSweep || Date.parse(record.time) > Date.parse(lastSweep.time)))
      lastSweep = record;
  }
  if (lastSweep) {
    new Gauge({
      name: 'runlane_last_sweep_timestamp_seconds',
      help: 'When the last sweep finished (Unix time).',
      registers: [registry],
    }).set(Date.parse(lastSweep.time) / 1000);
    new Gauge({
      name: 'runlane_last_sweep_duration_seconds',
      help: 'How long the last sweep took.',
      registers: [registry],
    }).set(lastSweep.seconds ?? 0);
  }
}

/** Writes the exposition for node_exporter's textfile collector: atomically, so it never reads half a file. */
export function writeTextfile(file: string, text: string): void {
  writeFileAtomic(file, text);
}
