import { Command, Option } from 'commander';
import { Layout } from '../../core/root/layout.js';
import { humanBytes } from '../../core/common/units.js';
import { shown, formatTable } from '../../core/ops/report.js';
import { readJournal } from '../../core/root/journal.js';
import { parseDuration } from '../../core/common/units.js';
import { option, resolveRoot, rootOption } from '../options.js';

/** `runlane log`: the journal of what runlane did to lanes. */
export function addLog(program: Command): void {
  program
    .command('log')
    .description(
      'What runlane did to lanes, from the journal under the root: every removal, trash delete, park, claim, copy, eviction and reap, with when, why, how many bytes and by whom (post, pre, main, run, the CLI).',
    )
    .addOption(rootOption())
    .option('--key <text>', 'only records whose key contains this')
    .addOption(
      new Option('--since <duration>', 'only records newer than this (30m, 6h, 7d)').argParser(
        option((v) => parseDuration('--since', v)),
      ),
    )
    .option('--json', 'print the records as JSON lines')
    .action((options: { root?: string; key?: string; since?: number; json?: boolean }) => {
      const root = resolveRoot(options.root);
      const layout = new Layout(root);
      let records;
      try {
        records = readJournal(layout);
      } finally {
        layout.close();
      }
      const after = options.since === undefined ? '' : new Date(Math.max(0, Date.now() - options.since)).toISOString();
      const shownRecords = records.filter(
        (record) => (!options.key || record.key.includes(options.key)) && record.time >= after,
      );
      if (options.json) {
        for (const record of shownRecords) process.stdout.write(`${JSON.stringify(record)}\n`);
        return;
      }
      if (shownRecords.length === 0) {
        process.stdout.write(
          `no journal records under ${shown(root)}${options.key || options.since ? ' that match' : ''}\n`,
        );
        return;
      }
      const table = [
        ['time', 'action', 'key', 'bytes', 'by', 'why'],
        ...shownRecords.map((record) => [
          record.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
          record.action,
          record.key,
          record.bytes === undefined ? '' : humanBytes(record.bytes),
          `${record.by}@${record.host}`,
          [record.reason, record.detail].filter(Boolean).join('; '),
        ]),
      ];
      process.stdout.write(`${formatTable(table)}\n`);
    });
}
