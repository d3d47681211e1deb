/**
 * Vue bindings: a plugin (or `provideFerry`) for the database, and composables
 * returning shallow refs that follow live queries and are released when their
 * effect scope is disposed.
 */
import { inject, onScopeDispose, provide, shallowRef, toValue, watch } from 'vue';
import type { App, InjectionKey, MaybeRefOrGetter, ShallowRef } from 'vue';
import type { Database } from './index.js';
import type { LiveQuery, QueryState, Row } from './live.js';
import type { SqlParam } from './protocol.js';

const key: InjectionKey<Database> = Symbol('ferrydb');

/** `app.use(createFerry(db))`: provides the database to every component. */
export function createFerry(db: Database): { install(app: App): void } {
  return { install: (app) => void app.provide(key, db) };
}

/** Provides the database to the calling component's descendants. */
export function provideFerry(db: Database): void {
  provide(key, db);
}

export function useFerry(): Database {
  const db = inject(key, null);
  if (!db) throw new Error('useFerry: no database provided (app.use(createFerry(db)) or provideFerry(db))');
  return db;
}

/**
 * A shallow ref holding a live query's state. `sql` and `params` may be refs or
 * getters: when they change, the query is replaced.
 */
export function useQuery<R = Row>(
  sql: MaybeRefOrGetter<string>,
  params: MaybeRefOrGetter<SqlParam[]> = [],
): Readonly<ShallowRef<QueryState<R>>> {
  const db = useFerry();
  const state = shallowRef<QueryState<R>>({ status: 'pending' });
  let stop = () => {};
  watch(
    () => [toValue(sql), toValue(params)] as const,
    ([text, values]) => {
      stop();
      const handle: LiveQuery<R> = db.live<R>(text, [...values]);
      state.value = handle.getSnapshot();
      stop = handle.subscribe(() => (state.value = handle.getSnapshot()));
    },
    { immediate: true, deep: true },
  );
  onScopeDispose(() => stop());
  return state;
}
