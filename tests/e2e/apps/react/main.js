// A fresh Vite + React app using the packed ferrydb: two components with
// unrelated live queries, under StrictMode. Render counts are exposed so the
// test can check that a write re-renders only the component whose rows changed.
import { createElement as h, StrictMode, memo } from 'react';
import { createRoot } from 'react-dom/client';
import { open } from 'ferrydb';
import { FerryProvider, useFerry, useQuery } from 'ferrydb/react';

const db = open({ name: 'vite-react' });
window.ferry = db;
window.renders = { todos: 0, notes: 0, rows: 0 };

const TodoRow = memo(function TodoRow({ todo }) {
  window.renders.rows++;
  return h('li', null, todo.title);
});

function Todos() {
  window.renders.todos++;
  const ferry = useFerry();
  const todos = useQuery('SELECT id, title FROM todos ORDER BY id');
  const add = () => ferry.exec('INSERT INTO todos (title) VALUES (?)', [`todo ${Date.now()}`]);
  return h(
    'section',
    null,
    h('button', { id: 'add', onClick: add }, 'Add'),
    h('p', { id: 'status' }, todos.status),
    h('ul', { id: 'todos' }, todos.status === 'ok' ? todos.rows.map((t) => h(TodoRow, { key: t.id, todo: t })) : null),
  );
}

function Notes() {
  window.renders.notes++;
  const notes = useQuery('SELECT count(*) AS n FROM notes');
  return h('p', { id: 'notes' }, notes.status === 'ok' ? String(notes.rows[0].n) : '…');
}

db.exec('CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY, title TEXT)')
  .then(() => db.exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)'))
  .then(() => {
    createRoot(document.getElementById('root')).render(
      h(StrictMode, null, h(FerryProvider, { db }, h(Todos), h(Notes))),
    );
  });
