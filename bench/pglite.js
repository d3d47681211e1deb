// The sync-SDK peer: PGlite with its live extension, through PGliteWorker so
// every tab shares one database in a leader tab's worker.
import { PGliteWorker } from '../peers/pglite/worker/index.js';
import { live } from '../peers/pglite/live/index.js';

const dbName = new URLSearchParams(location.search).get('db') ?? 'main';
const now = () => performance.now();
let pg;
let table = 0;
const rowsFor = (count) => Array.from({ length: count }, (_, i) => [String(i).padStart(6, '0'), `item ${i}`, 0, i, Date.now()]);
const SCHEMA = '(id TEXT PRIMARY KEY, title TEXT, done INTEGER, n INTEGER, updated_at BIGINT)';

/** One statement for many rows: columns as arrays, `unnest` turns them into rows. */
async function insertAll(name, rows) {
  const cols = [0, 1, 2, 3, 4].map((c) => rows.map((r) => r[c]));
  await pg.query(
    `INSERT INTO ${name} SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::bigint[])`,
    cols,
  );
}

async function watchOnce(sql) {
  let notify = () => {};
  let first;
  const firstResult = new Promise((r) => (first = r));
  const handle = await pg.live.query(sql, [], (result) => {
    first();
    notify(now(), result);
  });
  await firstResult;
  return { handle, next: () => new Promise((resolve) => (notify = resolve)) };
}

window.bench = {
  async ready() {
    const worker = new Worker(new URL('./pglite-worker.js', import.meta.url), { type: 'module' });
    pg = await PGliteWorker.create(worker, { extensions: { live }, meta: { db: dbName } });
    return true;
  },
  async setup(rows) {
    await pg.exec(`CREATE TABLE IF NOT EXISTS items ${SCHEMA}; DELETE FROM items;`);
    await insertAll('items', rowsFor(rows));
    return true;
  },
  async bulk(rows) {
    const name = `bulk_${table++}`;
    await pg.exec(`CREATE TABLE ${name} ${SCHEMA}`);
    const data = rowsFor(rows);
    const t0 = now();
    await insertAll(name, data);
    const ms = now() - t0;
    await pg.exec(`DROP TABLE ${name}`);
    return [ms];
  },
  async insertOne(count) {
    const samples = [];
    for (let i = 0; i < count; i++) {
      const t0 = now();
      await pg.query('INSERT INTO items VALUES ($1, $2, 0, 0, $3)', [`one-${i}-${Math.random()}`, 'x', Date.now()]);
      samples.push(now() - t0);
    }
    return samples;
  },
  insertDurable(count) {
    // PGlite acknowledges a write once its file system has it.
    return this.insertOne(count);
  },
  settle: () => true,
  async pointRead(count, rows) {
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 7919) % rows).padStart(6, '0');
      const t0 = now();
      const got = await pg.query('SELECT * FROM items WHERE id = $1', [id]);
      samples.push(now() - t0);
      if (got.rows.length !== 1) throw new Error(`point read found ${got.rows.length} rows`);
    }
    return samples;
  },
  async live(sql, count) {
    const { handle, next } = await watchOnce(sql);
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 13) % 50).padStart(6, '0');
      const arrived = next();
      const t0 = now();
      await pg.query('UPDATE items SET n = n + 1, updated_at = $1 WHERE id = $2', [Date.now(), id]);
      samples.push((await arrived) - t0);
    }
    await handle.unsubscribe();
    return samples;
  },
  async watchLimit50() {
    window.cross = await watchOnce('SELECT * FROM items ORDER BY id LIMIT 50');
    return true;
  },
  armCrossTab() {
    window.crossNext = window.cross.next().then((t) => performance.timeOrigin + t);
    return true;
  },
  crossTabArrival: () => window.crossNext,
  async writeFirstRow(i) {
    const t0 = performance.timeOrigin + now();
    await pg.query('UPDATE items SET n = $1 WHERE id = $2', [i, '000000']);
    return t0;
  },
};

if (new URLSearchParams(location.search).get('cold')) {
  window.bench
    .ready()
    .then(() => pg.query('SELECT count(*)::int AS n FROM items'))
    .then((result) => (window.coldOpen = { ms: performance.now(), rows: result.rows[0].n }));
}
