/**
 * Sync subscriptions (`db.sync(query, args, { ttl })`, protocol v2): this
 * tab's holds on the worker's subscriptions. Every decision (one
 * subscription per query and arguments, reference counts across tabs, the
 * TTL, validation) is the worker's; a handle only holds, shows the state the
 * worker reports, and lets go.
 */
import { FerryError, type FerryErrorCode } from './errors.js';
import type { Transport } from './transport.js';

/** What the worker reports of a subscription (`syncState`). */
export interface SyncSubscriptionStatus {
  state: 'pending' | 'complete' | 'error';
  /** Rows of it the replica has (initial-sync progress). */
  synced: number;
  /** Rows it selects, as the server last said (0 until it spoke). */
  total: number;
  /** Why it cannot sync (`unknown_query`, `bad_arguments`). */
  error?: { code: string; message: string };
}

/**
 * A subscription's state: `pending` until the server sent all its rows,
 * `complete` once the replica holds every row it selects, `error` when it
 * can never sync (`error.code`: `unknown_query`, `bad_arguments`).
 */
export type SyncState =
  | { status: 'pending'; synced: number; total: number }
  | { status: 'complete'; synced: number; total: number }
  | { status: 'error'; error: FerryError; synced: number; total: number };

export interface SyncOptions {
  /**
   * How long (ms) the subscription stays once nothing holds it, so that a
   * view opened again soon finds its rows current (default 5 minutes).
   */
  ttl?: number;
}

const PENDING: SyncState = { status: 'pending', synced: 0, total: 0 };

/** This tab's hold on one subscription. */
export class SyncSubscription {
  #state: SyncState = PENDING;
  readonly #listeners = new Set<() => void>();
  readonly #release: () => void;
  #released = false;
  /**
   * Resolves the first time the subscription is `complete`; rejects with a
   * `FerryError` if it is `error` first.
   */
  readonly complete: Promise<void>;
  #settle!: (error?: FerryError) => void;

  /** @internal Created by `Database.sync`. */
  constructor(release: () => void) {
    this.#release = release;
    this.complete = new Promise<void>((resolve, reject) => {
      this.#settle = (error) => (error ? reject(error) : resolve());
    });
    // A caller that only watches the state must not see an unhandled rejection.
    this.complete.catch(() => {});
  }

  /** The current state; the same object until it changes. */
  get state(): SyncState {
    return this.#state;
  }

  /** `state`, as `useSyncExternalStore` wants it. */
  getSnapshot = (): SyncState => this.#state;

  /** Calls `listener` after every change of `state`; returns the function that stops it. */
  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** Lets go of the subscription (the worker keeps it for its TTL if no one else holds it). */
  unsubscribe(): void {
    if (this.#released) return;
    this.#released = true;
    this.#listeners.clear();
    this.#release();
  }

  /** @internal The worker's report, or the hold's refusal. */
  _set(status: SyncSubscriptionStatus | FerryError): void {
    const next: SyncState =
      status instanceof FerryError
        ? { status: 'error', error: status, synced: 0, total: 0 }
        : status.state === 'error'
          ? { status: 'error', error: subscriptionError(status), synced: status.synced, total: status.total }
          : { status: status.state, synced: status.synced, total: status.total };
    this.#state = next;
    if (next.status === 'complete') this.#settle();
    if (next.status === 'error') this.#settle(next.error);
    for (const listener of [...this.#listeners]) listener();
  }
}

function subscriptionError(status: SyncSubscriptionStatus): FerryError {
  const error = status.error ?? { code: 'bad_response', message: 'the server gave no reason' };
  // The server's codes for a subscription are `unknown_query` and `bad_arguments`.
  return new FerryError({ code: error.code as FerryErrorCode, message: error.message, retryable: false });
}

/** The tab's holds, by the hold id the worker reports them under. */
export class SyncHolds {
  readonly #transport: Transport;
  readonly #holds = new Map<number, SyncSubscription>();

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  hold(query: string, args: unknown, options: SyncOptions): SyncSubscription {
    const hold = this.#transport.nextId();
    const handle = new SyncSubscription(() => {
      this.#holds.delete(hold);
      this.#transport.stand(`h${hold}`);
      void this.#transport.call({ type: 'syncRelease', hold }, () => undefined).catch(() => {});
    });
    this.#holds.set(hold, handle);
    const message = { type: 'syncHold' as const, hold, query, args: args ?? {}, ...(options.ttl === undefined ? {} : { ttl: options.ttl }) };
    this.#transport.call(message, () => undefined, [`h${hold}`]).catch((error: FerryError) => {
      this.#holds.delete(hold);
      handle._set(error);
    });
    return handle;
  }

  /** A `syncState` message. */
  changed(hold: number, status: SyncSubscriptionStatus): void {
    this.#holds.get(hold)?._set(status);
  }
}
