import { errorMessage } from '../common/errors.js';
import { type Meter } from '../common/progress.js';
import { type RemoveFailure } from '../delete/remove.js';
import { type TreeSize } from '../delete/walk.js';
import { forEachLane, type LaneState } from '../root/liveness.js';
import { type Layout, type LaneMeta } from '../root/layout.js';
import { recordedSize } from '../root/sizes.js';
import { listTrash } from '../root/trash.js';
import { listParked } from '../warm/warm.js';

/** A size and when it was measured (when the lane was kept or parked, or now with `sizes`). */
export type Measured = TreeSize & { measured: string };

/** One thing under a root: a lane, a parked lane or a trash entry, with its size when known. */
export interface CensusEntry {
  area: 'lanes' | 'parked' | 'trash';
  /** The lane's key, or the trash entry's name. */
  name: string;
  path: string;
  state: LaneState | 'parked' | 'trash';
  /** The lane's lease is held now (a kept lane's too: see liveness). */
  leased?: boolean;
  meta?: LaneMeta;
  size?: Measured;
  /** When it was made (a lane, a trash entry) or parked. */
  since?: string;
  /** Why a lane is `unknown`. */
  problem?: string;
  /** What resisted deletion, for a trash entry. */
  failures?: RemoveFailure[];
}

export interface CensusOptions {
  /** Walk every tree for its size now (ticking `meter`), instead of the size recorded at close. */
  sizes: boolean;
  meter?: Meter;
  /** A part of the root that could not be listed; the census goes on without it. */
  onProblem(what: string, detail: string): void;
}

/**
 * Everything under a root, one entry at a time (100,000 lanes never sit in memory at once):
 * the lanes, then the parked lanes, then the trash. O(lanes) unless `sizes`. The one listing
 * behind `status` and `metrics`, so that the two never count differently.
 */
export function takeCensus(layout: Layout, options: CensusOptions, each: (entry: CensusEntry) => void): void {
  const { sizes, meter } = options;
  const part = <T>(what: string, body: () => T[]): T[] => {
    try {
      return body();
    } catch (error) {
      options.onProblem(what, errorMessage(error));
      return [];
    }
  };
  const measure = (area: CensusEntry['area'], names: string[], meta?: LaneMeta): Measured | undefined => {
    if (!sizes) {
      const recorded = recordedSize(meta);
      return recorded && { ...recorded, measured: meta?.measured as string };
    }
    const size = layout.sizeOf(area, names, meter?.tick);
    meter?.item();
    return { ...size, measured: new Date().toISOString() };
  };
  // The lane listing goes on without metadata (lanes then `unknown` or `live`): say why.
  part('metadata', () => {
    layout.dirIfAny('meta');
    return [];
  });
  const parked = part('parked lanes', () => listParked(layout));
  const trash = part('trash', () => listTrash(layout));
  if (sizes) meter?.setTotal(layout.names('lanes').length + parked.length + trash.length);
  part('lanes', () => {
    forEachLane(layout, (lane) => {
      const { key, path, state, meta, leased, problem } = lane;
      const size = measure('lanes', [key], meta);
      each({ area: 'lanes', name: key, path, state, leased, meta, size, since: lane.created, problem });
    });
    return [];
  });
  for (const lane of parked) {
    const size = measure('parked', [lane.slot, lane.key], lane.meta);
    each({
      area: 'parked',
      name: lane.key,
      path: lane.path,
      state: 'parked',
      meta: lane.meta,
      size,
      since: lane.parked,
    });
  }
  for (const entry of trash) {
    const size = measure('trash', [entry.name]);
    each({
      area: 'trash',
      name: entry.name,
      path: entry.path,
      state: 'trash',
      size,
      since: entry.created,
      failures: entry.failures,
    });
  }
}
