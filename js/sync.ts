/**
 * A tab's view of sync: the status the worker broadcasts, the app events
 * (`updateNeeded`, `appOutdated`, `schemaReset`, `rejected`, `unauthorized`), and the
 * `server` promises of this tab's mutations, settled when the worker says
 * the server decided. Framework-free: `subscribe`-style listeners only.
 */
import { FerryError, type FerryErrorCode } from './errors.js';
import type { SyncErrorCode } from './generated/wire.js';
import type { StorageStatus } from './protocol.js';

export type { SyncErrorCode } from './generated/wire.js';

export interface SyncStatus {
  /** Online, and the last exchange with the server succeeded. */
  connected: boolean;
  uploading: boolean;
  downloading: boolean;
  /** Mutations in the outbox, not yet settled with the server. */
  pendingMutations: number;
  /** When the replica last caught up with the server (ms since the epoch). */
  lastSyncedAt: number | null;
  error: { code: SyncErrorCode; message: string } | null;
  /** `db.pauseSync()` is in effect (in every tab of this replica), until `resumeSync()`. */
  paused: boolean;
  /**
   * Set while the replica downloads from empty (its first sync, or after a
   * reset); `null` once caught up. `received` counts rows applied so far;
   * `total` is `null` while the server does not say (protocol v1 never does).
   */
  initialSync: { received: number; total: number | null } | null;
  /** Where the replica is stored and what is on disk (as `db.storage`); `null` until the worker says. */
  storage: StorageStatus | null;
}

/** The status as the worker sends it; the tab adds the storage status it already has. */
export type WorkerSyncStatus = Omit<SyncStatus, 'storage'>;

/**
 * One entry of the rejection log: in the `rejected` event with its
 * arguments parsed (`Args = unknown`), and as a row of the `_ferry_rejections`
 * live query with them as JSON text (`RejectedMutation`).
 */
export interface Rejection<Args = unknown> {
  mutationId: number;
  name: string;
  args: Args;
  code: string;
  message: string;
  createdAt: number;
  rejectedAt: number;
}

/** What each `db.on(event, ...)` listener receives. */
export interface SyncEvents {
  /** The server runs a newer schema: reload the app when convenient. Local writes keep working. */
  updateNeeded: { serverSchemaVersion: number };
  /** The server asked for a fresh replica: synced tables were rebuilt, pending mutations kept. */
  schemaReset: { serverSchemaVersion: number };
  /** The server refused these mutations; their effects are gone. */
  rejected: { rejections: Rejection[] };
  /** The server refused the token even after a refresh. */
  unauthorized: Record<string, never>;
  /**
   * A newer build of the app opened this database in another tab and upgraded
   * the replica to its schema (`schemaVersion`): this tab's calls now fail with
   * `app_outdated`. Its earlier writes are kept and sync. Reload.
   */
  appOutdated: { schemaVersion: number };
}

export type SyncEventMessage = { [K in keyof SyncEvents]: { type: K } & SyncEvents[K] }[keyof SyncEvents];

/** The worker's word on one mutation. */
export interface Settled {
  mutationId: number;
  rejection: { code: string; message: string } | null;
}

export const INITIAL_STATUS: SyncStatus = Object.freeze({
  connected: false,
  uploading: false,
  downloading: false,
  pendingMutations: 0,
  lastSyncedAt: null,
  error: null,
  paused: false,
  initialSync: null,
  storage: null,
});

/** Rejection codes that are also `FerryErrorCode`s; others become `rejected`. */
const KNOWN_REJECTIONS: ReadonlySet<string> = new Set(['forbidden', 'mutator_failed', 'bad_arguments', 'unknown_mutator']);

export class SyncState {
  #status: SyncStatus = INITIAL_STATUS;
  readonly #statusListeners = new Set<(status: SyncStatus) => void>();
  readonly #eventListeners = new Map<keyof SyncEvents, Set<(event: never) => void>>();
  /** This tab's mutations waiting for the server, by mutation id. */
  readonly #waiting = new Map<number, { resolve: () => void; reject: (e: FerryError) => void }>();

  get status(): SyncStatus {
    return this.#status;
  }

  /** Stable (an arrow property), so React can pass it to `useSyncExternalStore`. */
  subscribe = (listener: (status: SyncStatus) => void): (() => void) => {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  };

  on<K extends keyof SyncEvents>(type: K, listener: (event: SyncEvents[K]) => void): () => void {
    let set = this.#eventListeners.get(type);
    if (!set) this.#eventListeners.set(type, (set = new Set()));
    const entry = listener as (event: never) => void;
    set.add(entry);
    return () => set.delete(entry);
  }

  /** A promise settled when the server decides on mutation `id`. */
  outcome(id: number): Promise<void> {
    return new Promise((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
  }

  /** A new leader tab applied the mutation again, as `to`: its outcome is that one's. */
  _moved(from: number, to: number): void {
    const waiter = this.#waiting.get(from);
    if (!waiter || from == to) return;
    this.#waiting.delete(from);
    this.#waiting.set(to, waiter);
  }

  _setStatus(status: SyncStatus): void {
    this.#status = status;
    for (const listener of [...this.#statusListeners]) listener(status);
  }

  _setStorage(storage: StorageStatus): void {
    this._setStatus({ ...this.#status, storage });
  }

  _emit(message: SyncEventMessage): void {
    const { type, ...event } = message;
    for (const listener of [...(this.#eventListeners.get(type) ?? [])]) (listener as (e: typeof event) => void)(event);
  }

  _settled(settled: Settled): void {
    const waiter = this.#waiting.get(settled.mutationId);
    if (!waiter) return;
    this.#waiting.delete(settled.mutationId);
    if (!settled.rejection) return waiter.resolve();
    const { code, message } = settled.rejection;
    waiter.reject(
      new FerryError({
        code: (KNOWN_REJECTIONS.has(code) ? code : 'rejected') as FerryErrorCode,
        message: `the server rejected mutation ${settled.mutationId}: ${message}`,
        retryable: false,
        rejection: { mutationId: settled.mutationId, code, message },
      }),
    );
  }

  /** The tab closed: nothing will settle any more. */
  _failAll(error: FerryError): void {
    for (const waiter of this.#waiting.values()) waiter.reject(error);
    this.#waiting.clear();
  }
}
