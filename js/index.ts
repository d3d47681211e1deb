/**
 * ferrydb's framework-free client. `open()` connects this tab to the one
 * SharedWorker of its database; every call is a message to it. Importing this
 * module starts nothing, so it is safe during server-side rendering.
 *
 * `Database` is a facade over small parts, one job each: the port and its
 * calls (`transport.ts`), the live queries (`live_registry.ts`), storage
 * status and `durable` promises (`durability.ts`), sync status, events and
 * `server` promises (`sync.ts`).
 */
import type { AppDefinition, Mutate, Mutation, QueryArgs, QueryName } from './app.js';
import { FerryError, type ErrorData } from './errors.js';
import { Durability } from './durability.js';
import { LiveQuery, toObjects, type Row } from './live.js';
import { LiveRegistry } from './live_registry.js';
import { SyncState as SyncView, type Rejection, type SyncEvents, type SyncStatus } from './sync.js';
import { SyncHolds, type SyncOptions, type SyncSubscription } from './subscriptions.js';
import { spawnDedicated, spawnWorker } from './spawn.js';
import { closedError, portWhenLoaded, Transport } from './transport.js';
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
  QueryArgs,
  QueryDefinition,
  QueryName,
  RowOf,
} from './app.js';
export { SyncSubscription } from './subscriptions.js';
export type { SyncOptions, SyncState, SyncSubscriptionStatus } from './subscriptions.js';
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
  /**
   * How tabs share the one worker: `auto` runs it as a SharedWorker, or,
   * where there is none, in a dedicated worker of a leader tab that the
   * other tabs reach (`leader-tab`, which tests may force). See `db.topology`.
   */
  topology?: 'auto' | 'leader-tab';
}

export class Database<A extends AppDefinition = AppDefinition> {
  readonly name: string;
  /**
   * Where this database's worker runs: a SharedWorker, or a dedicated worker
   * of the tab elected leader (browsers without SharedWorker).
   */
  readonly topology: 'shared-worker' | 'leader-tab';
  /**
   * Runs a mutator: `db.mutate('addTodo', args)` or `db.mutate.addTodo(args)`.
   * Returns `{ local, durable, server }` at once (see `Mutation`).
   */
  readonly mutate: Mutate<A>;
  /** Resolves once the worker opened the app's replica; rejects with `app_outdated`, `invalid_app`, ... */
  readonly opened: Promise<void>;
  readonly #sync = new SyncView();
  readonly #auth: OpenOptions<A>['auth'];
  readonly #transport: Transport;
  readonly #live: LiveRegistry;
  readonly #holds: SyncHolds;
  readonly #durability = new Durability();
  readonly #releaseTabLock: () => void;

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
    // `spawn.ts` is the one module the build does not minify, and it holds
    // no comment but the one bundlers read: `new SharedWorker(new URL(...))`
    // is written as one expression there so bundlers (Vite, webpack) find and
    // emit the worker. The options carry the database name, which is not
    // static, so Vite is told not to read them (`@vite-ignore`); it then
    // bundles the worker as one classic script, which also runs as a module
    // worker.
    const tab = crypto.randomUUID();
    const shared = typeof SharedWorker == 'function' && options.topology != 'leader-tab';
    this.topology = shared ? 'shared-worker' : 'leader-tab';
    const port = shared
      ? spawnWorker(options.workerUrl, workerOptions).port
      : portWhenLoaded(
          import('./leader.js').then(({ leaderTab }) =>
            leaderTab(
              workerOptions.name!,
              tab,
              () => spawnDedicated(options.workerUrl, workerOptions),
              () => this.#transport.resend(this.#durability.handover()),
            ),
          ),
        );
    this.#transport = new Transport(port, (message) => this.#receive(message), shared ? undefined : `${tab}:`);
    this.#live = new LiveRegistry(this.#transport);
    this.#holds = new SyncHolds(this.#transport);
    // Sent before any request, so the worker knows the app before it serves this tab.
    const app = options.app;
    this.opened = app
      ? this.#transport
          .call(
            {
              type: 'open',
              app: JSON.stringify(app),
              auth: !!options.auth,
              ...(options.server !== undefined && { server: options.server }),
            },
            () => {},
            ['open'],
          )
          .then(
            () => {},
            (error: FerryError) => {
              // A tab whose app the worker refused can do nothing: say so on every call.
              this.#failAll(error);
              throw error;
            },
          )
      : Promise.resolve();
    this.opened.catch(() => {});
    this.#releaseTabLock = holdTabLock(`ferrydb-tab-${tab}`, (lock) => {
      const hello: TabMessage = { type: 'hello', lock };
      this.#transport.stand('hello', hello);
      this.#transport.send(hello);
    });
  }

  #mutate(name: string, args: unknown): Mutation {
    const applied = this.#transport.call({ type: 'mutate', name, args }, (value, seq, write) => ({
      id: (value as ResponseOf['mutate']).mutationId,
      seq,
      write,
    }));
    const local = applied.then((m) => m.id);
    const durable = applied.then((m) =>
      this.#durability.durable(m.seq, m.write, (value) => {
        // Re-applied by a new leader tab (the first was lost): maybe under another id.
        const id = (value as ResponseOf['mutate']).mutationId;
        this.#sync._moved(m.id, id);
        m.id = id;
      }),
    );
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

  /**
   * Syncs the rows of the app's query `name` with `args` into the replica
   * (protocol v2) for as long as the handle is held, and `ttl` ms after
   * (default 5 minutes). Every tab and component asking for the same query
   * and arguments shares one subscription in the worker. The handle's
   * `state` says `pending`/`complete`/`error` and how many rows are synced;
   * `complete` resolves once every row is there. Rows are read with
   * `query`/`watch`/`live` as usual.
   */
  sync<N extends QueryName<A>>(name: N, args: QueryArgs<A, N>, options: SyncOptions = {}): SyncSubscription {
    return this.#holds.hold(name, args, options);
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
      this.#transport.send(token ? { type: 'token', ask, token } : { type: 'token', ask });
    } catch (error) {
      this.#transport.send({ type: 'token', ask, error: `the auth provider failed: ${String(error)}` });
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
    return this.#durability.status;
  }

  /** Calls `listener` whenever the storage status changes; returns the unsubscribe. */
  onStorageChange(listener: (status: StorageStatus) => void): () => void {
    return this.#durability.onChange(listener);
  }

  /**
   * Deletes every stored file of this database and user and starts over empty.
   * Every tab's live queries end with `database_deleted`.
   */
  async deleteDatabase(): Promise<void> {
    await this.#transport.call({ type: 'deleteDatabase' }, () => {});
  }

  /** Runs one statement and resolves to its rows. */
  async query<R = Row>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    const raw: RawRows = await this.#request({ type: 'query', sql, params });
    return toObjects<R>(raw);
  }

  /** A live query: its rows now, and again after every commit that changes them. */
  watch<R = Row>(sql: string, params: SqlParam[] = []): LiveQuery<R> {
    return this.#live.watch<R>(sql, params);
  }

  /**
   * A shared live query: every caller with the same SQL and parameters gets the
   * same handle, which closes itself once it has had no listener for `idleMs`.
   * This is what the React and Vue bindings use, so a component that renders
   * twice (StrictMode) or remounts reuses one query instead of starting another.
   */
  live<R = Row>(sql: string, params: SqlParam[] = [], idleMs = 1000): LiveQuery<R> {
    return this.#live.shared<R>(sql, params, idleMs);
  }

  /** What the worker holds (tabs, live queries, subscriptions): for tests and debugging. */
  stats(): Promise<WorkerStats> {
    return this.#request({ type: 'stats' });
  }

  /** Disconnects this tab; its live queries stop. Other tabs are unaffected. */
  close(): void {
    if (this.#transport.closed) return;
    this.#live.closeAll();
    this.#transport.send({ type: 'bye' });
    this.#transport.close();
    this.#releaseTabLock();
    this.#sync._failAll(new FerryError(closedError()));
    this.#durability.failAll(closedError());
  }

  #request<T extends Request['type']>(request: Extract<Request, { type: T }>): Promise<ResponseOf[T]> {
    return this.#transport.call(request, (value) => value as ResponseOf[T]);
  }

  /** A request that may commit: its result carries the `durable` promise. */
  #write(request: Extract<Request, { type: 'exec' | 'execMany' }>): Promise<WriteResult> {
    return this.#transport.call(request, (value, seq, write) => ({
      ...(value as ExecResult),
      durable: this.#durability.durable(seq, write),
    }));
  }

  /** Every message but replies (the transport settles those). */
  #receive(message: Exclude<WorkerMessage, { type: 'reply' }>): void {
    switch (message.type) {
      case 'storage': {
        const { type: _, ...status } = message;
        this.#durability.changed(status);
        this.#sync._setStorage(status);
        return;
      }
      case 'reset':
        this.#live.reset();
        return;
      case 'live':
        this.#live.apply(message.updates);
        return;
      case 'fatal':
        this.#failAll(message.error);
        return;
      case 'syncStatus':
        this.#sync._setStatus({ ...message.status, storage: this.#durability.status ?? null });
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
      case 'syncState':
        this.#holds.changed(message.hold, message.status);
        return;
      default:
        assertNever(message);
    }
  }

  /** The worker refused this tab for good: every call fails with `error` from now on. */
  #failAll(error: ErrorData): void {
    this.#transport.fail(error);
    this.#sync._failAll(new FerryError(error));
    this.#durability.failAll(error);
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
function holdTabLock(lock: string, onHeld: (lock: string) => void): () => void {
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  void navigator.locks.request(lock, () => {
    onHeld(lock);
    return held;
  });
  return () => release();
}

function assertNever(value: never): never {
  throw new Error(`unexpected message: ${JSON.stringify(value)}`);
}
