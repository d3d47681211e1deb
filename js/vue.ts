/**
 * Vue bindings: a plugin (or `provideFerry`) for the database, and composables
 * returning shallow refs that follow live queries and are released when their
 * effect scope is disposed.
 */
import { inject, onScopeDispose, provide, shallowRef, toValue, watch } from 'vue';
import type { App, InjectionKey, MaybeRefOrGetter, ShallowRef } from 'vue';
import type { AppDefinition, Mutate, QueryArgs, QueryName } from './app.js';
import {
  PENDING_MUTATIONS_SQL,
  REJECTIONS_SQL,
  type Database,
  type PendingMutation,
  type RejectedMutation,
} from './index.js';
import type { LiveQuery, QueryState, Row } from './live.js';
import type { SqlParam } from './protocol.js';
import type { SyncStatus } from './sync.js';
import type { SyncOptions, SyncState, SyncSubscription } from './subscriptions.js';

// Holds any app's database; composables take the app type as a parameter.
type AnyDatabase = Database<any>;
const key: InjectionKey<AnyDatabase> = Symbol('ferrydb');

/** `app.use(createFerry(db))`: provides the database to every component. */
export function createFerry(db: AnyDatabase): { install(app: App): void } {
  return { install: (app) => void app.provide(key, db) };
}

/** Provides the database to the calling component's descendants. */
export function provideFerry(db: AnyDatabase): void {
  provide(key, db);
}

export function useFerry<A extends AppDefinition = AppDefinition>(): Database<A> {
  const db = inject(key, null);
  if (!db) throw new Error('useFerry: no database provided (app.use(createFerry(db)) or provideFerry(db))');
  return db as Database<A>;
}

/** `db.mutate` of the provided database: `useMutate<typeof app>().addTodo({...})`. */
export function useMutate<A extends AppDefinition = AppDefinition>(): Mutate<A> {
  return useFerry<A>().mutate;
}

/** A shallow ref following the sync status; released with the calling scope. */
export function useSyncStatus(): Readonly<ShallowRef<SyncStatus>> {
  const db = useFerry();
  const status = shallowRef<SyncStatus>(db.syncStatus);
  onScopeDispose(db.onSyncStatus((next) => (status.value = next)));
  return status;
}

/** The outbox as a live query: mutations not yet settled with the server, oldest first. */
export function usePendingMutations(): Readonly<ShallowRef<QueryState<PendingMutation>>> {
  return useQuery<PendingMutation>(PENDING_MUTATIONS_SQL);
}

/** The rejection log as a live query, newest first. */
export function useRejections(): Readonly<ShallowRef<QueryState<RejectedMutation>>> {
  return useQuery<RejectedMutation>(REJECTIONS_SQL);
}

/**
 * A shallow ref holding a live query's state (with `complete`: see
 * `QueryState`). `sql` and `params` may be refs or getters: when they change,
 * the query is replaced.
 */
export function useQuery<R = Row>(
  sql: MaybeRefOrGetter<string>,
  params: MaybeRefOrGetter<SqlParam[]> = [],
): Readonly<ShallowRef<QueryState<R>>> {
  const db = useFerry();
  const state = shallowRef<QueryState<R>>({ status: 'pending', complete: false });
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

/** `[name, args, options?]` of `useSync`: `args` may be a ref or a getter. */
type VueSyncParams<A extends AppDefinition> = {
  [N in QueryName<A>]: [name: N, args: MaybeRefOrGetter<QueryArgs<A, N>>, options?: SyncOptions];
}[QueryName<A>];

/**
 * Syncs query `name` with `args` while the calling scope lives (and the
 * subscription's `ttl` after); `args` may be a ref or getter: when it
 * changes, the old subscription is released and the new one held. A shallow
 * ref of the subscription's state. Read the rows with `useQuery`.
 */
export function useSync<A extends AppDefinition = AppDefinition>(
  ...params: VueSyncParams<A>
): Readonly<ShallowRef<SyncState>> {
  const [name, args, options = {}] = params;
  const db = useFerry();
  const state = shallowRef<SyncState>({ status: 'pending', synced: 0, total: 0 });
  let held: SyncSubscription | undefined;
  let stop = () => {};
  watch(
    () => JSON.stringify(toValue(args)),
    () => {
      stop();
      held?.unsubscribe();
      const handle = db.sync(name, toValue(args), options);
      held = handle;
      state.value = handle.state;
      stop = handle.subscribe(() => (state.value = handle.state));
    },
    { immediate: true },
  );
  onScopeDispose(() => {
    stop();
    held?.unsubscribe();
  });
  return state;
}
