// Initial sync, v1 full sync against v2 through one subscription, side by
// side on each store, against the reference server over loopback:
//   node bench/initial_sync_load.mjs [--quick] [--postgres ADMIN_URL] [--rows N] [--rounds N] [--compare BINARY]
// Per store and server build: a v1 server (`tests/fixtures/app.json`) loaded
// with `rows` counters, a v2 server (`tests/fixtures/collab.json`) with one
// list of `rows` items; then, `rounds` times, a new client group syncs
// everything (every page, default page size): v1 by full sync, v2 by the
// subscriptions `myLists` + `listItems` of that list. Prints rows/s per round
// and the medians. `--compare` measures another build of the server (e.g.
// main's) in the same run, on fresh databases. Used by bench/run.mjs too.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startServer, newPostgresDatabase, root } from '../tests/e2e/harness.mjs';
import { loadCounters, fullSyncRowsPerSecond } from './server_load.mjs';
import { loadList, subscriptionSyncRowsPerSecond } from './subscriptions_load.mjs';

const APPS = { v1: join(root, 'tests', 'fixtures', 'app.json'), v2: join(root, 'tests', 'fixtures', 'collab.json') };

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * `stores` gives a fresh store URL per protocol (`{ v1, v2 }`): each app
 * gets its own database. Returns rows/s per protocol, one figure per round.
 */
export async function initialSyncOneStore(stores, { rows, rounds, binary }) {
  const figures = { v1_full_sync_rows_per_s: [], v2_subscription_rows_per_s: [] };
  for (const protocol of ['v1', 'v2']) {
    const server = await startServer(
      ['--app', APPS[protocol], '--store', stores[protocol], '--dev-auth', '--rate', '0'],
      binary ? { binary } : {},
    );
    try {
      if (protocol === 'v1') await loadCounters(server.url, rows);
      else await loadList(server.url, 'big', rows);
      for (let round = 0; round < rounds; round++) {
        const reader = `reader-${round}`;
        if (protocol === 'v1') figures.v1_full_sync_rows_per_s.push(await fullSyncRowsPerSecond(server.url, rows, reader));
        else figures.v2_subscription_rows_per_s.push(await subscriptionSyncRowsPerSecond(server.url, 'big', rows, reader));
      }
    } finally {
      await server.stop();
    }
  }
  return figures;
}

/** Fresh stores for one measurement: SQLite files in `dir`, or databases on the Postgres at `admin`. */
export async function freshStores(kind, { dir, admin, tag }) {
  if (kind === 'sqlite') return { v1: `sqlite:${join(dir, `${tag}-v1.db`)}`, v2: `sqlite:${join(dir, `${tag}-v2.db`)}` };
  return {
    v1: await newPostgresDatabase(admin, `ferrydb_sync_${tag}_v1`),
    v2: await newPostgresDatabase(admin, `ferrydb_sync_${tag}_v2`),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const quick = args.includes('--quick');
  const rows = Number(option('--rows') ?? (quick ? 5000 : 100_000));
  const rounds = Number(option('--rounds') ?? 3);
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'ferrydb-initial-sync-'));
  const admin = option('--postgres');
  const builds = { this: undefined };
  if (option('--compare')) builds.other = option('--compare');
  const kinds = admin ? ['sqlite', 'postgres'] : ['sqlite'];
  const results = {};
  let n = 0;
  for (const kind of kinds) {
    for (const [build, binary] of Object.entries(builds)) {
      const stores = await freshStores(kind, { dir, admin, tag: `${process.pid}_${n++}` });
      const figures = await initialSyncOneStore(stores, { rows, rounds, binary });
      console.log(`${build} ${kind}`, JSON.stringify(figures));
      for (const [key, xs] of Object.entries(figures)) ((results[`${kind} ${key}`] ??= {})[build] = xs);
    }
  }
  console.log(`initial sync of ${rows} rows, medians of ${rounds} round(s):`);
  for (const [figure, byBuild] of Object.entries(results)) {
    const cells = Object.entries(byBuild).map(([build, xs]) => `${build} ${median(xs).toFixed(0)}`);
    console.log(`  ${figure}: ${cells.join(' | ')}`);
  }
}
