/** Types of cache-server.mjs (the Actions cache protocol v1 test service). */
export interface CacheEntry {
  id: number;
  key: string;
  version: string;
  committed: boolean;
  archive?: Buffer;
  created?: number;
}

export interface CacheServer {
  url: string;
  entries: CacheEntry[];
  requests: string[];
  behave(behaviour: 'ok' | 'hang' | 'corrupt' | 'error'): void;
  /** Archive downloads wait for `until` (a test acts mid-transfer). */
  gate(until: Promise<unknown>): void;
  close(): Promise<void>;
}

export function startCacheServer(options?: { behaviour?: 'ok' | 'hang' | 'corrupt' | 'error' }): Promise<CacheServer>;
