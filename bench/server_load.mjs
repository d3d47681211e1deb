// Load check of the reference server over loopback (bounded, stops by itself):
// pushes/s, pulled rows/s, and the time for one poke to reach N realtime
// clients, per store. Used by bench/run.mjs; also runnable alone:
//   node bench/server_load.mjs [--quick] [--postgres URL] [--compare BINARY] [--rounds N]
// `--compare` measures another build of the server (e.g. the one before a
// change) in the same run: the two alternate, round by round, on fresh
// databases, and the medians print side by side.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startServer, newPostgresDatabase, root } from '../tests/e2e/harness.mjs';

const APP = join(root, 'tests', 'fixtures', 'app.json');

function pushBody(client, mutations) {
  return { protocolVersion: 1, schemaVersion: 1, clientGroupID: client, clientID: client, mutations };
}

async function post(url, path, user, body) {
  const response = await fetch(`${url}sync/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${user}` },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** `clients` clients push one mutation per request, `each` times, all at once. */
async function pushesPerSecond(url, clients, each) {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let id = 1; id <= each; id++) {
        const reply = await post(url, 'push', `load${c}`, pushBody(`push-${c}`, [
          { id, name: 'increment', args: { id: `p${c}`, by: 1 }, timestamp: Date.now() },
        ]));
        if (reply.results?.[0]?.type !== 'ok') throw new Error(`push not ok: ${JSON.stringify(reply)}`);
      }
    }),
  );
  return (clients * each) / ((performance.now() - started) / 1000);
}

/** Loads `rows` counters, then times a full initial sync of them by a new client. */
async function pullRowsPerSecond(url, rows) {
  await loadCounters(url, rows);
  return fullSyncRowsPerSecond(url, rows, 'reader');
}

/** Pushes `rows` counters (`r0000000`, …), a thousand mutations a request. */
export async function loadCounters(url, rows) {
  const batch = 1000;
  for (let start = 0, id = 1; start < rows; start += batch, id++) {
    const mutations = [];
    for (let i = start; i < Math.min(rows, start + batch); i++) {
      mutations.push({ id: mutations.length + start + 1, name: 'increment', args: { id: `r${String(i).padStart(7, '0')}`, by: i }, timestamp: 0 });
    }
    await post(url, 'push', 'loader', pushBody('loader', mutations));
  }
}

/** Times a v1 full sync (every page) by the new client `reader`: rows/s. */
export async function fullSyncRowsPerSecond(url, rows, reader) {
  const started = performance.now();
  let cookie = null;
  let received = 0;
  for (;;) {
    const reply = await post(url, 'pull', 'reader', {
      protocolVersion: 1, schemaVersion: 1, clientGroupID: reader, clientID: reader, cookie,
    });
    received += reply.patch.filter((op) => op.type === 'put').length;
    cookie = reply.cookie;
    if (!reply.more) break;
  }
  const seconds = (performance.now() - started) / 1000;
  if (received < rows) throw new Error(`initial sync got ${received} of ${rows} rows`);
  return received / seconds;
}

/** Opens an SSE stream and calls `onPoke` for each poke. */
async function listen(url, user, onPoke, signal) {
  const response = await fetch(`${url}sync/events`, { headers: { authorization: `Bearer ${user}` }, signal });
  if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.split('\n').find((l) => l.startsWith('data: '));
          if (data) onPoke(JSON.parse(data.slice(6)));
        }
      }
    } catch {
      // aborted at the end of the check
    }
  })();
}

/** Connects `n` realtime clients, pushes once, and times until every one was poked. */
async function pokeFanoutMs(url, n) {
  const controller = new AbortController();
  let connected = 0;
  let poked = 0;
  let resolveAll;
  const all = new Promise((r) => (resolveAll = r));
  const arrivals = [];
  let sent = 0;
  try {
    const ready = [];
    for (let i = 0; i < n; i++) {
      // The first poke tells where the server is; any later one is the push's.
      let seen = null;
      ready.push(
        listen(url, `fan${i % 50}`, (poke) => {
          if (seen === null) {
            seen = poke.cookie;
            connected++;
            return;
          }
          if (poke.cookie > seen) {
            seen = Infinity;
            arrivals.push(performance.now() - sent);
            if (++poked === n) resolveAll();
          }
        }, controller.signal),
      );
    }
    await Promise.all(ready);
    const deadline = Date.now() + 30000;
    while (connected < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (connected < n) throw new Error(`only ${connected} of ${n} realtime clients connected`);
    sent = performance.now();
    const reply = await post(url, 'push', 'fan0', pushBody('fan-pusher', [{ id: 1, name: 'increment', args: { id: 'fan', by: 1 }, timestamp: 0 }]));
    if (reply.results[0].type !== 'ok') throw new Error('fan-out push failed');
    await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${poked} of ${n} poked in 30 s`)), 30000))]);
    arrivals.sort((a, b) => a - b);
    return { all_ms: arrivals[arrivals.length - 1], median_ms: arrivals[Math.floor(arrivals.length / 2)] };
  } finally {
    controller.abort();
  }
}

/** Runs the three checks on a fresh server over `store`; returns the figures. */
export async function loadOneStore(store, { quick, binary }) {
  // `--rate 0`: this measures capacity, not the per-user request budget.
  const server = await startServer(
    ['--app', APP, '--store', store, '--dev-auth', '--max-realtime', '5000', '--rate', '0'],
    binary ? { binary } : {},
  );
  try {
    const push_per_s = await pushesPerSecond(server.url, quick ? 4 : 16, quick ? 25 : 200);
    const pull_rows_per_s = await pullRowsPerSecond(server.url, quick ? 5000 : 100_000);
    const fanout = await pokeFanoutMs(server.url, quick ? 100 : 1000);
    return { push_per_s, pull_rows_per_s, realtime_clients: quick ? 100 : 1000, poke_all_ms: fanout.all_ms, poke_median_ms: fanout.median_ms };
  } finally {
    await server.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const quick = args.includes('--quick');
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'ferrydb-load-'));
  const postgres = option('--postgres');
  const builds = { this: undefined };
  if (option('--compare')) builds.other = option('--compare');
  const rounds = Number(option('--rounds') ?? 1);
  const figures = {};
  let n = 0;
  for (let round = 0; round < rounds; round++) {
    for (const [build, binary] of Object.entries(builds)) {
      const stores = { sqlite: `sqlite:${join(dir, `load-${n++}.db`)}` };
      if (postgres) stores.postgres = await newPostgresDatabase(postgres, `ferrydb_load_${process.pid}_${n++}`);
      for (const [name, store] of Object.entries(stores)) {
        const result = await loadOneStore(store, { quick, binary });
        console.log(`round ${round + 1} ${build} ${name}`, JSON.stringify(result));
        for (const [key, value] of Object.entries(result)) {
          ((figures[`${name} ${key}`] ??= {})[build] ??= []).push(value);
        }
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`medians of ${rounds} round(s):`);
  for (const [figure, byBuild] of Object.entries(figures)) {
    const cells = Object.entries(byBuild).map(([build, xs]) => `${build} ${median(xs).toFixed(1)}`);
    console.log(`  ${figure}: ${cells.join(' | ')}`);
  }
}
