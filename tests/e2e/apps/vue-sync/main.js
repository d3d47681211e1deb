// A fresh Vite + Vue app syncing with the reference server through the
// packed ferrydb: the sync composables render what the worker reports.
import { createApp, defineComponent, h } from 'vue';
import { open } from 'ferrydb';
import { createFerry, useMutate, usePendingMutations, useQuery, useRejections, useSyncStatus } from 'ferrydb/vue';
import app from './app.json';

const user = 'dorothy';
const db = open({ name: 'vite-vue-sync', user, app, server: `${location.origin}/sync`, auth: async () => user });
window.ferry = db;
let added = 0;

const Todos = defineComponent({
  setup() {
    const mutate = useMutate();
    const status = useSyncStatus();
    const pending = usePendingMutations();
    const rejections = useRejections();
    const todos = useQuery('SELECT id FROM todos ORDER BY id');
    const add = (owner) => {
      const id = `t${Date.now()}-${added++}`;
      mutate.addTodo({ id, listId: 'l1', owner, title: id }).server.catch(() => {});
    };
    const items = (state, render) => (state.status === 'ok' ? state.rows.map(render) : []);
    return () =>
      h('section', [
        h('button', { id: 'add', onClick: () => add(user) }, 'Add'),
        h('button', { id: 'add-forbidden', onClick: () => add('someone-else') }, 'Add for someone else'),
        h('p', { id: 'connected' }, status.value.connected ? 'connected' : 'not connected'),
        h('p', { id: 'pending' }, pending.value.status === 'ok' ? String(pending.value.rows.length) : '…'),
        h('ul', { id: 'rejections' }, items(rejections.value, (r) => h('li', { key: r.mutationId }, r.code))),
        h('ul', { id: 'todos' }, items(todos.value, (t) => h('li', { key: t.id }, t.id))),
      ]);
  },
});

createApp(Todos).use(createFerry(db)).mount('#root');
