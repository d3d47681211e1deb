// Dedicated worker for the wa-sqlite peer (see sqlite-wasm.js, which drives
// it as it drives sqlite-wasm's): @journeyapps/wa-sqlite's synchronous build
// with OPFSCoopSyncVFS, the configuration PowerSync's web SDK uses for OPFS
// and the fastest durable peer measured. Same schema and pragmas as the
// sqlite-wasm peer, so the two raw SQLite peers differ only in build and VFS.
import SQLiteESMFactory from '../peers/wa-sqlite/dist/wa-sqlite.mjs';
import * as SQLite from '../peers/wa-sqlite/src/sqlite-api.js';
import { OPFSCoopSyncVFS } from '../peers/wa-sqlite/src/examples/OPFSCoopSyncVFS.js';
import { SCHEMA, rowsFor } from './raw-sqlite-rows.js';

let sqlite3;
let db;
let watched = null;
let table = 0;

/** Runs `sql` (one statement) with `params`: its rows as objects. */
async function run(sql, params = []) {
  const rows = [];
  for await (const stmt of sqlite3.statements(db, sql)) {
    if (params.length) sqlite3.bind_collection(stmt, params);
    let columns;
    while ((await sqlite3.step(stmt)) === SQLite.SQLITE_ROW) {
      columns ??= sqlite3.column_names(stmt);
      const row = sqlite3.row(stmt);
      rows.push(Object.fromEntries(columns.map((c, i) => [c, row[i]])));
    }
  }
  return rows;
}

/** One transaction, one prepared statement reused for every row. */
async function insertAll(name, rows) {
  await sqlite3.exec(db, 'BEGIN');
  try {
    for await (const stmt of sqlite3.statements(db, `INSERT INTO ${name} VALUES (?, ?, ?, ?, ?)`)) {
      for (const row of rows) {
        sqlite3.bind_collection(stmt, row);
        await sqlite3.step(stmt);
        await sqlite3.reset(stmt);
      }
    }
    await sqlite3.exec(db, 'COMMIT');
  } catch (e) {
    await sqlite3.exec(db, 'ROLLBACK');
    throw e;
  }
}

const ops = {
  async open({ name }) {
    const module = await SQLiteESMFactory();
    sqlite3 = SQLite.Factory(module);
    const vfs = await OPFSCoopSyncVFS.create(`bench-${name}`, module);
    sqlite3.vfs_register(vfs, true);
    db = await sqlite3.open_v2(`bench-${name}.db`);
    await sqlite3.exec(db, 'PRAGMA journal_mode=DELETE; PRAGMA synchronous=NORMAL');
    return true;
  },
  async setup({ rows }) {
    await sqlite3.exec(db, `CREATE TABLE IF NOT EXISTS items ${SCHEMA}; DELETE FROM items;`);
    await insertAll('items', rowsFor(rows));
    return true;
  },
  async bulk({ rows }) {
    const name = `bulk_${table++}`;
    await sqlite3.exec(db, `CREATE TABLE ${name} ${SCHEMA}`);
    const data = rowsFor(rows);
    const t0 = performance.now();
    await insertAll(name, data);
    const ms = performance.now() - t0;
    await sqlite3.exec(db, `DROP TABLE ${name}`);
    return ms;
  },
  async exec({ sql, params }) {
    await run(sql, params);
    if (watched) postMessage({ type: 'rows', rows: await run(watched) });
    return true;
  },
  query: ({ sql, params }) => run(sql, params),
  async watch({ sql }) {
    watched = sql;
    return sql ? run(sql) : null;
  },
};

// One request at a time, in order: wa-sqlite's calls are async, and two
// interleaved on one connection would share its statements.
let queue = Promise.resolve();
onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      postMessage({ id: data.id, result: await ops[data.op](data) });
    } catch (e) {
      postMessage({ id: data.id, error: String(e?.message ?? e) });
    }
  });
};
