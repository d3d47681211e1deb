// Dedicated worker for the raw-SQLite peer (see sqlite-wasm.js).
import sqlite3InitModule from '../peers/sqlite-wasm/index.mjs';
import { SCHEMA, rowsFor } from './raw-sqlite-rows.js';

let db;
let watched = null;
let table = 0;

function insertAll(name, rows) {
  db.transaction(() => {
    const stmt = db.prepare(`INSERT INTO ${name} VALUES (?, ?, ?, ?, ?)`);
    try {
      for (const row of rows) stmt.bind(row).stepReset();
    } finally {
      stmt.finalize();
    }
  });
}

const ops = {
  async open({ name }) {
    const sqlite3 = await sqlite3InitModule();
    const pool = await sqlite3.installOpfsSAHPoolVfs({ name: `bench-${name}` });
    db = new pool.OpfsSAHPoolDb(`/bench-${name}.db`);
    db.exec('PRAGMA journal_mode=DELETE; PRAGMA synchronous=NORMAL');
    return true;
  },
  setup({ rows }) {
    db.exec(`CREATE TABLE IF NOT EXISTS items ${SCHEMA}; DELETE FROM items;`);
    insertAll('items', rowsFor(rows));
    return true;
  },
  bulk({ rows }) {
    const name = `bulk_${table++}`;
    db.exec(`CREATE TABLE ${name} ${SCHEMA}`);
    const data = rowsFor(rows);
    const t0 = performance.now();
    insertAll(name, data);
    const ms = performance.now() - t0;
    db.exec(`DROP TABLE ${name}`);
    return ms;
  },
  exec({ sql, params }) {
    db.exec({ sql, bind: params });
    if (watched) postMessage({ type: 'rows', rows: db.selectObjects(watched) });
    return true;
  },
  query: ({ sql, params }) => db.selectObjects(sql, params),
  watch({ sql }) {
    watched = sql;
    return sql ? db.selectObjects(sql) : null;
  },
};

onmessage = async ({ data }) => {
  try {
    postMessage({ id: data.id, result: await ops[data.op](data) });
  } catch (e) {
    postMessage({ id: data.id, error: String(e?.message ?? e) });
  }
};
