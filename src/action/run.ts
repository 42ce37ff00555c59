import * as core from './toolkit.js';
import { errorMessage } from '../core/common/errors.js';
import { setActor } from '../core/root/journal.js';

/**
 * The one place that decides how a phase's error surfaces: main fails the step; pre and
 * post only warn, because cleanup trouble must never turn a job red.
 */
export async function runPhase(phase: 'pre' | 'main' | 'post', body: () => Promise<void> | void): Promise<void> {
  setActor(phase);
  try {
    await body();
  } catch (error) {
    if (phase === 'main') core.setFailed(errorMessage(error));
    else core.warning(`runlane ${phase}: ${errorMessage(error)}`);
  }
}

/** Writes the job summary when the runner gives us a summary file (it is optional off GitHub). */
export function writeSummary(build: (summary: core.Summary) => void): void {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  const summary = new core.Summary();
  build(summary);
  summary.write();
}

/** For text placed in the HTML of a job summary. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
