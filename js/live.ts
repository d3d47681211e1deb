/**
 * A live query handle: a tiny external store (`subscribe` / `getSnapshot`) that
 * React's `useSyncExternalStore` and Vue's `shallowRef` bind to directly.
 */
import { FerryError } from './errors.js';
import type { Patch, RawRows, SqlValue } from './protocol.js';

export type Row = Record<string, SqlValue>;

/** A query is pending until its first result; an error keeps the last rows. */
export type QueryState<R> =
  | { status: 'pending' }
  | { status: 'ok'; rows: readonly R[] }
  | { status: 'error'; error: FerryError; rows: readonly R[] | undefined };

export type Listener = () => void;

export class LiveQuery<R = Row> {
  #state: QueryState<R> = { status: 'pending' };
  /** The rows every patch from the worker is relative to (kept through errors). */
  #rows: R[] = [];
  #columns: string[] = [];
  readonly #listeners = new Set<Listener>();
  readonly #release: () => void;
  #closed = false;

  /** @internal Created by `Database.watch`. */
  constructor(release: () => void) {
    this.#release = release;
  }

  /** The current state; the same object until the result changes. */
  getSnapshot = (): QueryState<R> => this.#state;

  /** Calls `listener` after every change; returns the function that stops it. */
  subscribe = (listener: Listener): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  /** Stops the query in the worker. The last state stays readable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#release();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal The first result. */
  _setRows(raw: RawRows): void {
    this.#columns = raw.columns;
    this.#rows = toObjects<R>(raw);
    this.#set({ status: 'ok', rows: this.#rows });
  }

  /** @internal A later result: unchanged rows stay the same objects. */
  _applyPatch(patch: Patch): void {
    if (patch.columns) this.#columns = patch.columns;
    const old = this.#rows;
    const rows: R[] = [];
    for (const segment of patch.segments) {
      if (Array.isArray(segment)) {
        const [from, count] = segment;
        for (let i = from; i < from + count; i++) rows.push(old[i]!);
      } else {
        for (const values of segment.rows) rows.push(toObject<R>(this.#columns, values));
      }
    }
    this.#rows = rows;
    this.#set({ status: 'ok', rows });
  }

  /** @internal */
  _setError(error: FerryError): void {
    const rows = this.#state.status === 'pending' ? undefined : this.#state.rows;
    this.#set({ status: 'error', error, rows });
  }

  #set(state: QueryState<R>): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Rows as objects keyed by column name. */
export function toObjects<R>(raw: RawRows): R[] {
  return raw.rows.map((values) => toObject<R>(raw.columns, values));
}

function toObject<R>(columns: string[], values: SqlValue[]): R {
  const row: Record<string, SqlValue> = {};
  for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i] ?? null;
  return row as R;
}
