import * as core from '@actions/core';
import { formatTable, sweepSummary, sweepTable } from '../core/report.js';
import { sweep } from '../core/sweep.js';
import { escapeHtml, writeSummary } from './run.js';
import type { Settings } from './settings.js';

/**
 * The sweep as a phase: the whole job with `mode: sweep` (scheduled workflows), or pre's
 * opportunistic, time-bounded pass. Pre skips a root that runlane has not made yet.
 */
export async function sweepPhase(settings: Settings, phase: 'pre' | 'main', timeBoundMs?: number): Promise<void> {
  const { dryRun } = settings;
  core.startGroup(`runlane: sweep ${settings.root}${dryRun ? ' (dry run)' : ''}`);
  const report = sweep({
    root: settings.root,
    dryRun,
    maxAgeMs: settings.maxAgeMs,
    keepFree: settings.keepFree,
    deadline: timeBoundMs === undefined ? undefined : Date.now() + timeBoundMs,
  });
  const table = sweepTable(report);
  if (report.entries.length > 0) core.info(formatTable(table));
  core.info(sweepSummary(report));
  core.endGroup();
  for (const entry of report.entries.filter((e) => e.outcome === 'failed')) {
    core.warning(`runlane sweep: ${entry.path}: ${entry.failures?.map((f) => `${f.path}: ${f.code}`).join('; ')}`);
  }
  if (phase === 'main' || report.entries.some((entry) => entry.outcome !== 'kept')) {
    await writeSummary((summary) =>
      summary
        .addHeading(`runlane: sweep${dryRun ? ' (dry run)' : ''}`, 3)
        .addRaw(escapeHtml(sweepSummary(report)), true)
        .addTable(table.map((row, index) => row.map((cell) => ({ data: escapeHtml(cell), header: index === 0 })))),
    );
  }
}
