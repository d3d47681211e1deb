/**
 * This tab's live queries by subscription id: held weakly, so a handle the
 * app dropped without `close()` is collected and its worker-side
 * subscription released; `live()`'s shared handles by SQL and parameters.
 */
import { FerryError } from './errors.js';
import { LiveQuery } from './live.js';
import type { LiveRows, LiveUpdate, SqlParam } from './protocol.js';
import type { Transport } from './transport.js';

export class LiveRegistry {
  readonly #transport: Transport;
  readonly #live = new Map<number, WeakRef<LiveQuery<unknown>>>();
  readonly #collected = new FinalizationRegistry<number>((subscription) => this.#release(subscription));
  /** Shared handles of `live()`, by SQL and parameters. */
  readonly #shared = new Map<string, LiveQuery<unknown>>();

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  watch<R>(sql: string, params: SqlParam[], onClose: () => void = () => {}): LiveQuery<R> {
    const subscription = this.#transport.nextId();
    const handle = new LiveQuery<R>(() => {
      onClose();
      this.#release(subscription);
    });
    this.#live.set(subscription, new WeakRef(handle as LiveQuery<unknown>));
    this.#collected.register(handle, subscription, handle);
    const setRows = (raw: unknown) => this.#live.has(subscription) && handle._setRows(raw as LiveRows);
    // Standing: a new leader tab is asked again, and its rows replace these.
    this.#transport.call({ type: 'subscribe', subscription, sql, params }, (raw) => raw as LiveRows, [`s${subscription}`, setRows]).then(
      setRows,
      (error: FerryError) => {
        // A query that failed to start holds nothing in the worker.
        this.#live.delete(subscription);
        this.#collected.unregister(handle);
        handle._setError(error);
      },
    );
    return handle;
  }

  /** The shared handle of `sql` and `params`, made if there is none open. */
  shared<R>(sql: string, params: SqlParam[], idleMs: number): LiveQuery<R> {
    const key = `${sql}\u0000${JSON.stringify(params, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`;
    const existing = this.#shared.get(key);
    if (existing && !existing.closed) return existing as LiveQuery<R>;
    const handle = this.watch<R>(sql, params, () => this.#shared.delete(key));
    handle._closeWhenIdle(idleMs);
    this.#shared.set(key, handle as LiveQuery<unknown>);
    return handle;
  }

  apply(updates: LiveUpdate[]): void {
    for (const update of updates) {
      const handle = this.#live.get(update.subscription)?.deref();
      if (!handle) continue;
      if ('error' in update) handle._setError(new FerryError(update.error), update.complete);
      else handle._applyPatch(update.patch, update.complete);
    }
  }

  /** `deleteDatabase` ran: every live query has ended. */
  reset(): void {
    const ended = new FerryError({ code: 'database_deleted', message: 'the database was deleted', retryable: false });
    for (const ref of [...this.#live.values()]) ref.deref()?._setError(ended);
    this.#live.clear();
    this.#shared.clear();
  }

  closeAll(): void {
    for (const ref of [...this.#live.values()]) ref.deref()?.close();
  }

  #release(subscription: number): void {
    this.#transport.stand(`s${subscription}`);
    if (this.#live.delete(subscription) && !this.#transport.closed) {
      this.#transport.call({ type: 'unsubscribe', subscription }, () => undefined).catch(() => {});
    }
  }
}
