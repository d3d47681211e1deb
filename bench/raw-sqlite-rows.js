// What both raw-SQLite peer workers (sqlite-wasm, wa-sqlite) create and insert.
export const SCHEMA = '(id TEXT PRIMARY KEY, title TEXT, done INTEGER, n INTEGER, updated_at INTEGER)';
export const rowsFor = (count) =>
  Array.from({ length: count }, (_, i) => [String(i).padStart(6, '0'), `item ${i}`, 0, i, Date.now()]);
