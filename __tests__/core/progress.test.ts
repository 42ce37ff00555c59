import { describe, expect, it } from '@jest/globals';
import { Meter } from '../../src/core/common/progress.js';
import {
  STATUS_HEADER,
  formatTable,
  shortenMiddle,
  statusCells,
  warmCell,
  type StatusRow,
} from '../../src/core/ops/report.js';

const statusTable = (rows: StatusRow[]) => [STATUS_HEADER, ...rows.map((row) => statusCells(row))];

/** A meter on a fake clock, writing into `out`. */
function meter(tty: boolean, options: { total?: number; bytes?: () => number } = {}) {
  const out: string[] = [];
  let now = 1_000_000;
  const m = new Meter('trash', {
    write: (text) => out.push(text),
    tty,
    item: ['entry', 'entries'],
    now: () => now,
    ...options,
  });
  return { m, out, advance: (ms: number) => (now += ms) };
}

describe('progress meters', () => {
  it('on a terminal: draws at the first step, redraws in place at most every 250 ms, then replaces the live line with the final one', () => {
    const { m, out, advance } = meter(true, { total: 2 });
    for (let i = 0; i < 63; i++) m.tick(1, 1024);
    expect(out).toEqual([]); // ticks look at the clock every 64 calls only
    m.tick(1, 1024);
    expect(out).toEqual(['\r\u001b[Ktrash: 0/2 entries, 64 files, 64.0 KiB, 0.0 s']); // at once: a slow phase never looks hung
    for (let i = 0; i < 64; i++) m.tick(1, 1024);
    expect(out).toHaveLength(1); // under 250 ms since: not drawn again
    advance(300);
    m.item();
    expect(out[1]).toBe('\r\u001b[Ktrash: 1/2 entries, 128 files, 128.0 KiB, 0.3 s');
    advance(249);
    m.item();
    expect(out).toHaveLength(2); // the next redraw waits its interval
    advance(1);
    m.item();
    expect(out[2]).toBe('\r\u001b[Ktrash: 3/2 entries, 128 files, 128.0 KiB, 0.6 s');
    advance(11_000);
    m.done();
    expect(out[3]).toBe('\r\u001b[Ktrash: 3/2 entries, 128 files, 128.0 KiB, 12 s\n');
  });

  it('in a log: no live line, only the final line of the phase', () => {
    const { m, out, advance } = meter(false, { bytes: () => 3 * 1024 * 1024 });
    for (let i = 0; i < 1000; i++) {
      m.tick(1);
      advance(10);
    }
    m.item();
    expect(out).toEqual([]);
    m.done();
    expect(out).toEqual(['trash: 1 entry, 1,000 files, 3.0 MiB, 10 s\n']);
  });

  it('prints nothing without a place to write', () => {
    const m = new Meter('scan', { tty: true });
    m.tick(1);
    m.item();
    expect(() => m.done()).not.toThrow();
    expect(m.line()).toMatch(/^scan: 1 item, 1 file, [\d.]+ s$/);
  });
});

describe('tables fitted to a terminal', () => {
  const key = 'acme-widgets.pr-1234.98765-1.integration-tests.linux-x64-stable-46c1e1a27c01';
  const rows = [
    {
      key,
      path: '/r/lanes/k',
      state: 'live',
      created: new Date().toISOString(),
      repository: 'acme/widgets',
      scope: 'pr-1234',
    },
  ];

  it('shortens keys in the middle, keeping both ends that tell them apart', () => {
    expect(shortenMiddle(key, 30)).toBe('acme-widgets.pr…e-46c1e1a27c01');
    expect(shortenMiddle(key, 30)).toHaveLength(30);
    expect(shortenMiddle(key, 30).startsWith('acme-widgets.pr')).toBe(true);
    expect(shortenMiddle(key, 30).endsWith('46c1e1a27c01')).toBe(true);
    expect(shortenMiddle('short', 30)).toBe('short');
  });

  it('fits the table to the width given, and cuts nothing without one (a pipe, a log)', () => {
    const fitted = formatTable(statusTable(rows), 80).split('\n');
    for (const line of fitted) expect(line.length).toBeLessThanOrEqual(80);
    expect(fitted[1]).toContain('…');
    expect(fitted[1].endsWith('pr-1234')).toBe(true);
    const full = formatTable(statusTable(rows)).split('\n');
    expect(full[1].startsWith(`${key}  live`)).toBe(true);
    // Never narrower than a useful key, however narrow the terminal.
    expect(formatTable(statusTable(rows), 20).split('\n')[1]).toMatch(/^\S{24} {2}live/);
  });

  it('the warm column says how each lane started: claimed, copied, or restored from the cache service and what it cost', () => {
    expect(warmCell(undefined)).toBe('');
    expect(warmCell('acme.pr-1.12-1.build.none (claimed)')).toBe('claimed');
    expect(warmCell('acme.main.3-1.build.none (reflink)')).toBe('reflink');
    expect(warmCell('runlane-trusted-linux-x64-build-abc-def (remote, 1.2 GiB in 3.1 s (396.4 MB/s))')).toBe(
      'remote 1.2 GiB in 3.1 s (396.4 MB/s)',
    );
    const row = statusCells({ key: 'k', path: '/r/lanes/k', state: 'live', warmFrom: 'x (copy)' });
    expect(row[STATUS_HEADER.indexOf('warm')]).toBe('copy');
  });
});
