import { humanBytes } from './units.js';

/** What a long walk reports as it goes: entries done, and bytes when it knows them. */
export interface Tick {
  (entries: number, bytes?: number): void;
}

export interface MeterOptions {
  /** Where lines go; nothing is printed without one. */
  write?: (text: string) => void;
  /** A terminal: a live line redrawn in place. Otherwise only the final line, for a CI log. */
  tty?: boolean;
  /** How many items (lanes, trash entries) the phase has, when known. */
  total?: number;
  /** What the items are called ('lane', 'entry'). */
  item?: [string, string];
  /** Bytes done so far, read when a line is drawn (the free-space gain of a delete). */
  bytes?: () => number;
  now?: () => number;
}

const REDRAW_MS = 250;
const CLEAR = '\r\u001b[K';

/**
 * Progress of one phase of a long operation (a sweep's scan, emptying the trash, sizing lanes):
 * items, entries and bytes, drawn at the phase's first step and then redrawn in place at most
 * four times a second on a terminal (so a slow phase never looks hung), and one
 * summary line when the phase ends, on a terminal and in a CI log alike. Cheap enough to tick
 * for every file a walk touches.
 */
export class Meter {
  private items = 0;
  private entries = 0;
  private ownBytes = 0;
  private calls = 0;
  private lastDraw = 0;
  private drawn = false;
  private readonly started: number;
  private readonly now: () => number;

  private readonly options: MeterOptions;

  constructor(
    private readonly phase: string,
    options: MeterOptions = {},
  ) {
    this.options = { ...options };
    this.now = options.now ?? Date.now;
    this.started = this.now();
    // The first step draws at once; later ones wait for the interval.
    this.lastDraw = this.started - REDRAW_MS;
  }

  /** Counts entries (files, directories: shown as files) and bytes done within the current item. */
  readonly tick: Tick = (entries, bytes = 0) => {
    this.entries += entries;
    this.ownBytes += bytes;
    if ((++this.calls & 63) === 0) this.maybeDraw();
  };

  /** The number of items, once it is known. */
  setTotal(total: number): void {
    this.options.total = total;
  }

  /** One item (a lane, a trash entry) done. */
  item(count = 1): void {
    this.items += count;
    this.maybeDraw();
  }

  /** The phase's line: `sizing: 3/40 lanes, 120,000 entries, 1.2 GiB, 4 s`. */
  line(): string {
    const [one, many] = this.options.item ?? ['item', 'items'];
    const total = this.options.total;
    const items =
      total === undefined
        ? `${this.items.toLocaleString('en-US')} ${this.items === 1 ? one : many}`
        : `${this.items.toLocaleString('en-US')}/${total.toLocaleString('en-US')} ${total === 1 ? one : many}`;
    const entries =
      this.entries > 0 ? `, ${this.entries.toLocaleString('en-US')} ${this.entries === 1 ? 'file' : 'files'}` : '';
    const bytes = this.bytes();
    const size = bytes > 0 ? `, ${humanBytes(bytes)}` : '';
    const seconds = (this.now() - this.started) / 1000;
    return `${this.phase}: ${items}${entries}${size}, ${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }

  /** Ends the phase: the live line is replaced by the final one (printed in CI logs too). */
  done(): void {
    const { write } = this.options;
    if (!write) return;
    write(`${this.drawn ? CLEAR : ''}${this.line()}\n`);
    this.drawn = false;
  }

  /** Ends the phase without a line of its own (its caller prints a report instead). */
  clear(): void {
    if (this.drawn) this.options.write?.(CLEAR);
    this.drawn = false;
  }

  private bytes(): number {
    let extra = 0;
    try {
      extra = this.options.bytes?.() ?? 0;
    } catch {
      // A root renamed away or unmounted meanwhile: progress shows what it counted itself.
    }
    return this.ownBytes + extra;
  }

  private maybeDraw(): void {
    if (!this.options.tty || !this.options.write) return;
    const now = this.now();
    if (now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.options.write(`${CLEAR}${this.line()}`);
    this.drawn = true;
  }
}

/** Makes the meter of each phase of an operation; none prints when `write` is undefined. */
export type Meters = (phase: string, options?: Pick<MeterOptions, 'total' | 'item' | 'bytes'>) => Meter;

/** Meters that print to `write`: live lines on a terminal, final lines everywhere. */
export function metersTo(write: ((text: string) => void) | undefined, tty: boolean): Meters {
  return (phase, options = {}) => new Meter(phase, { ...options, write, tty });
}

/** Meters that print nothing (JSON output, the quiet background delete). */
export const silentMeters: Meters = (phase, options = {}) => new Meter(phase, options);
