/**
 * ferrydb's framework-free client. `open()` connects this tab to the one
 * SharedWorker of its database; every call is a message to it. Importing this
 * module starts nothing, so it is safe during server-side rendering.
 */
import type { AppDefinition, Mutate, Mutation } from './app.js';
import { FerryError, type ErrorData } from './errors.js';
import { LiveQuery, toObjects, type Row } from './live.js';
import { SyncState, type Rejection, type SyncEvents, type SyncStatus } from './sync.js';
import type {
  ExecResult,
  RawRows,
  Request,
  ResponseOf,
  SqlParam,
  StorageStatus,
  TabMessage,
  WorkerMessage,
  WorkerStats,
} from './protocol.js';

export { FerryError } from './errors.js';
export type { ErrorData, FerryErrorCode, ServerRejection } from './errors.js';
export type {
  AppDefinition,
  ArgsOf,
  ColumnType,
  JsonValue,
  Mutate,
  Mutation,
  MutatorArgs,
  MutatorName,
} from './app.js';
export type { Rejection, SyncErrorCode, SyncEvents, SyncStatus } from './sync.js';
export { LiveQuery } from './live.js';
export type { Listener, QueryState, Row } from './live.js';
export type { SqlParam, SqlValue, StorageStatus, WorkerStats } from './protocol.js';

/** A write's outcome. `durable` resolves once the write is on disk (it rejects
 * with `storage_quota` / `storage_unavailable` / `storage_cleared` if storage
 * is failing, or fails first). */
export interface WriteResult extends ExecResult {
  durable: Promise<void>;
}

/** A row of the outbox (`_ferry_outbox`): a mutation not yet settled with the server. */
export interface PendingMutation {
  id: number;
  name: string;
  /** The arguments as JSON text. */
  args: string;
  createdAt: number;
}

/** A row of the rejection log (`_ferry_rejections`): its arguments as JSON text. */
export type RejectedMutation = Rejection<string>;

/** The live query behind `usePendingMutations` and `db.pendingMutations()`. */
export const PENDING_MUTATIONS_SQL =
  'SELECT id, name, args, created_at AS createdAt FROM _ferry_outbox ORDER BY id';
/** The live query behind `useRejections` and `db.rejections()`, newest first. */
export const REJECTIONS_SQL =
  'SELECT mutation_id AS mutationId, name, args, code, message, created_at AS createdAt, rejected_at AS rejectedAt FROM _ferry_rejections ORDER BY mutation_id DESC';

export interface OpenOptions<A extends AppDefinition = AppDefinition> {
  /** The database name: tabs that open the same name share one replica. */
  name: string;
  /**
   * The app definition (tables, mutators, access rules; the server loads the
   * same one). Without it the database is plain SQLite with live queries.
   */
  app?: A;
  /**
   * The sync base URL (`location.origin + '/sync'`): push, pull and the
   * realtime channel live under it. Without it nothing syncs; mutations
   * still apply and queue locally.
   */
  server?: string;
  /**
   * Returns the bearer token for the sync server (called in a tab when the
   * worker needs one; tokens are never stored). Omit it for a server without
   * auth. A provider that throws leaves the status error `auth_required`.
   */
  auth?: () => Promise<string | null | undefined> | string | null | undefined;
  /** Whose replica: each user of a browser gets separate storage and worker. */
  user?: string;
  /** Where to store the replica: `auto` (OPFS, else IndexedDB, else memory). */
  storage?: 'auto' | 'opfs' | 'indexeddb' | 'memory';
  /** Where the worker script is, if a bundler moved it (defaults to the packaged one). */
  workerUrl?: string | URL;
}

interface Pending {
  resolve: (value: unknown, seq?: number) => void;
  reject: (error: FerryError) => void;
}

interface DurableWaiter {
  seq: number;
  resolve: () => void;
  reject: (error: FerryError) => void;
}

export class Database<A extends AppDefinition = AppDefinition> {
  readonly name: string;
  /**
   * Runs a mutator: `db.mutate('addTodo', args)` or `db.mutate.addTodo(args)`.
   * Returns `{ local, durable, server }` at once (see `Mutation`).
   */
  readonly mutate: Mutate<A>;
  /** Resolves once the worker opened the app's replica; rejects with `app_outdated`, `invalid_app`, ... */
  readonly opened: Promise<void>;
  readonly #sync = new SyncState();
  readonly #auth: OpenOptions<A>['auth'];
  readonly #port: MessagePort;
  readonly #pending = new Map<number, Pending>();
  /** Weak, so a handle the app dropped without `close()` can be collected... */
  readonly #live = new Map<number, WeakRef<LiveQuery<unknown>>>();
  /** ...and its worker-side subscription released when it is. */
  readonly #collected = new FinalizationRegistry<number>((subscription) => this.#release(subscription));
  readonly #releaseTabLock: () => void;
  /** Shared handles of `live()`, by SQL and parameters. */
  readonly #shared = new Map<string, LiveQuery<unknown>>();
  #nextId = 1;
  #closed = false;
  #fatal: FerryError | undefined;
  #storage: StorageStatus | undefined;
  readonly #storageListeners = new Set<(status: StorageStatus) => void>();
  /** Writes waiting to be on disk, oldest first. */
  #durableWaiters: DurableWaiter[] = [];

  /** @internal Use `open()`. */
  constructor(options: OpenOptions<A>) {
    this.name = options.name;
    this.#auth = options.auth;
    const mutate = (name: string, args: unknown): Mutation => this.#mutate(name, args);
    // `db.mutate.addTodo(args)`: every string property is a mutator ('then'
    // excepted, so the function is never mistaken for a promise).
    this.mutate = new Proxy(mutate, {
      get: (target, prop) =>
        typeof prop === 'string' && prop !== 'then'
          ? (args: unknown) => this.#mutate(prop, args)
          : Reflect.get(target, prop),
    }) as unknown as Mutate<A>;
    const key = [options.name, options.user ?? 'anonymous', options.storage ?? 'auto'];
    const workerOptions: WorkerOptions = { type: 'module', name: `ferrydb:${JSON.stringify(key)}` };
    // Written as one expression so bundlers (Vite, webpack) find and emit the
    // worker. The options carry the database name, which is not static, so Vite
    // is told not to read them; it then bundles the worker as one classic
    // script, which also runs as a module worker.
    const worker = options.workerUrl
      ? new SharedWorker(options.workerUrl, workerOptions)
      : new SharedWorker(new URL('./worker.js', import.meta.url), /* @vite-ignore */ workerOptions);
    this.#port = worker.port;
    this.#port.onmessage = (event: MessageEvent<WorkerMessage>) => this.#receive(event.data);
    // Sent before any request, so the worker knows the app before it serves this tab.
    this.opened = options.app
      ? new Promise<void>((resolve, reject) => {
          const id = this.#nextId++;
          this.#pending.set(id, {
            resolve: () => resolve(),
            reject: (error) => {
              // A tab whose app the worker refused can do nothing: say so on every call.
              this.#fatal = error;
              this.#failPending(error);
              reject(error);
            },
          });
          const open: TabMessage = { type: 'open', id, app: JSON.stringify(options.app), auth: !!options.auth };
          if (options.server !== undefined) open.server = options.server;
          this.#send(open);
        })
      : Promise.resolve();
    this.opened.catch(() => {});
    this.#releaseTabLock = holdTabLock((lock) => this.#send({ type: 'hello', lock }));
  }

  #mutate(name: string, args: unknown): Mutation {
    const applied = this.#call({ type: 'mutate', name, args }, (value, seq) => ({
      id: (value as ResponseOf['mutate']).mutationId,
      seq,
    }));
    const local = applied.then((m) => m.id);
    const durable = applied.then((m) => this.#durable(m.seq));
    const server = applied.then((m) => this.#sync.outcome(m.id));
    // An app that awaits only some of them must not see unhandled rejections.
    for (const promise of [local, durable, server]) promise.catch(() => {});
    return { local, durable, server };
  }

  /** The sync status, as the worker last reported it. */
  get syncStatus(): SyncStatus {
    return this.#sync.status;
  }

  /** Calls `listener` with every new sync status; returns the unsubscribe. Stable for `useSyncExternalStore`. */
  onSyncStatus = (listener: (status: SyncStatus) => void): (() => void) => this.#sync.subscribe(listener);

  /** Listens for `updateNeeded`, `appOutdated`, `schemaReset`, `rejected` or `unauthorized`; returns the unsubscribe. */
  on<K extends keyof SyncEvents>(event: K, listener: (event: SyncEvents[K]) => void): () => void {
    return this.#sync.on(event, listener);
  }

  /** The outbox as a shared live query, oldest first. */
  pendingMutations(): LiveQuery<PendingMutation> {
    return this.live<PendingMutation>(PENDING_MUTATIONS_SQL);
  }

  /** The rejection log as a shared live query, newest first. */
  rejections(): LiveQuery<RejectedMutation> {
    return this.live<RejectedMutation>(REJECTIONS_SQL);
  }

  /**
   * Stops syncing this replica: no push, no pull, the realtime channel
   * closed. Every tab of this database and user sees `syncStatus.paused`.
   * Mutations keep applying and queue in the outbox. Not persisted: when the
   * worker starts again (every tab closed, browser restarted) it syncs.
   */
  async pauseSync(): Promise<void> {
    await this.#request({ type: 'pauseSync' });
  }

  /** Syncs again: reconnects and drains the outbox at once. Also ends a `forbidden` stop. */
  async resumeSync(): Promise<void> {
    await this.#request({ type: 'resumeSync' });
  }

  /** Empties the rejection log (after showing the rejections to the user); plain SQL may not. */
  async clearRejections(): Promise<void> {
    await this.#request({ type: 'clearRejections' });
  }

  /** Calls the app's token provider for the worker. */
  async #answerToken(ask: number): Promise<void> {
    try {
      const token = this.#auth ? await this.#auth() : null;
      // No token (no provider, or it gave none): the worker sends no header.
      this.#send(token ? { type: 'token', ask, token } : { type: 'token', ask });
    } catch (error) {
      this.#send({ type: 'token', ask, error: `the auth provider failed: ${String(error)}` });
    }
  }

  /**
   * Runs one statement; resolves when it has been applied in the worker and is
   * visible to every tab. Await `durable` on the result to know it is on disk.
   */
  exec(sql: string, params: SqlParam[] = []): Promise<WriteResult> {
    return this.#write({ type: 'exec', sql, params });
  }

  /**
   * Runs one statement once per parameter set, all in one transaction: the way
   * to load many rows. Nothing is applied if any run fails.
   */
  execMany(sql: string, rows: SqlParam[][]): Promise<WriteResult> {
    return this.#write({ type: 'execMany', sql, rows });
  }

  /** Where the replica is stored and how much is on disk (undefined until the worker says). */
  get storage(): StorageStatus | undefined {
    return this.#storage;
  }

  /** Calls `listener` whenever the storage status changes; returns the unsubscribe. */
  onStorageChange(listener: (status: StorageStatus) => void): () => void {
    this.#storageListeners.add(listener);
    return () => this.#storageListeners.delete(listener);
  }

  /**
   * Deletes every stored file of this database and user and starts over empty.
   * Every tab's live queries end with `database_deleted`.
   */
  deleteDatabase(): Promise<void> {
    if (this.#closed) return Promise.reject(new FerryError(closedError()));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: () => resolve(), reject });
      this.#send({ type: 'deleteDatabase', id });
    });
  }

  /** Runs one statement and resolves to its rows. */
  async query<R = Row>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    const raw: RawRows = await this.#request({ type: 'query', sql, params });
    return toObjects<R>(raw);
  }

  /** A live query: its rows now, and again after every commit that changes them. */
  watch<R = Row>(sql: string, params: SqlParam[] = []): LiveQuery<R> {
    return this.#watch<R>(sql, params, () => {});
  }

  #watch<R>(sql: string, params: SqlParam[], onClose: () => void): LiveQuery<R> {
    const subscription = this.#nextId++;
    const handle = new LiveQuery<R>(() => {
      onClose();
      this.#release(subscription);
    });
    this.#live.set(subscription, new WeakRef(handle as LiveQuery<unknown>));
    this.#collected.register(handle, subscription, handle);
    this.#request({ type: 'subscribe', subscription, sql, params }).then(
      (raw) => this.#live.has(subscription) && handle._setRows(raw),
      (error: FerryError) => {
        // A query that failed to start holds nothing in the worker.
        this.#live.delete(subscription);
        this.#collected.unregister(handle);
        handle._setError(error);
      },
    );
    return handle;
  }

  /**
   * A shared live query: every caller with the same SQL and parameters gets the
   * same handle, which closes itself once it has had no listener for `idleMs`.
   * This is what the React and Vue bindings use, so a component that renders
   * twice (StrictMode) or remounts reuses one query instead of starting another.
   */
  live<R = Row>(sql: string, params: SqlParam[] = [], idleMs = 1000): LiveQuery<R> {
    const key = `${sql}\u0000${JSON.stringify(params, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`;
    const existing = this.#shared.get(key);
    if (existing && !existing.closed) return existing as LiveQuery<R>;
    const handle = this.#watch<R>(sql, params, () => this.#shared.delete(key));
    handle._closeWhenIdle(idleMs);
    this.#shared.set(key, handle as LiveQuery<unknown>);
    return handle;
  }

  #release(subscription: number): void {
    if (this.#live.delete(subscription) && !this.#closed) {
      this.#request({ type: 'unsubscribe', subscription }).catch(() => {});
    }
  }

  /** What the worker holds (tabs, live queries, subscriptions): for tests and debugging. */
  stats(): Promise<WorkerStats> {
    return this.#request({ type: 'stats' });
  }

  /** Disconnects this tab; its live queries stop. Other tabs are unaffected. */
  close(): void {
    if (this.#closed) return;
    for (const ref of [...this.#live.values()]) ref.deref()?.close();
    this.#send({ type: 'bye' });
    this.#closed = true;
    this.#releaseTabLock();
    this.#failPending(closedError());
    this.#port.close();
  }

  #request<T extends Request['type']>(request: Extract<Request, { type: T }>): Promise<ResponseOf[T]> {
    return this.#call(request, (value) => value as ResponseOf[T]);
  }

  /** A request that may commit: its result carries the `durable` promise. */
  #write(request: Extract<Request, { type: 'exec' | 'execMany' }>): Promise<WriteResult> {
    return this.#call(request, (value, seq) => ({ ...(value as ExecResult), durable: this.#durable(seq) }));
  }

  #call<R>(request: Request, wrap: (value: unknown, seq?: number) => R): Promise<R> {
    if (this.#closed) return Promise.reject(new FerryError(closedError()));
    if (this.#fatal) return Promise.reject(this.#fatal);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: (value, seq) => resolve(wrap(value, seq)), reject });
      this.#send({ ...request, id } as TabMessage);
    });
  }

  /**
   * Resolves once the commit `seq` is on disk; at once if nothing was
   * committed. Rejects with the storage error if storage is failing now or
   * fails first (the write stays in memory, and reaches the disk if storage
   * recovers: `storage.durableSeq` tells).
   */
  #durable(seq: number | undefined): Promise<void> {
    if (seq === undefined || (this.#storage && this.#storage.durableSeq >= seq)) return Promise.resolve();
    const failing = this.#storage?.error;
    const promise = failing
      ? Promise.reject(new FerryError(failing))
      : new Promise<void>((resolve, reject) => this.#durableWaiters.push({ seq, resolve, reject }));
    // Apps that never await `durable` must not see unhandled rejections.
    promise.catch(() => {});
    return promise;
  }

  #storageChanged(status: StorageStatus): void {
    this.#storage = status;
    const waiting = this.#durableWaiters;
    this.#durableWaiters = [];
    for (const waiter of waiting) {
      if (waiter.seq <= status.durableSeq) waiter.resolve();
      else if (status.error) waiter.reject(new FerryError(status.error));
      else this.#durableWaiters.push(waiter);
    }
    for (const listener of [...this.#storageListeners]) listener(status);
    this.#sync._setStorage(status);
  }

  #send(message: TabMessage): void {
    if (!this.#closed) this.#port.postMessage(message);
  }

  #receive(message: WorkerMessage): void {
    switch (message.type) {
      case 'reply': {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        if (message.error) pending.reject(new FerryError(message.error));
        else pending.resolve(message.ok, message.seq);
        return;
      }
      case 'storage': {
        const { type: _, ...status } = message;
        this.#storageChanged(status);
        return;
      }
      case 'reset': {
        const ended = new FerryError({ code: 'database_deleted', message: 'the database was deleted', retryable: false });
        for (const ref of [...this.#live.values()]) ref.deref()?._setError(ended);
        this.#live.clear();
        this.#shared.clear();
        return;
      }
      case 'live':
        for (const update of message.updates) {
          const handle = this.#live.get(update.subscription)?.deref();
          if (!handle) continue;
          if ('error' in update) handle._setError(new FerryError(update.error));
          else handle._applyPatch(update.patch);
        }
        return;
      case 'fatal':
        this.#fatal = new FerryError(message.error);
        this.#failPending(message.error);
        return;
      case 'syncStatus':
        this.#sync._setStatus({ ...message.status, storage: this.#storage ?? null });
        return;
      case 'syncEvent':
        this.#sync._emit(message.event);
        return;
      case 'settled':
        this.#sync._settled(message.settled);
        return;
      case 'needToken':
        void this.#answerToken(message.ask);
        return;
      default:
        assertNever(message);
    }
  }

  #failPending(error: ErrorData): void {
    this.#sync._failAll(new FerryError(error));
    for (const pending of this.#pending.values()) pending.reject(new FerryError(error));
    this.#pending.clear();
    for (const waiter of this.#durableWaiters) waiter.reject(new FerryError(error));
    this.#durableWaiters = [];
  }
}

/** Connects this tab to the database `name`, starting its worker if no tab has. */
export function open<const A extends AppDefinition = AppDefinition>(options: OpenOptions<A>): Database<A> {
  return new Database<A>(options);
}

/**
 * Holds a Web Lock for as long as this tab lives. The worker asks for the same
 * lock and is granted it only when the tab is gone, even if it crashed: a
 * MessagePort gives no such signal. `onHeld` runs once the lock is ours.
 */
function holdTabLock(onHeld: (lock: string) => void): () => void {
  const lock = `ferrydb-tab-${crypto.randomUUID()}`;
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  void navigator.locks.request(lock, () => {
    onHeld(lock);
    return held;
  });
  return () => release();
}

function closedError(): ErrorData {
  return { code: 'closed', message: 'the database was closed', retryable: false };
}

function assertNever(value: never): never {
  throw new Error(`unexpected message: ${JSON.stringify(value)}`);
}
