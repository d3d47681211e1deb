// Initial sync (ferrydb only): a fresh tab opens a new database of the bench
// app against the reference server, which holds `?rows=N` items, and times
// from the `open()` call until all N rows are in the replica and on disk.
// `?list=L`: protocol v2 instead, the app `tests/fixtures/collab.json` (the
// page's server runs it) synced through the subscriptions `myLists` and
// `listItems` of list L, which holds the N items, as user `bulk`.
// The result lands in `window.initialSync` (or `{ error }`).
const query = new URLSearchParams(location.search);
// `?pkg=ferrydb-base`: another build of the package, for a side-by-side before/after.
const { open } = await import(`../${query.get('pkg') ?? 'ferrydb'}/dist/index.js`);
const expected = Number(query.get('rows'));
const list = query.get('list');
// Fetched before the clock starts: an app ships its definition in its bundle.
const app = await (await fetch(list ? './collab.json' : './app.json')).json();

async function run() {
  const t0 = performance.now();
  const db = open({
    name: `sync-${query.get('db')}`,
    user: list ? 'bulk' : 'bench',
    storage: query.get('storage') ?? 'auto',
    app,
    server: `${location.origin}/sync`,
    auth: async () => (list ? 'bulk' : 'bench'), // the server runs with --dev-auth: the token is the user id
  });
  window.ferryDb = db;
  const trace = list ? await subscriptionsComplete(db) : await syncedOnce(db, t0);
  const caughtUpMs = performance.now() - t0;
  const [{ n }] = await db.query('SELECT count(*) AS n FROM items');
  // A later commit is durable only once every earlier one is: this write's
  // `durable` covers all the frames the pulls committed.
  const mark = await db.exec(`INSERT OR REPLACE INTO ${list ? 'drafts' : 'bench_marks'} (id) VALUES (?)`, ['synced']);
  await mark.durable;
  const durableMs = performance.now() - t0;
  // The worker's wasm memory, which holds the replica's pages: most of its footprint.
  const { wasmMemoryBytes } = await db.stats();
  return {
    rows: n,
    expected,
    caughtUpMs,
    durableMs,
    wasmMemoryBytes,
    ...trace,
    durableSeq: db.storage?.durableSeq ?? null,
  };
}

/** v1: until the sync status says the first download is over; the statuses seen on the way. */
function syncedOnce(db, t0) {
  let firstStatusMs = null;
  const statuses = [];
  return new Promise((resolve, reject) => {
    const check = (status) => {
      firstStatusMs ??= performance.now() - t0;
      statuses.push([Math.round(performance.now() - t0), status.downloading ? 'd' : '-', status.connected ? 'c' : '-']);
      if (status.lastSyncedAt !== null) {
        stop?.();
        resolve({ firstStatusMs, statuses: statuses.slice(0, 60) });
      } else if (status.error && !['network', 'server_error', 'timeout'].includes(status.error.code)) {
        stop?.();
        reject(new Error(`sync failed: ${status.error.code}: ${status.error.message}`));
      }
    };
    const stop = db.onSyncStatus(check);
  });
}

/** v2: until `myLists` and `listItems` of the list are both complete. */
async function subscriptionsComplete(db) {
  const subscriptions = [db.sync('myLists', {}), db.sync('listItems', { list_id: list })];
  await Promise.all(subscriptions.map((s) => s.complete));
  return {};
}

// `?wait=1`: start when the driver calls `window.go()` (bench/profile_sync.mjs).
const started = query.get('wait') ? new Promise((resolve) => (window.go = resolve)) : Promise.resolve();
started.then(run).then(
  (result) => (window.initialSync = result),
  (error) => (window.initialSync = { error: String(error?.message ?? error) }),
);
