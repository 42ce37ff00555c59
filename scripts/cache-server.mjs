// A cache service speaking the Actions cache protocol v1 (what GHES, Gitea's and Forgejo's
// runners serve at ACTIONS_CACHE_URL), over real HTTP, for the tests and `npm run e2e`:
// lookup by keys and version, reserve, chunked PATCH upload, commit, download.
// behaviour: 'ok'; 'hang' (takes connections, never answers); 'corrupt' (serves garbage for
// every archive); 'error' (500 on every call). `behave(b)` changes it while it runs.
// `gate(promise)`: archive downloads wait for the promise (a test acts mid-transfer).
import http from 'node:http';

export async function startCacheServer(options = {}) {
  let behaviour = options.behaviour ?? 'ok';
  const entries = []; // { id, key, version, chunks: Buffer[], size, committed, created }
  const requests = [];
  let nextId = 1;
  const held = [];
  let gate = Promise.resolve();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://cache');
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (behaviour === 'hang') {
      held.push(res);
      return;
    }
    if (behaviour === 'error') {
      res.writeHead(500).end('{"message":"broken"}');
      return;
    }
    const body = [];
    req.on('data', (chunk) => body.push(chunk));
    req.on('end', () => {
      const data = Buffer.concat(body);
      const json = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(value === undefined ? '' : JSON.stringify(value));
      };
      const api = '/_apis/artifactcache/';
      if (req.method === 'GET' && url.pathname === `${api}cache`) {
        const keys = (url.searchParams.get('keys') ?? '').split(',');
        const version = url.searchParams.get('version');
        const usable = entries
          .filter((e) => e.committed && e.version === version)
          .sort((a, b) => b.created - a.created);
        for (const [index, key] of keys.entries()) {
          // The first key matches exactly first; every key then matches as a prefix, newest first.
          const hit = (index === 0 && usable.find((e) => e.key === key)) || usable.find((e) => e.key.startsWith(key));
          if (hit) {
            const address = server.address();
            return json(200, {
              cacheKey: hit.key,
              scope: 'refs/heads/main',
              archiveLocation: `http://127.0.0.1:${address.port}/archive/${hit.id}`,
            });
          }
        }
        return json(204);
      }
      if (req.method === 'POST' && url.pathname === `${api}caches`) {
        const request = JSON.parse(data.toString() || '{}');
        if (entries.some((e) => e.key === request.key && e.version === request.version))
          return json(409, { message: `Cache already exists: ${request.key}` });
        const entry = { id: nextId++, key: request.key, version: request.version, chunks: [], committed: false };
        entries.push(entry);
        return json(201, { cacheId: entry.id });
      }
      const match = /^\/_apis\/artifactcache\/caches\/(\d+)$/.exec(url.pathname);
      const entry = match && entries.find((e) => e.id === Number(match[1]));
      if (match && !entry) return json(404, { message: 'no such cache' });
      if (req.method === 'PATCH' && entry) {
        const range = /bytes (\d+)-(\d+)/.exec(req.headers['content-range'] ?? '');
        if (!range) return json(400, { message: 'no Content-Range' });
        entry.chunks.push({ start: Number(range[1]), data });
        return json(204);
      }
      if (req.method === 'POST' && entry) {
        const { size } = JSON.parse(data.toString() || '{}');
        const archive = Buffer.alloc(size);
        for (const chunk of entry.chunks) chunk.data.copy(archive, chunk.start);
        entry.archive = archive;
        entry.chunks = [];
        entry.committed = true;
        entry.created = Date.now() + entry.id / 1000;
        return json(204);
      }
      const archive = /^\/archive\/(\d+)$/.exec(url.pathname);
      if (req.method === 'GET' && archive) {
        const hit = entries.find((e) => e.id === Number(archive[1]));
        if (!hit) return json(404);
        const bytes =
          behaviour === 'corrupt' ? Buffer.from('this is not a tar archive at all\n'.repeat(64)) : hit.archive;
        return void gate.then(() => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
          res.end(bytes);
        });
      }
      json(404, { message: `no route ${req.method} ${url.pathname}` });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    entries,
    requests,
    behave(next) {
      behaviour = next;
    },
    gate(until) {
      gate = until;
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
