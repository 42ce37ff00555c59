import path from 'node:path';
import { Command } from 'commander';
import { type SpaceTarget } from '../../core/common/units.js';
import { keepFreeOption, resolveRoot, rootOption, sizeHeapForScans } from '../options.js';

/** `runlane metrics`: the root in Prometheus' text format. */
export function addMetrics(program: Command): void {
  program
    .command('metrics')
    .description(
      "Print Prometheus metrics of the root (lanes by state, free space against keep-free, oldest live lane, reaps by reason, delete failures, the last sweep), or write them for node_exporter's textfile collector.",
    )
    .addOption(rootOption())
    .addOption(keepFreeOption('the keep-free target to report against'))
    .option('--sizes', 'also measure every lane (a tree walk each: slow on big roots)')
    .option('--textfile <path>', 'write to this file atomically instead of printing (e.g. .../textfile/runlane.prom)')
    .action(async (options: { root?: string; keepFree: SpaceTarget | null; sizes?: boolean; textfile?: string }) => {
      sizeHeapForScans();
      const root = resolveRoot(options.root);
      // prom-client is loaded only here: every other command (and runlane run) starts without it.
      const { metricsText, writeTextfile } = await import('../../core/ops/metrics.js');
      const text = await metricsText(root, {
        keepFree: options.keepFree ?? undefined,
        sizes: Boolean(options.sizes),
      });
      if (options.textfile) writeTextfile(path.resolve(options.textfile), text);
      else process.stdout.write(text);
    });
}
