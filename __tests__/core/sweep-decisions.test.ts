import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import {
  BUSY,
  NOT_REACHED,
  age,
  decideLane,
  decideParked,
  evictionOrder,
  freedBytes,
  remainingKeys,
  type ScannedLane,
} from '../../src/core/ops/sweep-decisions.js';

const now = Date.parse('2026-12-07T12:00:00Z');
const hour = 3_600_000;
const at = (hoursAgo: number) => new Date(now - hoursAgo * hour).toISOString();
const bounds = { now, maxAgeMs: 24 * hour, overTime: false };

describe('the sweep decides a scanned lane', () => {
  const lane = (state: ScannedLane['state'], hoursAgo = 1, extra: Partial<ScannedLane> = {}): ScannedLane => ({
    key: 'k',
    state,
    created: at(hoursAgo),
    ...extra,
  });

  it.each([
    [
      'a live lane is left, however old and however late',
      lane('live', 1000),
      { ...bounds, overTime: true },
      { do: 'leave', reason: 'live: its lease is held' },
    ],
    [
      'an orphan is reaped, whatever its age',
      lane('orphan', 0),
      bounds,
      { do: 'take', outcome: 'reaped', reason: 'orphan: no job holds its lease' },
    ],
    [
      'a kept lane within max-age is weighed against keep-free',
      lane('kept', 23, { retained: 'cleanup: never' }),
      bounds,
      { do: 'weigh' },
    ],
    [
      'a kept lane past max-age is evicted, with why it was kept',
      lane('kept', 25, { retained: 'cleanup: never' }),
      bounds,
      { do: 'take', outcome: 'evicted', reason: 'kept longer than max-age (cleanup: never)' },
    ],
    [
      'a kept lane without a readable date counts as past max-age',
      lane('kept', 0, { created: 'yesterday' }),
      bounds,
      { do: 'take', outcome: 'evicted', reason: 'kept longer than max-age (undefined)' },
    ],
    [
      'with time up, an orphan is left as not reached',
      lane('orphan'),
      { ...bounds, overTime: true },
      { do: 'leave', reason: NOT_REACHED, timedOut: true },
    ],
  ])('%s', (_what, scanned, given, expected) => {
    expect(decideLane(scanned, given)).toEqual(expected);
  });

  it('an unknown lane is left and reported as a problem, before the time bound is looked at', () => {
    const decision = decideLane(lane('unknown', 1, { problem: 'its lock file is a fifo' }), {
      ...bounds,
      overTime: true,
    });
    expect(decision).toEqual({
      do: 'leave',
      reason: 'unknown: its lock file is a fifo',
      problem: 'the lane k was left alone: its lock file is a fifo',
    });
  });
});

describe('the sweep decides a parked lane', () => {
  it.each<[string, string, boolean, typeof bounds, 'leave' | 'evict' | 'weigh']>([
    ['a busy one stays, whatever its age', at(1000), true, bounds, 'leave'],
    ['one past max-age goes', at(25), false, bounds, 'evict'],
    ['one within max-age is weighed', at(23), false, bounds, 'weigh'],
    ['one past max-age is only weighed when time is up', at(25), false, { ...bounds, overTime: true }, 'weigh'],
  ])('%s', (_what, parked, busy, given, expected) => {
    const decision = decideParked(parked, busy, given);
    expect(decision.do).toBe(expected);
    if (decision.do === 'leave') expect(decision.reason.startsWith(BUSY)).toBe(true);
  });
});

describe('space pressure evicts parked lanes first, then kept ones, each oldest first', () => {
  it('orders a mixed set', () => {
    const order = evictionOrder(
      [
        { key: 'p-new', parked: at(1) },
        { key: 'p-old', parked: at(9) },
        { key: 'p-b', parked: at(5) },
        { key: 'p-a', parked: at(5) },
      ],
      [{ key: 'k-new', created: at(2) }, { key: 'k-undated' }, { key: 'k-old', created: at(30) }],
    );
    expect(order.map((each) => ('parked' in each ? each.parked.key : each.kept.key))).toEqual([
      'p-old',
      'p-a',
      'p-b',
      'p-new',
      'k-undated',
      'k-old',
      'k-new',
    ]);
  });

  it('keeps every lane exactly once, parked ones first and each group by date', () => {
    const date = fc.integer({ min: 0, max: 1000 }).map((h) => at(h));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ key: fc.string({ minLength: 1 }), parked: date }), { selector: (l) => l.key }),
        fc.array(fc.record({ key: fc.string({ minLength: 1 }), created: date })),
        (parked, kept) => {
          const order = evictionOrder(parked, kept);
          expect(order).toHaveLength(parked.length + kept.length);
          const firstKept = order.findIndex((each) => 'kept' in each);
          if (firstKept >= 0) expect(order.slice(firstKept).every((each) => 'kept' in each)).toBe(true);
          const dates = order.map((each) => ('parked' in each ? each.parked.parked : each.kept.created));
          const parkedDates = dates.slice(0, parked.length);
          expect([...parkedDates].sort()).toEqual(parkedDates);
          const keptDates = dates.slice(parked.length);
          expect([...keptDates].sort()).toEqual(keptDates);
        },
      ),
    );
  });
});

describe('what a sweep reports', () => {
  const entries = [
    { key: 'a', state: 'orphan', outcome: 'reaped', bytes: 100, trashed: '/r/trash/a' },
    { key: 'b', state: 'orphan', outcome: 'reaped', bytes: 10 },
    { key: 'c', state: 'kept', outcome: 'left', bytes: 1000 },
    { key: 'd', state: 'parked', outcome: 'left' },
    { key: 'e', state: 'kept', outcome: 'failed', bytes: 7 },
  ];
  const trash = [
    { outcome: 'deleted', bytes: 100 },
    { outcome: 'busy', bytes: 5 },
  ];

  it('counts a lane moved to the trash once, in the trash, and what was deleted in place', () => {
    expect(freedBytes('sync', entries, trash)).toBe(110);
    expect(freedBytes('background', entries, [])).toBe(10);
  });

  it('a dry run counts what it would remove', () => {
    expect(freedBytes('dry-run', entries, [{ outcome: 'would delete', bytes: 3 }])).toBe(113);
  });

  it('the lanes still under lanes/ are the ones neither taken nor parked', () => {
    expect([...remainingKeys(entries)].sort()).toEqual(['c', 'e']);
  });

  it('a missing or unreadable date is infinitely old', () => {
    expect(age(undefined, now)).toBe(Infinity);
    expect(age('not a date', now)).toBe(Infinity);
    expect(age(at(2), now)).toBe(2 * hour);
  });
});
