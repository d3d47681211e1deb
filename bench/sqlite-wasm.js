// The raw-SQLite peers: @sqlite.org/sqlite-wasm with its OPFS SAH pool VFS in
// a dedicated worker (its documented fast configuration), or the worker the
// page names (`window.benchWorker`: wa-sqlite.html's). They have no live
// queries: the worker re-runs the watched query after each write, the
// hand-rolled way.
const worker = new Worker(new URL(window.benchWorker ?? './sqlite-wasm-worker.js', import.meta.url), { type: 'module' });
const now = () => performance.now();
let nextId = 1;
const pending = new Map();
let onRows = null;
worker.onmessage = ({ data }) => {
  if (data.type === 'rows') return onRows?.(now());
  const p = pending.get(data.id);
  pending.delete(data.id);
  if (data.error) p.reject(new Error(data.error));
  else p.resolve(data.result);
};
const call = (op, args = {}) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...args });
  });

window.bench = {
  ready: () => call('open', { name: new URLSearchParams(location.search).get('db') ?? 'main' }),
  setup: (rows) => call('setup', { rows }),
  async bulk(rows) {
    return [await call('bulk', { rows })];
  },
  async insertOne(count) {
    const samples = [];
    for (let i = 0; i < count; i++) {
      const t0 = now();
      await call('exec', { sql: 'INSERT INTO items VALUES (?, ?, 0, 0, ?)', params: [`one-${i}-${Math.random()}`, 'x', Date.now()] });
      samples.push(now() - t0);
    }
    return samples;
  },
  insertDurable(count) {
    // Every commit is already written to OPFS before the worker answers.
    return this.insertOne(count);
  },
  settle: () => true,
  async pointRead(count, rows) {
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 7919) % rows).padStart(6, '0');
      const t0 = now();
      const got = await call('query', { sql: 'SELECT * FROM items WHERE id = ?', params: [id] });
      samples.push(now() - t0);
      if (got.length !== 1) throw new Error(`point read found ${got.length} rows`);
    }
    return samples;
  },
  async live(sql, count) {
    await call('watch', { sql });
    const samples = [];
    for (let i = 0; i < count; i++) {
      const id = String((i * 13) % 50).padStart(6, '0');
      const arrived = new Promise((resolve) => (onRows = resolve));
      const t0 = now();
      await call('exec', { sql: 'UPDATE items SET n = n + 1, updated_at = ? WHERE id = ?', params: [Date.now(), id] });
      samples.push((await arrived) - t0);
    }
    await call('watch', { sql: null });
    return samples;
  },
};

if (new URLSearchParams(location.search).get('cold')) {
  window.bench
    .ready()
    .then(() => call('query', { sql: 'SELECT count(*) AS n FROM items', params: [] }))
    .then((rows) => (window.coldOpen = { ms: performance.now(), rows: rows[0].n }));
}
