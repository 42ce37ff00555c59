import fs from 'node:fs';
import * as core from './toolkit.js';
import {
  describeFailures,
  formatTable,
  keepFreeShort,
  shown,
  sweepSummary,
  sweepTable,
  sweepTableNote,
} from '../core/ops/report.js';
import { metersTo } from '../core/common/progress.js';
import { Layout } from '../core/root/layout.js';
import { sweep } from '../core/ops/sweep.js';
import { listTrash, startBackgroundEmpty } from '../core/root/trash.js';
import { bundled } from '../core/common/bundles.js';
import { escapeHtml, writeSummary } from './run.js';
import type { Settings } from './settings.js';

/**
 * The sweep as a phase: the whole job with `mode: sweep` (scheduled workflows), or pre's
 * opportunistic, time-bounded pass. Pre skips a root that runlane has not made yet.
 */
export async function sweepPhase(settings: Settings, phase: 'pre' | 'main', timeBoundMs?: number): Promise<void> {
  const { dryRun } = settings;
  if (!fs.existsSync(settings.root)) {
    core.info(`runlane: ${shown(settings.root)} does not exist yet: no lanes, nothing to sweep`);
    return;
  }
  core.startGroup(`runlane: sweep ${settings.root}${dryRun ? ' (dry run)' : ''}`);
  const report = sweep({
    root: settings.root,
    dryRun,
    maxAgeMs: settings.maxAgeMs,
    keepFree: settings.keepFree,
    deadline: timeBoundMs === undefined ? undefined : Date.now() + timeBoundMs,
    privileged: settings.privileged,
    // pre only moves orphans into the trash: deleting them is left to a background process.
    background: phase === 'pre',
    // A CI log gets one line per phase (the scan, the trash), not a live counter.
    meters: metersTo((line) => core.info(`runlane: ${line.trimEnd()}`), false),
    parallel: { script: bundled('delete-worker'), workers: 4 },
  });
  const layout = new Layout(settings.root);
  let trashed = 0;
  try {
    trashed = listTrash(layout).length;
  } catch {
    // A refused trash directory is among the report's problems.
  } finally {
    layout.close();
  }
  if (phase === 'pre' && !dryRun && trashed > 0) {
    const pid = startBackgroundEmpty(bundled('cli'), settings.root, settings.privileged);
    core.info(`runlane: emptying the trash in the background (pid ${pid})`);
  }
  const table = sweepTable(report);
  if (table.length > 1) core.info(formatTable(table));
  const note = sweepTableNote(report);
  if (note) core.info(note);
  core.info(sweepSummary(report));
  core.endGroup();
  for (const item of [...report.entries, ...report.trash].filter((e) => e.outcome === 'failed')) {
    core.warning(`runlane sweep: ${shown(item.path)} resists deletion:\n${describeFailures(item.failures ?? [])}`);
  }
  for (const problem of report.problems) core.warning(`runlane sweep: ${shown(problem)}`);
  const short = keepFreeShort(report);
  if (short) core.warning(`runlane sweep: ${short}`);
  if (phase === 'main' || report.trash.length > 0 || report.entries.some((entry) => entry.outcome !== 'left')) {
    writeSummary((summary) =>
      summary
        .addHeading(`runlane: sweep${dryRun ? ' (dry run)' : ''}`, 3)
        .addRaw(escapeHtml(sweepSummary(report)), true)
        .addTable(table.map((row, index) => row.map((cell) => ({ data: escapeHtml(cell), header: index === 0 })))),
    );
  }
}
