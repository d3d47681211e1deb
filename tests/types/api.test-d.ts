// Type-level tests of the public API: `tsc -p tests/types` must pass, and each
// `@ts-expect-error` line must really be an error (tsc fails if it is not).
import { FerryError, open, type LiveQuery, type QueryState, type SqlParam, type WriteResult } from 'ferrydb';
import { useQuery, useSuspenseQuery } from 'ferrydb/react';
import { useQuery as useVueQuery } from 'ferrydb/vue';

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
}

void writes;
void reads;
void codes;
void hooks;
