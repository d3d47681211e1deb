// ferrydb's side of the benchmark: each function runs one scenario in this tab
// and returns samples in milliseconds, timed with performance.now() in the page.
import { open } from '../ferrydb/dist/index.js';

const query = new URLSearchParams(location.search);
const openedAt = performance.now();
// `ferrydb-leader-tab.html` sets `benchTopology`.
const options = { storage: query.get('storage') ?? 'auto', topology: window.benchTopology };
const db = open({ name: `bench-${query.get('db') ?? 'main'}`, ...options });
window.ferryDb = db;
const now = () => performance.now();
const SCHEMA = '(id TEXT PRIMARY KEY, title TEXT, done INTEGER, n INTEGER, updated_at INTEGER)';
const rowsFor = (count, prefix = '') =>
  Array.from({ length: count }, (_, i) => [`${prefix}${String(i).padStart(6, '0')}`, `item ${i}`, 0, i, Date.now()]);

/** Resolves with the time of the next notification of `q` after a call to `arm`. */
function nextChange(q) {
  return new Promise((resolve) => {
    const stop = q.subscribe(() => {
      const t = now();
      stop();
      resolve(t);
    });
  });
}

let table = 0;

// Mutations go through the bench app definition (`items` synced, `putItem`
// its mutator) in a database of their own, opened without a server: `local`
// and `durable` of `db.mutate.putItem()`, with nothing on the network.
let appDb = null;
async function mutationsDb() {
  if (!appDb) {
    const app = await (await fetch('./app.json')).json();
    appDb = open({ name: `bench-${query.get('db') ?? 'main'}-app`, app, ...options });
    await appDb.opened;
  }
  return appDb;
}
const itemArgs = (id) => ({ id, title: 'x', done: 0, n: 0, updatedAt: Date.now() });

window.bench = {
  ready: () => db.stats().then(() => true),

  async setup(rows) {
    await db.exec(`CREATE TABLE IF NOT EXISTS items ${SCHEMA}`);
    await db.exec('DELETE FROM items');
    await db.execMany('INSERT INTO items VALUES (?, ?, ?, ?, ?)', rowsFor(rows));
    return true;
  },

  async bulk(rows) {
    const name = `bulk_${table++}`;
    await db.exec(`CREATE TABLE ${name} ${SCHEMA}`);
    const data = rowsFor(rows);
    const t0 = now();
    await db.execMany(`INSERT INTO ${name} VALUES (?, ?, ?, ?, ?)`, data);
    const ms = now() - t0;
    await db.exec(`DROP TABLE ${name}`);
    return [ms];
  },

  /** `db.mutate.putItem()` → its `local` promise (applied, visible in every tab). */
  async insertOne(count) {
    const mdb = await mutationsDb();
    const samples = [];
    for (let i = 0; i < count; i++) {
      const t0 = now();
      await mdb.mutate.putItem(itemArgs(`one-${table}-${i}-${Math.random()}`)).local;
      samples.push(now() - t0);
    }
    return samples;
  },

  /** `db.mutate.putItem()` → its `durable` promise (the frame is on disk). */
  async insertDurable(count) {
    const mdb = await mutationsDb();
    const samples = [];
    for (let i = 0; i < count; i++) {
      const t0 = now();
      await mdb.mutate.putItem(itemArgs(`dur-${table}-${i}-${Math.random()}`)).durable;
      samples.push(now() - t0);
    }
    return samples;
  },

  /** Makes sure everything written so far is on disk (before a cold-open test). */
  async settle() {
    const r = await db.exec('CREATE TABLE IF NOT EXISTS settle (x)');
    await r.durable;
    return true;
  },

  /** A replica of about `mb` megabytes: 1 KB rows, loaded 5,000 at a time. */
  async setupLarge(mb) {
    await db.exec('CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, body TEXT)');
    const body = 'x'.repeat(1000);
    const batch = 5000;
    for (let id = 0; id < mb * 1000; id += batch) {
      await db.execMany('INSERT INTO big VALUES (?, ?)', Array.from({ length: batch }, (_, i) => [id + i, body]));
    }
    await (await db.exec('CREATE TABLE IF NOT EXISTS settle (x)')).durable;
    return true;
  },

  async pointRead(count, rows) {
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 7919) % rows).padStart(6, '0');
      const t0 = now();
      const got = await db.query('SELECT * FROM items WHERE id = ?', [id]);
      samples.push(now() - t0);
      if (got.length !== 1) throw new Error(`point read found ${got.length} rows`);
    }
    return samples;
  },

  /** Update one row that the query returns → the query's callback, same tab. */
  async live(sql, count) {
    const q = db.watch(sql);
    await new Promise((resolve) => {
      const stop = q.subscribe(() => (stop(), resolve()));
    });
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 13) % 50).padStart(6, '0');
      const changed = nextChange(q);
      const t0 = now();
      await db.exec('UPDATE items SET n = n + 1, updated_at = ? WHERE id = ?', [Date.now(), id]);
      samples.push((await changed) - t0);
    }
    q.close();
    return samples;
  },

  // Cross-tab: the watcher tab arms, the writer tab writes; both read the same
  // clock (timeOrigin + now), so the difference is the cross-tab latency.
  async watchLimit50() {
    window.crossQuery = db.watch('SELECT * FROM items ORDER BY id LIMIT 50');
    await new Promise((resolve) => {
      const stop = window.crossQuery.subscribe(() => (stop(), resolve()));
    });
    return true;
  },
  armCrossTab() {
    window.crossNext = nextChange(window.crossQuery).then((t) => performance.timeOrigin + t);
    return true;
  },
  crossTabArrival: () => window.crossNext,
  async writeFirstRow(i) {
    const t0 = performance.timeOrigin + now();
    await db.exec('UPDATE items SET n = ? WHERE id = ?', [i, '000000']);
    return t0;
  },
};

// `?cold=1`: time from navigation start to the first query result, the worker
// started fresh (no other tab has this database open).
if (query.get('cold')) {
  const table = query.get('cold') === 'large' ? 'big' : 'items';
  db.query(`SELECT count(*) AS n FROM ${table}`).then(async (rows) => {
    const ms = performance.now();
    const { wasmMemoryBytes } = await db.stats();
    window.coldOpen = { ms, sinceOpen: ms - openedAt, rows: rows[0].n, wasmMemoryBytes };
  });
}
