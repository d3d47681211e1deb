// A fresh Vite + Vue app using the packed ferrydb. A toggle unmounts the list,
// so the test can check that the composable releases its live query.
import { createApp, defineComponent, h, ref } from 'vue';
import { open } from 'ferrydb';
import { createFerry, useFerry, useQuery } from 'ferrydb/vue';

const db = open({ name: 'vite-vue' });
window.ferry = db;

const Todos = defineComponent({
  setup() {
    const ferry = useFerry();
    const todos = useQuery('SELECT id, title FROM todos ORDER BY id');
    const add = () => ferry.exec('INSERT INTO todos (title) VALUES (?)', [`todo ${Date.now()}`]);
    return () =>
      h('section', [
        h('button', { id: 'add', onClick: add }, 'Add'),
        h('p', { id: 'status' }, todos.value.status),
        h('ul', { id: 'todos' }, todos.value.status === 'ok' ? todos.value.rows.map((t) => h('li', { key: t.id }, t.title)) : []),
      ]);
  },
});

const App = defineComponent({
  setup() {
    const shown = ref(true);
    return () =>
      h('main', [
        h('button', { id: 'toggle', onClick: () => (shown.value = !shown.value) }, 'Toggle'),
        shown.value ? h(Todos) : null,
      ]);
  },
});

db.exec('CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY, title TEXT)').then(() => {
  createApp(App).use(createFerry(db)).mount('#root');
});
