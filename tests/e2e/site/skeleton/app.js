// The walking skeleton's page (the first demo): one shared list, written and watched through ferrydb.
import { open } from '../ferrydb/dist/index.js';

const db = open({ name: 'demo' });
// Exposed for the end-to-end tests and for poking around in the console.
window.ferry = db;

const list = document.querySelector('#items');
const count = document.querySelector('#count');
const state = document.querySelector('#state');
const errorBox = document.querySelector('#error');

function showError(error) {
  errorBox.hidden = false;
  errorBox.textContent = `${error.code ?? 'error'}: ${error.message}`;
}

// Where the replica lives and whether the last write reached the disk.
const storage = document.querySelector('#storage');
const durable = document.querySelector('#durable');
db.onStorageChange((status) => {
  storage.textContent = status.backend;
  durable.textContent = status.error ? `not saved: ${status.error.code}` : `saved up to #${status.durableSeq}`;
});

await db.exec('CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at INTEGER NOT NULL)');

const items = db.watch('SELECT id, title FROM items ORDER BY id');
items.subscribe(() => {
  const snapshot = items.getSnapshot();
  if (snapshot.status === 'error') return showError(snapshot.error);
  if (snapshot.status !== 'ok') return;
  list.replaceChildren(
    ...snapshot.rows.map((row) => {
      const li = document.createElement('li');
      li.textContent = row.title;
      li.dataset.id = String(row.id);
      return li;
    }),
  );
  count.textContent = String(snapshot.rows.length);
  state.textContent = 'live';
});

document.querySelector('#add').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = document.querySelector('#title');
  const title = input.value.trim();
  if (!title) return;
  input.value = '';
  try {
    await db.exec('INSERT INTO items (title, created_at) VALUES (?, ?)', [title, Date.now()]);
  } catch (error) {
    showError(error);
  }
});
