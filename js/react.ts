/**
 * React bindings: a provider for the database, and hooks over the
 * framework-free client built on `useSyncExternalStore`. Each hook subscribes
 * to its own live query, so a component re-renders only when its rows change.
 */
import { createContext, createElement, useContext, useEffect, useState, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import type { AppDefinition, Mutate, SyncParams } from './app.js';
import {
  Database,
  open,
  PENDING_MUTATIONS_SQL,
  REJECTIONS_SQL,
  type OpenOptions,
  type PendingMutation,
  type RejectedMutation,
} from './index.js';
import type { QueryState, Row } from './live.js';
import type { SqlParam } from './protocol.js';
import { INITIAL_STATUS, type SyncStatus } from './sync.js';
import type { SyncOptions, SyncState, SyncSubscription } from './subscriptions.js';

// Holds any app's database; hooks take the app type as a parameter.
type AnyDatabase = Database<any>;
const FerryContext = createContext<AnyDatabase | null>(null);

export type FerryProviderProps = { children?: ReactNode } & ({ db: AnyDatabase } | { options: OpenOptions });

/**
 * Provides a database to the components below. Pass an open `db`, or `options`
 * to have the provider open one (in the browser only, once, closed on unmount).
 */
export function FerryProvider(props: FerryProviderProps): ReactNode {
  const given = 'db' in props ? props.db : null;
  const options = 'options' in props ? props.options : null;
  const [owned, setOwned] = useState<AnyDatabase | null>(null);
  useEffect(() => {
    if (given || !options) return;
    const db = open(options);
    setOwned(db);
    return () => db.close();
    // The options object identity is not a reason to reopen; the name is.
  }, [given, options?.name]);
  const db = given ?? owned;
  if (!db) return null;
  return createElement(FerryContext.Provider, { value: db }, props.children);
}

/** The database of the nearest `FerryProvider` (name its app type to get typed mutators). */
export function useFerry<A extends AppDefinition = AppDefinition>(): Database<A> {
  const db = useContext(FerryContext);
  if (!db) throw new Error('useFerry: no <FerryProvider> above this component');
  return db as Database<A>;
}

/** `db.mutate` of the provided database: `useMutate<typeof app>().addTodo({...})`. */
export function useMutate<A extends AppDefinition = AppDefinition>(): Mutate<A> {
  return useFerry<A>().mutate;
}

const initialStatus = (): SyncStatus => INITIAL_STATUS;

/** The sync status (`connected`, `uploading`, `pending`, `error`...), re-rendering when it changes. */
export function useSyncStatus(): SyncStatus {
  const db = useFerry();
  return useSyncExternalStore(db.onSyncStatus, () => db.syncStatus, initialStatus);
}

/** The outbox as a live query: mutations not yet settled with the server, oldest first. */
export function usePendingMutations(): QueryState<PendingMutation> {
  return useQuery<PendingMutation>(PENDING_MUTATIONS_SQL);
}

/** The rejection log as a live query, newest first. */
export function useRejections(): QueryState<RejectedMutation> {
  return useQuery<RejectedMutation>(REJECTIONS_SQL);
}

const PENDING: QueryState<never> = { status: 'pending', complete: false };
const serverSnapshot = (): QueryState<never> => PENDING;

/**
 * A live query's state: `pending`, then `ok` with rows, or `error` (keeping the
 * last rows), and `complete` (false while a subscription over a table it reads
 * is still `pending`: see `QueryState`). Unchanged rows keep their identity
 * across updates, so memoised row components skip re-rendering.
 */
export function useQuery<R = Row>(sql: string, params: SqlParam[] = []): QueryState<R> {
  const db = useFerry();
  const handle = db.live<R>(sql, params);
  return useSyncExternalStore(handle.subscribe, handle.getSnapshot, serverSnapshot);
}

/** Like `useQuery`, but suspends until the first result and throws its error. */
export function useSuspenseQuery<R = Row>(sql: string, params: SqlParam[] = []): readonly R[] {
  const db = useFerry();
  const handle = db.live<R>(sql, params);
  const state = useSyncExternalStore(handle.subscribe, handle.getSnapshot, serverSnapshot);
  if (state.status === 'pending') throw handle.ready();
  if (state.status === 'error') throw state.error;
  return state.rows;
}

const SYNC_PENDING: SyncState = { status: 'pending', synced: 0, total: 0 };
const syncPending = (): SyncState => SYNC_PENDING;
const noListener = (): (() => void) => () => {};

/**
 * Syncs query `name` with `args` while the component is mounted (and the
 * subscription's `ttl` after), re-subscribing when the arguments change;
 * returns the subscription's state. Read the rows with `useQuery`. Name the
 * app type to check the query and its arguments: `useSync<typeof app>('todosOf', {...})`.
 */
export function useSync<A extends AppDefinition = AppDefinition>(...params: SyncParams<A, SyncOptions>): SyncState {
  const [name, args, options = {}] = params;
  const db = useFerry();
  const [handle, setHandle] = useState<SyncSubscription | null>(null);
  // Arguments compare by value: a new object with the same contents is the
  // same subscription (the worker compares them canonically too).
  const key = JSON.stringify([name, args, options.ttl]);
  useEffect(() => {
    const held = db.sync(name, args, options);
    setHandle(held);
    return () => held.unsubscribe();
  }, [db, key]);
  return useSyncExternalStore(handle?.subscribe ?? noListener, handle?.getSnapshot ?? syncPending, syncPending);
}
