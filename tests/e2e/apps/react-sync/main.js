// A fresh Vite + React app syncing with the reference server through the
// packed ferrydb: the sync hooks (status, outbox, rejections, mutate) render
// what the worker reports.
import { createElement as h, StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { open } from 'ferrydb';
import { FerryProvider, useMutate, usePendingMutations, useQuery, useRejections, useSyncStatus } from 'ferrydb/react';
import app from './app.json';

const user = 'rosalind';
const db = open({ name: 'vite-react-sync', user, app, server: `${location.origin}/sync`, auth: async () => user });
window.ferry = db;
let added = 0;

function Todos() {
  const mutate = useMutate();
  const status = useSyncStatus();
  const pending = usePendingMutations();
  const rejections = useRejections();
  const todos = useQuery('SELECT id FROM todos ORDER BY id');
  const add = (owner) => {
    const id = `t${Date.now()}-${added++}`;
    // The rejection is shown through useRejections; the promise is not needed here.
    mutate.addTodo({ id, listId: 'l1', owner, title: id }).server.catch(() => {});
  };
  const items = (state, render) => (state.status === 'ok' ? state.rows.map(render) : null);
  return h(
    'section',
    null,
    h('button', { id: 'add', onClick: () => add(user) }, 'Add'),
    h('button', { id: 'add-forbidden', onClick: () => add('someone-else') }, 'Add for someone else'),
    h('p', { id: 'connected' }, status.connected ? 'connected' : 'not connected'),
    h('p', { id: 'pending' }, pending.status === 'ok' ? String(pending.rows.length) : '…'),
    h('ul', { id: 'rejections' }, items(rejections, (r) => h('li', { key: r.mutationId }, r.code))),
    h('ul', { id: 'todos' }, items(todos, (t) => h('li', { key: t.id }, t.id))),
  );
}

createRoot(document.getElementById('root')).render(h(StrictMode, null, h(FerryProvider, { db }, h(Todos))));
