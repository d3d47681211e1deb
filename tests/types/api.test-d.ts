// Type-level tests of the public API: `tsc -p tests/types` must pass, and each
// `@ts-expect-error` line must really be an error (tsc fails if it is not).
import {
  FerryError,
  open,
  type LiveQuery,
  type Mutation,
  type PendingMutation,
  type QueryState,
  type RejectedMutation,
  type RowOf,
  type SqlParam,
  type SyncState,
  type SyncStatus,
  type SyncSubscription,
  type WriteResult,
} from 'ferrydb';
import {
  useMutate,
  usePendingMutations,
  useQuery,
  useRejections,
  useSuspenseQuery,
  useSync,
  useSyncStatus,
} from 'ferrydb/react';
import {
  useMutate as useVueMutate,
  usePendingMutations as useVuePending,
  useQuery as useVueQuery,
  useSync as useVueSync,
  useSyncStatus as useVueSyncStatus,
} from 'ferrydb/vue';

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T>(_: T): void {}
function assertTrue<T extends true>(): T | void {}

interface Todo {
  id: number;
  title: string;
}

const db = open({ name: 'app', user: 'alice', storage: 'auto' });
// @ts-expect-error: unknown storage backend
open({ name: 'app', storage: 'disk' });
// @ts-expect-error: the database name is required
open({ user: 'alice' });

// Writes resolve to a result whose `durable` is a promise.
async function writes(): Promise<void> {
  const result = await db.exec('INSERT INTO todos (title) VALUES (?)', ['milk']);
  expectType<WriteResult>(result);
  expectType<Promise<void>>(result.durable);
  expectType<number>(result.rowsAffected);
  // @ts-expect-error: parameters are SQL values, not objects
  await db.exec('SELECT ?', [{ title: 'milk' }]);
  const params: SqlParam[] = [1, 'x', null, true, 2n, new Uint8Array(1)];
  await db.execMany('INSERT INTO t VALUES (?)', [params]);
}

// Queries and live queries carry the row type the caller names.
async function reads(): Promise<void> {
  const rows = await db.query<Todo>('SELECT id, title FROM todos');
  expectType<Todo[]>(rows);
  const handle = db.watch<Todo>('SELECT id, title FROM todos');
  expectType<LiveQuery<Todo>>(handle);
  const state = handle.getSnapshot();
  // The state is a discriminated union: rows only after narrowing.
  // @ts-expect-error: a pending query has no rows
  state.rows;
  if (state.status === 'ok') expectType<readonly Todo[]>(state.rows);
  if (state.status === 'error') {
    expectType<FerryError>(state.error);
    expectType<readonly Todo[] | undefined>(state.rows);
  }
  const unsubscribe = handle.subscribe(() => {});
  expectType<() => void>(unsubscribe);
}

// Error codes are a closed union: a typo in a comparison does not compile.
function codes(error: FerryError): void {
  if (error.code === 'storage_quota') return;
  // @ts-expect-error: not a ferrydb error code
  if (error.code === 'storage_full') return;
}

// React and Vue hooks return the same typed states.
function hooks(): void {
  const state = useQuery<Todo>('SELECT id, title FROM todos');
  assertTrue<Equals<typeof state, QueryState<Todo>>>();
  const rows = useSuspenseQuery<Todo>('SELECT id, title FROM todos');
  expectType<readonly Todo[]>(rows);
  const vue = useVueQuery<Todo>('SELECT id, title FROM todos', () => [1]);
  expectType<QueryState<Todo>>(vue.value);
  // Every state says whether it is complete; a pending one never is.
  expectType<boolean>(state.complete);
  expectType<boolean>(vue.value.complete);
  if (state.status === 'pending') assertTrue<Equals<typeof state.complete, false>>();
}

// An app definition given as a literal types the mutators.
const app = {
  version: 1,
  tables: [
    {
      name: 'todos',
      columns: [
        { name: 'id', type: 'text' },
        { name: 'done', type: 'boolean' },
      ],
      primaryKey: ['id'],
      access: { read: 'true', write: 'true' },
    },
  ],
  mutators: [
    {
      name: 'addTodo',
      params: [
        { name: 'id', type: 'text' },
        { name: 'done', type: 'boolean' },
        { name: 'meta', type: 'json', nullable: true },
      ],
      sql: 'INSERT INTO todos (id, done) VALUES (:id, :done)',
    },
    { name: 'bump', params: [{ name: 'by', type: 'integer' }], sql: 'UPDATE todos SET done = :by' },
  ],
} as const;

async function mutations(): Promise<void> {
  const synced = open({ name: 'app', app, server: '/sync', auth: async () => 'token' });
  const m = synced.mutate.addTodo({ id: 't1', done: false });
  expectType<Mutation>(m);
  expectType<number>(await m.local);
  expectType<Promise<void>>(m.durable);
  expectType<Promise<void>>(m.server);
  synced.mutate('bump', { by: 2 });
  synced.mutate.addTodo({ id: 't1', done: true, meta: { tags: ['x'] } });
  // @ts-expect-error: `done` is a boolean
  synced.mutate.addTodo({ id: 't1', done: 'no' });
  // @ts-expect-error: `id` is required
  synced.mutate.addTodo({ done: true });
  // @ts-expect-error: no such mutator
  synced.mutate('remove', { id: 't1' });
  // @ts-expect-error: no such mutator
  synced.mutate.remove({ id: 't1' });
  // @ts-expect-error: `by` is an integer
  synced.mutate.bump({ by: '2' });
  // Without a literal app definition, any mutator name is accepted (the
  // shorthand is then an index signature: possibly undefined).
  db.mutate('anything', { x: 1 });
  db.mutate.anything?.({ x: 1 });

  const status: SyncStatus = synced.syncStatus;
  expectType<boolean>(status.connected);
  if (status.error) {
    if (status.error.code === 'auth_required') return;
    // @ts-expect-error: not a sync error code
    if (status.error.code === 'offline') return;
  }
  expectType<boolean>(status.paused);
  expectType<number>(status.pendingMutations);
  // @ts-expect-error: the outbox size is `pendingMutations`
  status.pending;
  if (status.storage) expectType<'indexeddb+opfs' | 'opfs' | 'opfs-sync' | 'indexeddb' | 'memory'>(status.storage.backend);
  if (status.initialSync) {
    expectType<number>(status.initialSync.received);
    expectType<number | null>(status.initialSync.total);
  }
  if (status.error?.code === 'forbidden') await synced.resumeSync();
  expectType<Promise<void>>(synced.pauseSync());
  expectType<Promise<void>>(synced.resumeSync());
  synced.on('updateNeeded', (e) => expectType<number>(e.serverSchemaVersion));
  synced.on('appOutdated', (e) => expectType<number>(e.schemaVersion));
  synced.on('rejected', (e) => expectType<string>(e.rejections[0]!.code));
  // @ts-expect-error: not a sync event
  synced.on('updated', () => {});
  expectType<LiveQuery<PendingMutation>>(synced.pendingMutations());
  expectType<LiveQuery<RejectedMutation>>(synced.rejections());
  try {
    await m.server;
  } catch (e) {
    if (e instanceof FerryError && e.code === 'forbidden') expectType<string | undefined>(e.rejection?.code);
  }
}

function syncHooks(): void {
  const mutate = useMutate<typeof app>();
  mutate.bump({ by: 1 });
  // @ts-expect-error: `by` is an integer
  mutate.bump({ by: 'x' });
  expectType<SyncStatus>(useSyncStatus());
  assertTrue<Equals<ReturnType<typeof usePendingMutations>, QueryState<PendingMutation>>>();
  assertTrue<Equals<ReturnType<typeof useRejections>, QueryState<RejectedMutation>>>();
  expectType<SyncStatus>(useVueSyncStatus().value);
  expectType<QueryState<PendingMutation>>(useVuePending().value);
  useVueMutate<typeof app>().addTodo({ id: 'x', done: false });
}

void mutations;
void syncHooks;
void writes;
void reads;
void codes;
void hooks;

// Queries (protocol v2): names and arguments checked from the app
// definition as mutators' are; rows typed from a table's columns.
const listApp = {
  version: 1,
  tables: [
    {
      name: 'items',
      columns: [
        { name: 'id', type: 'text' },
        { name: 'list_id', type: 'text' },
        { name: 'rank', type: 'integer' },
        { name: 'note', type: 'text', nullable: true },
        { name: 'done', type: 'boolean' },
        { name: 'meta', type: 'json', nullable: true },
        { name: 'blob', type: 'blob' },
      ],
      primaryKey: ['id'],
    },
  ],
  mutators: [],
  queries: [
    {
      name: 'listItems',
      params: [
        { name: 'list_id', type: 'text' },
        { name: 'min_rank', type: 'integer', nullable: true },
      ],
      parts: [{ table: 'items', where: 'list_id = :list_id' }],
    },
    { name: 'everything', params: [], parts: [{ table: 'items', where: 'true' }], syncOnOpen: true },
  ],
} as const;

async function subscriptions(): Promise<void> {
  const lists = open({ name: 'lists', app: listApp, server: '/sync' });
  const held = lists.sync('listItems', { list_id: 'l1' }, { ttl: 60_000 });
  expectType<SyncSubscription>(held);
  expectType<Promise<void>>(held.complete);
  const state: SyncState = held.state;
  if (state.status === 'error') expectType<FerryError>(state.error);
  expectType<number>(state.synced);
  // @ts-expect-error: only an error state has an error
  state.error;
  expectType<() => void>(held.subscribe(() => {}));
  held.unsubscribe();
  lists.sync('listItems', { list_id: 'l1', min_rank: null });
  lists.sync('everything', {});
  // @ts-expect-error: no such query
  lists.sync('listThings', { list_id: 'l1' });
  // @ts-expect-error: `list_id` is required
  lists.sync('listItems', {});
  // @ts-expect-error: `list_id` is text
  lists.sync('listItems', { list_id: 1 });
  // @ts-expect-error: `ttl` is milliseconds
  lists.sync('everything', {}, { ttl: '1m' });
  // An app without queries has none to sync; an untyped one takes any name.
  // @ts-expect-error: the todo app defines no queries
  open({ name: 'app', app }).sync('listItems', { list_id: 'l1' });
  db.sync('anything', { x: 1 });

  type Item = RowOf<typeof listApp, 'items'>;
  assertTrue<
    Equals<
      Item,
      {
        id: string;
        list_id: string;
        rank: number;
        note: string | null;
        done: boolean;
        meta: unknown;
        blob: Uint8Array;
      }
    >
  >();
  const items = await lists.query<Item>('SELECT * FROM items');
  expectType<string | null>(items[0]!.note);
  // @ts-expect-error: no such column
  items[0]!.title;
}

function subscriptionHooks(): void {
  const state = useSync<typeof listApp>('listItems', { list_id: 'l1' }, { ttl: 1_000 });
  assertTrue<Equals<typeof state, SyncState>>();
  // @ts-expect-error: no such query
  useSync<typeof listApp>('nope', {});
  // @ts-expect-error: `list_id` is text
  useSync<typeof listApp>('listItems', { list_id: 2 });
  // @ts-expect-error: the arguments belong to the query named
  useSync<typeof listApp>('everything', { list_id: 'l1' });
  useSync('anything', { x: 1 });
  const vue = useVueSync<typeof listApp>('listItems', () => ({ list_id: 'l1' }));
  expectType<SyncState>(vue.value);
  // @ts-expect-error: `list_id` is text
  useVueSync<typeof listApp>('listItems', { list_id: 2 });
}

void subscriptions;
void subscriptionHooks;
