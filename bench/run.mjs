// `npm run bench`: ferrydb and its peers side by side in one headless Chromium,
// scenarios interleaved across systems, medians and p95 of in-page timings.
//   node bench/run.mjs [--quick] [--json FILE] [--only ferrydb] [--large MB] [--postgres URL]
// Any failed check (a scenario that finds the wrong row count, a page error)
// fails the run: `npm test` runs `--quick --only ferrydb` as a smoke pass.
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { startServer, launchProfile, newPostgresDatabase, root } from '../tests/e2e/harness.mjs';
import { loadOneStore } from './server_load.mjs';
import { initialSyncOneStore, freshStores, median as medianOf } from './initial_sync_load.mjs';
import { seedServer } from './sync_seed.mjs';
import { loadList } from './subscriptions_load.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const jsonFile = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
// `--sync-only`: only the initial sync (ferrydb), `--sync-rows N` rows of it, `--rounds N`.
const syncOnly = args.includes('--sync-only');
// `--large MB`: also open a replica of MB megabytes cold, and report time and memory.
const largeMb = args.includes('--large') ? Number(args[args.indexOf('--large') + 1]) : null;

const ROWS = 10_000;
// Initial sync: rows the reference server holds for a fresh replica to pull.
const SYNC_ROWS = args.includes('--sync-rows') ? Number(args[args.indexOf('--sync-rows') + 1]) : quick ? 10_000 : 100_000;
const BENCH_APP = join(root, 'bench', 'app.json');
// The initial sync through a subscription (protocol v2) uses the collaborative
// fixture: one list of SYNC_ROWS items, synced by `myLists` + `listItems`.
const COLLAB_APP = join(root, 'tests', 'fixtures', 'collab.json');
const SYNC_LIST = 'big';
// `--sync-postgres URL`: the pages' server keeps its sync store on a fresh
// database of that Postgres cluster (default: SQLite), for the initial sync
// from either store.
const syncPostgres = args.includes('--sync-postgres') ? args[args.indexOf('--sync-postgres') + 1] : null;
// Experiments: `--sync-storage memory` (default: the default durable storage),
// `--page-size N` for the server (default: the server's).
const syncStorage = args.includes('--sync-storage') ? args[args.indexOf('--sync-storage') + 1] : null;
// `--base DIR`: DIR holds pkg/ and dist/ of another build; it runs as the
// system `ferrydb-base`, every scenario alongside ferrydb, alternating (with
// `--sync-only`: its initial sync only, as `base_initial_sync_*`).
const baseBuild = args.includes('--base') ? args[args.indexOf('--base') + 1] : null;
const pageSize = args.includes('--page-size') ? ['--page-size', args[args.indexOf('--page-size') + 1]] : [];
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : quick ? 1 : 5;
const reps = (n) => (quick ? Math.max(3, Math.ceil(n / 10)) : n);

const SYSTEMS = {
  ferrydb: {
    page: 'ferrydb.html',
    files: {
      // What dist/index.js imports (scripts/size.mjs follows the imports).
      main: [
        'ferrydb/dist/index.js',
        'ferrydb/dist/errors.js',
        'ferrydb/dist/durability.js',
        'ferrydb/dist/live.js',
        'ferrydb/dist/live_registry.js',
        'ferrydb/dist/sync.js',
        'ferrydb/dist/transport.js',
      ],
      worker: ['ferrydb/dist/worker.js', 'ferrydb/pkg/ferrydb.js', 'ferrydb/pkg/ferrydb_bg.wasm'],
    },
    config: `SharedWorker, default durable storage (frame log in IndexedDB, segments in OPFS); mutations via db.mutate.putItem() of bench/app.json; initial sync from ferrydb-server (${syncPostgres ? 'Postgres' : 'SQLite'} store, loopback)`,
  },
  'sqlite-wasm': {
    page: 'sqlite-wasm.html',
    files: { main: [], worker: ['peers/sqlite-wasm/index.mjs', 'peers/sqlite-wasm/sqlite3.wasm'] },
    config: '@sqlite.org/sqlite-wasm 3.53.4, opfs-sahpool VFS in a dedicated worker, journal_mode=DELETE, synchronous=NORMAL',
  },
  'wa-sqlite': {
    page: 'wa-sqlite.html',
    files: {
      main: [],
      worker: [
        'peers/wa-sqlite/dist/wa-sqlite.mjs',
        'peers/wa-sqlite/dist/wa-sqlite.wasm',
        'peers/wa-sqlite/src/sqlite-api.js',
        'peers/wa-sqlite/src/sqlite-constants.js',
        'peers/wa-sqlite/src/VFS.js',
        'peers/wa-sqlite/src/FacadeVFS.js',
        'peers/wa-sqlite/src/examples/OPFSCoopSyncVFS.js',
      ],
    },
    config:
      '@journeyapps/wa-sqlite 2.0.6 (synchronous build), OPFSCoopSyncVFS in a dedicated worker (as PowerSync uses it), journal_mode=DELETE, synchronous=NORMAL',
  },
  pglite: {
    page: 'pglite.html',
    crossTab: true,
    files: {
      main: ['peers/pglite/worker/index.js', 'peers/pglite/live/index.js'],
      worker: ['peers/pglite/index.js', 'peers/pglite/pglite.wasm', 'peers/pglite/pglite.data'],
    },
    config: '@electric-sql/pglite 0.5.16 + live extension, PGliteWorker (multi-tab leader worker), opfs-ahp file system',
  },
};
SYSTEMS.ferrydb.crossTab = true;
// The topology of browsers without SharedWorker, forced: a leader tab's
// dedicated worker, its log in OPFS through sync access handles.
SYSTEMS['ferrydb-leader-tab'] = {
  ...SYSTEMS.ferrydb,
  page: 'ferrydb-leader-tab.html',
  config: 'as ferrydb, with open({ topology: "leader-tab" }): the worker host in the leader tab\'s dedicated worker, storage opfs-sync (frame log appended in place through OPFS sync access handles, segments in OPFS)',
};
if (baseBuild && !syncOnly) {
  // The other build, in the same run: its files are what its dist/index.js imports.
  const baseMain = (await readdir(join(baseBuild, 'dist'))).filter((f) => f.endsWith('.js') && !/^(react|vue|worker)\.js$/.test(f));
  SYSTEMS['ferrydb-base'] = {
    page: 'ferrydb-base.html',
    crossTab: true,
    files: {
      main: baseMain.map((f) => `ferrydb-base/dist/${f}`),
      worker: ['ferrydb-base/dist/worker.js', 'ferrydb-base/pkg/ferrydb.js', 'ferrydb-base/pkg/ferrydb_bg.wasm'],
    },
    config: `ferrydb built from ${baseBuild}, as ferrydb`,
  };
}
const systems = Object.keys(SYSTEMS).filter(
  (s) => (!only || s === only || (only === 'ferrydb' && s === 'ferrydb-base')) && (!syncOnly || s === 'ferrydb'),
);

async function buildSite() {
  const site = join(root, 'target', 'bench-site');
  await rm(site, { recursive: true, force: true });
  await mkdir(join(site, 'ferrydb'), { recursive: true });
  await cp(join(root, 'dist'), join(site, 'ferrydb', 'dist'), { recursive: true });
  await cp(join(root, 'pkg'), join(site, 'ferrydb', 'pkg'), { recursive: true });
  await cp(join(root, 'bench'), join(site, 'bench'), { recursive: true });
  await cp(COLLAB_APP, join(site, 'bench', 'collab.json'));
  if (baseBuild) {
    await cp(join(baseBuild, 'dist'), join(site, 'ferrydb-base', 'dist'), { recursive: true });
    await cp(join(baseBuild, 'pkg'), join(site, 'ferrydb-base', 'pkg'), { recursive: true });
    const page = await readFile(join(root, 'bench', 'ferrydb.html'), 'utf8');
    await writeFile(join(site, 'bench', 'ferrydb-base.html'), page.replace('./ferrydb.js', './ferrydb-base.js'));
    const script = await readFile(join(root, 'bench', 'ferrydb.js'), 'utf8');
    await writeFile(join(site, 'bench', 'ferrydb-base.js'), script.replaceAll('../ferrydb/dist/', '../ferrydb-base/dist/'));
  }
  const page = await readFile(join(root, 'bench', 'ferrydb.html'), 'utf8');
  const leader = `<script>window.benchTopology = 'leader-tab';</script>\n`;
  await writeFile(join(site, 'bench', 'ferrydb-leader-tab.html'), page.replace('<script type="module"', `${leader}<script type="module"`));
  await cp(join(root, 'node_modules', '@sqlite.org', 'sqlite-wasm', 'dist'), join(site, 'peers', 'sqlite-wasm'), {
    recursive: true,
  });
  // wa-sqlite: its synchronous build and the sources it imports.
  for (const part of ['dist/wa-sqlite.mjs', 'dist/wa-sqlite.wasm', 'src']) {
    await cp(join(root, 'node_modules', '@journeyapps', 'wa-sqlite', part), join(site, 'peers', 'wa-sqlite', part), {
      recursive: true,
    });
  }
  // PGlite's extension tarballs and source maps are not loaded: leave them out.
  await cp(join(root, 'node_modules', '@electric-sql', 'pglite', 'dist'), join(site, 'peers', 'pglite'), {
    recursive: true,
    filter: (src) => !src.endsWith('.tar.gz') && !src.endsWith('.map'),
  });
  return site;
}

async function gzipKb(site, files) {
  let bytes = 0;
  for (const f of files) bytes += gzipSync(await readFile(join(site, f)), { level: 9 }).length;
  return bytes / 1024;
}

/** Fails a step that hangs, so one stuck peer cannot stall the whole run. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
const notes = {};

const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
}

/**
 * Cold open: a database of 10,000 rows written by a tab that then closes, so
 * no worker of it is alive; a new tab measures from navigation start to its
 * first query result.
 */
async function coldOpen(system, round) {
  const db = `cold-${system}-${round}-${Date.now()}`;
  const page = `${server.url}bench/${SYSTEMS[system].page}?db=${db}`;
  const writer = await profile.newTab(page);
  await writer.waitForFunction(() => window.bench);
  await writer.evaluate(() => window.bench.ready());
  await writer.evaluate((rows) => window.bench.setup(rows), ROWS);
  await writer.evaluate(() => window.bench.settle());
  await writer.close();
  await new Promise((r) => setTimeout(r, 1000)); // let the browser retire the worker
  const reader = await profile.newTab(`${page}&cold=1`);
  const result = await within(30000, 'cold open', reader.waitForFunction(() => window.coldOpen)).then((h) => h.jsonValue());
  await reader.close();
  if (result.rows !== ROWS) throw new Error(`${system}: cold open found ${result.rows} rows`);
  if (result.sinceOpen !== undefined) record(system, 'cold_open_from_open_call_ms', [result.sinceOpen]);
  return result.ms;
}

/**
 * ferrydb only: a fresh tab opens a new replica of the bench app and pulls
 * every row from the server (`POST /sync/pull` pages); rows/s from the
 * `open()` call until all rows are in the replica and on disk.
 */
async function initialSync(round, pkg = 'ferrydb', { v2 = false } = {}) {
  const db = `${pkg}-${v2 ? 'v2-' : ''}${round}-${Date.now()}`;
  const origin = v2 ? v2Server.url : server.url;
  const tab = await profile.newTab(
    `${origin}bench/ferrydb-sync.html?db=${db}&rows=${SYNC_ROWS}&pkg=${pkg}${syncStorage ? `&storage=${syncStorage}` : ''}${v2 ? `&list=${SYNC_LIST}` : ''}`,
  );
  try {
    const result = await within(180000, 'initial sync', tab.waitForFunction(() => window.initialSync, null, { timeout: 0 }))
      .then((h) => h.jsonValue());
    if (result.error) throw new Error(`initial sync: ${result.error}`);
    if (result.rows !== SYNC_ROWS) throw new Error(`initial sync: the replica holds ${result.rows} of ${SYNC_ROWS} rows`);
    const prefix = `${pkg === 'ferrydb' ? '' : 'base_'}${v2 ? 'v2_' : ''}`;
    record('ferrydb', `${prefix}initial_sync_caught_up_ms`, [result.caughtUpMs]);
    record('ferrydb', `${prefix}initial_sync_durable_ms`, [result.durableMs]);
    record('ferrydb', `${prefix}initial_sync_wasm_memory_mb`, [result.wasmMemoryBytes / 2 ** 20]);
    if (process.env.FERRYDB_BENCH_TRACE) console.log(JSON.stringify(result));
    return SYNC_ROWS / (result.durableMs / 1000);
  } finally {
    await tab.close();
  }
}

/** ferrydb only: cold open of a large replica, and the worker's memory after. */
async function largeOpen(mb) {
  const db = `large-${Date.now()}`;
  const page = `${server.url}bench/ferrydb.html?db=${db}`;
  const writer = await profile.newTab(page);
  await writer.waitForFunction(() => window.bench);
  const t0 = Date.now();
  await within(600000, 'large load', writer.evaluate((mb) => window.bench.setupLarge(mb), mb));
  const loadSeconds = (Date.now() - t0) / 1000;
  await writer.close();
  await new Promise((r) => setTimeout(r, 1500));
  const reader = await profile.newTab(`${page}&cold=large`);
  const result = await within(120000, 'large open', reader.waitForFunction(() => window.coldOpen)).then((h) => h.jsonValue());
  await reader.close();
  return {
    mb,
    rows: result.rows,
    load_s: loadSeconds,
    cold_open_ms: result.ms,
    cold_open_from_open_call_ms: result.sinceOpen,
    wasm_memory_mb: result.wasmMemoryBytes / 2 ** 20,
  };
}

const site = await buildSite();
// One server for the pages and for sync (same origin): the bench app over a
// fresh SQLite store, seeded before any browser scenario runs.
const syncFile = join(root, 'target', `bench-sync-${Date.now()}.db`);
// A Postgres database is left on the cluster (scripts/postgres.sh's is a throwaway).
const syncStore = syncPostgres
  ? await newPostgresDatabase(syncPostgres, `ferry_bench_${Date.now()}`)
  : `sqlite:${syncFile}`;
// `--rate 0`: the benchmark measures capacity, not the per-user request budget.
const server = await startServer(['--static', site, '--app', BENCH_APP, '--store', syncStore, '--dev-auth', '--rate', '0', ...pageSize]);
// A second server, on its own store of the same kind, for the initial sync
// through a subscription (a server speaks v2 when its app has queries).
const v2SyncFile = join(root, 'target', `bench-sync-v2-${Date.now()}.db`);
const v2SyncStore = syncPostgres
  ? await newPostgresDatabase(syncPostgres, `ferry_bench_v2_${Date.now()}`)
  : `sqlite:${v2SyncFile}`;
const v2Server = await startServer(['--static', site, '--app', COLLAB_APP, '--store', v2SyncStore, '--dev-auth', '--rate', '0', ...pageSize]);
const profile = await launchProfile();

/** The browser's name and version, as its user agent gives them (`Chrome/156.0…`). */
async function browserVersion(browser) {
  const tab = await browser.newTab('about:blank');
  const agent = await tab.evaluate(() => navigator.userAgent);
  await tab.close();
  return agent.match(/(Chrome|Firefox|Version)\/[\d.]+/)?.[0] ?? agent;
}
const samples = Object.fromEntries(systems.map((s) => [s, {}]));
const record = (system, key, xs) => (samples[system][key] ??= []).push(...xs);

try {
  if (systems.includes('ferrydb')) {
    const t0 = performance.now();
    await seedServer(server.url, SYNC_ROWS);
    await loadList(v2Server.url, SYNC_LIST, SYNC_ROWS);
    console.log(`bench servers seeded with ${SYNC_ROWS} items each in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const tabs = {};
  for (const system of syncOnly ? [] : systems) {
    const tab = await profile.newTab(`${server.url}bench/${SYSTEMS[system].page}?db=${system}-${Date.now()}`);
    await tab.waitForFunction(() => window.bench);
    await tab.evaluate(() => window.bench.ready());
    await tab.evaluate((rows) => window.bench.setup(rows), ROWS);
    tabs[system] = tab;
  }
  // A second tab on the same database, for cross-tab delivery.
  const watchers = {};
  for (const system of systems.filter((s) => SYSTEMS[s].crossTab && !syncOnly)) {
    const db = new URL(tabs[system].url()).searchParams.get('db');
    const watcher = await profile.newTab(`${server.url}bench/${SYSTEMS[system].page}?db=${db}`);
    await watcher.waitForFunction(() => window.bench);
    await watcher.evaluate(() => window.bench.ready());
    await watcher.evaluate(() => window.bench.watchLimit50());
    watchers[system] = watcher;
  }

  for (let round = 0; round < rounds; round++) {
    // Alternate which system goes first, so neither always runs on a warmer machine.
    const order = round % 2 ? [...systems].reverse() : systems;
    for (const system of order) {
      if (syncOnly) {
        const variants = baseBuild ? (round % 2 ? ['ferrydb-base', 'ferrydb'] : ['ferrydb', 'ferrydb-base']) : ['ferrydb'];
        for (const pkg of variants) {
          const key = pkg === 'ferrydb' ? 'initial_sync_rows_per_s' : 'base_initial_sync_rows_per_s';
          record(system, key, [await initialSync(round, pkg)]);
          record(system, key.replace('initial_sync', 'v2_initial_sync'), [await initialSync(round, pkg, { v2: true })]);
        }
        continue;
      }
      const tab = tabs[system];
      record(system, 'bulk_10k_ms', await tab.evaluate((n) => window.bench.bulk(n), ROWS));
      record(system, 'mutation_local_ms', await tab.evaluate((n) => window.bench.insertOne(n), reps(50)));
      record(system, 'mutation_durable_ms', await tab.evaluate((n) => window.bench.insertDurable(n), reps(30)));
      record(system, 'point_read_ms', await tab.evaluate(([n, rows]) => window.bench.pointRead(n, rows), [reps(200), ROWS]));
      record(
        system,
        'live_same_tab_ms',
        await tab.evaluate((n) => window.bench.live('SELECT * FROM items ORDER BY id LIMIT 50', n), reps(50)),
      );
      record(system, 'live_10k_ms', await tab.evaluate((n) => window.bench.live('SELECT * FROM items ORDER BY id', n), reps(20)));
      record(system, 'cold_open_10k_ms', [await coldOpen(system, round)]);
      if (system === 'ferrydb') {
        record(system, 'initial_sync_rows_per_s', [await initialSync(round)]);
        record(system, 'v2_initial_sync_rows_per_s', [await initialSync(round, 'ferrydb', { v2: true })]);
      }
      if (system === 'ferrydb-base') record(system, 'initial_sync_rows_per_s', [await initialSync(round, 'ferrydb-base')]);
      const watcher = watchers[system];
      if (watcher && !notes[system]?.cross_tab_ms) {
        const cross = [];
        try {
          for (let i = 0; i < reps(50); i++) {
            await watcher.evaluate(() => window.bench.armCrossTab());
            const sent = await tab.evaluate((i) => window.bench.writeFirstRow(i), round * 1000 + i);
            const arrived = await within(5000, 'cross-tab delivery', watcher.evaluate(() => window.bench.crossTabArrival()));
            cross.push(arrived - sent);
          }
          record(system, 'cross_tab_ms', cross);
        } catch (error) {
          (notes[system] ??= {}).cross_tab_ms = String(error.message);
          console.error(`${system}: ${error.message}`);
        }
      }
    }
  }

  const KEYS = [
    'bundle_gzip_kb', 'cold_open_10k_ms', 'bulk_10k_ms', 'mutation_local_ms', 'mutation_durable_ms', 'point_read_ms',
    'live_same_tab_ms', 'live_10k_ms', 'cross_tab_ms', 'initial_sync_rows_per_s', 'server_push_per_s', 'server_pull_rows_per_s',
  ];
  // `systems.<name>` holds exactly KEYS (numbers, or null where not
  // applicable); everything else (p95s, extra timings, configurations, notes,
  // the server load and the initial sync load per store) is under
  // `details.<name>`.
  const report = { browser: await browserVersion(profile), systems: {}, details: {} };
  const details = { date: new Date().toISOString(), quick, rounds };
  const p95 = {};
  for (const system of systems) {
    const files = SYSTEMS[system].files;
    const out = Object.fromEntries(KEYS.map((k) => [k, null]));
    const extra = { config: SYSTEMS[system].config, p95: {} };
    out.bundle_gzip_kb = await gzipKb(site, [...files.main, ...files.worker]);
    p95[system] = extra.p95;
    for (const [key, xs] of Object.entries(samples[system])) {
      extra.samples ??= {};
      extra.samples[key] = xs;
      if (KEYS.includes(key)) out[key] = median(xs);
      else extra[key] = median(xs);
      extra.p95[key] = quantile(xs, 0.95);
    }
    if (system === 'ferrydb') extra.main_thread_js_gzip_kb = await gzipKb(site, files.main);
    if (notes[system]) extra.notes = notes[system];
    report.systems[system] = out;
    report.details[system] = extra;
  }

  if (systems.includes('ferrydb') && !syncOnly) {
    // The reference server under load, on each store (Postgres when one is given).
    const stores = { sqlite: `sqlite:${join(root, 'target', `bench-server-${Date.now()}.db`)}` };
    const postgres = args.includes('--postgres') ? args[args.indexOf('--postgres') + 1] : process.env.FERRYDB_BENCH_POSTGRES_URL;
    if (postgres) stores.postgres = postgres;
    const load = {};
    for (const [name, store] of Object.entries(stores)) {
      load[name] = await loadOneStore(store, { quick });
      console.log(`server load, ${name} store: ${JSON.stringify(load[name])}`);
    }
    // Initial sync, v1 full sync against v2 through one subscription, per store.
    const initialSync = {};
    for (const kind of Object.keys(stores)) {
      const fresh = await freshStores(kind, { dir: join(root, 'target'), admin: postgres, tag: `bench_${Date.now()}` });
      const figures = await initialSyncOneStore(fresh, { rows: quick ? 5000 : 100_000, rounds: 3 });
      initialSync[kind] = Object.fromEntries(Object.entries(figures).map(([key, xs]) => [key, medianOf(xs)]));
      console.log(`initial sync, ${kind} store: ${JSON.stringify(initialSync[kind])}`);
    }
    report.details.ferrydb.initial_sync_load = initialSync;
    report.systems.ferrydb.server_push_per_s = load.sqlite.push_per_s;
    report.systems.ferrydb.server_pull_rows_per_s = load.sqlite.pull_rows_per_s;
    report.details.ferrydb.server_load = load;
  }
  if (systems.includes('ferrydb')) report.details.ferrydb.initial_sync_rows = SYNC_ROWS;
  report.details.run = details;
  for (const [system, out] of Object.entries(report.systems)) {
    const keys = Object.keys(out);
    const wrong = keys.length !== KEYS.length || keys.some((k) => !KEYS.includes(k) || (out[k] !== null && typeof out[k] !== 'number'));
    if (wrong) throw new Error(`${system}: the report's keys are not the agreed ones: ${JSON.stringify(out)}`);
  }
  const fmt = (v) => (v === null || v === undefined ? '—' : typeof v === 'number' ? (v >= 100 ? v.toFixed(0) : v.toFixed(2)) : v);
  console.log(`\nferrydb bench — ${report.browser} — ${details.date}${quick ? ' (quick)' : ''}; median (p95), ms unless named`);
  console.log(['scenario'.padEnd(30), ...systems.map((s) => s.padEnd(20))].join(''));
  const extraKeys = [
    'main_thread_js_gzip_kb',
    'cold_open_from_open_call_ms',
    'initial_sync_caught_up_ms',
    'initial_sync_durable_ms',
    'initial_sync_wasm_memory_mb',
    'v2_initial_sync_rows_per_s',
    'v2_initial_sync_durable_ms',
  ];
  if (baseBuild) {
    extraKeys.push('base_initial_sync_rows_per_s', 'base_v2_initial_sync_rows_per_s', 'base_initial_sync_caught_up_ms', 'base_initial_sync_durable_ms', 'base_initial_sync_wasm_memory_mb');
  }
  for (const key of [...KEYS, ...extraKeys]) {
    const cells = systems.map((s) => {
      const v = KEYS.includes(key) ? report.systems[s][key] : report.details[s][key];
      const p = p95[s][key];
      return `${fmt(v)}${p !== undefined && p !== null ? ` (${fmt(p)})` : ''}`.padEnd(20);
    });
    console.log([key.padEnd(30), ...cells].join(''));
  }
  if (systems.includes('ferrydb')) console.log(`initial sync: ${SYNC_ROWS} rows per round`);
  if (largeMb && systems.includes('ferrydb')) {
    report.details.ferrydb.large_replica = await largeOpen(largeMb);
    console.log(`large replica: ${JSON.stringify(report.details.ferrydb.large_replica)}`);
  }
  if (jsonFile) await writeFile(jsonFile, JSON.stringify(report, null, 2));
  if (profile.errors.length) throw new Error(`page errors during the benchmark: ${profile.errors.join('; ')}`);
} finally {
  await profile.close();
  await server.stop();
  await v2Server.stop();
  for (const file of [syncFile, v2SyncFile]) for (const suffix of ['', '-wal', '-shm']) await rm(`${file}${suffix}`, { force: true });
}
