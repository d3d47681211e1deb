/**
 * A live query handle: a tiny external store (`subscribe` / `getSnapshot`) that
 * React's `useSyncExternalStore` and Vue's `shallowRef` bind to directly.
 */
import { FerryError } from './errors.js';
import type { LiveRows, Patch, RawRows, SqlValue } from './protocol.js';

export type Row = Record<string, SqlValue>;

/**
 * A query is pending until its first result; an error keeps the last rows.
 * `complete` is false while the replica still awaits rows of a table the
 * query reads: a subscription (`db.sync`) over one of them is `pending`
 * (or, for an app without queries, the first download is not finished).
 * Rows that are not complete may grow: show a loading state rather than
 * "nothing here".
 */
export type QueryState<R> =
  | { status: 'pending'; complete: false }
  | { status: 'ok'; rows: readonly R[]; complete: boolean }
  | { status: 'error'; error: FerryError; rows: readonly R[] | undefined; complete: boolean };

export type Listener = () => void;

export class LiveQuery<R = Row> {
  #state: QueryState<R> = { status: 'pending', complete: false };
  /** The rows every patch from the worker is relative to (kept through errors). */
  #rows: R[] = [];
  #columns: string[] = [];
  readonly #listeners = new Set<Listener>();
  readonly #release: () => void;
  #closed = false;
  /** For shared handles (`Database.live`): close after this long without listeners. */
  #idleMs: number | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  /** @internal Created by `Database.watch`. */
  constructor(release: () => void) {
    this.#release = release;
  }

  /** The current state; the same object until the result changes. */
  getSnapshot = (): QueryState<R> => this.#state;

  /** Calls `listener` after every change; returns the function that stops it. */
  subscribe = (listener: Listener): (() => void) => {
    this.#listeners.add(listener);
    clearTimeout(this.#idleTimer);
    return () => {
      this.#listeners.delete(listener);
      this.#armIdleClose();
    };
  };

  /** Resolves once the query has a first result or error (for Suspense). */
  ready(): Promise<void> {
    if (this.#state.status !== 'pending') return Promise.resolve();
    return new Promise((resolve) => {
      // Being a listener also keeps a shared handle open while it is awaited.
      const stop = this.subscribe(() => {
        stop();
        resolve();
      });
    });
  }

  /** @internal Makes this a shared handle that closes itself when unused. */
  _closeWhenIdle(idleMs: number): void {
    this.#idleMs = idleMs;
    this.#armIdleClose();
  }

  #armIdleClose(): void {
    if (this.#idleMs === undefined || this.#listeners.size > 0 || this.#closed) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.close(), this.#idleMs);
  }

  /** Stops the query in the worker. The last state stays readable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#listeners.clear();
    this.#release();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal The first result. */
  _setRows(raw: LiveRows): void {
    this.#columns = raw.columns;
    this.#rows = toObjects<R>(raw);
    this.#set({ status: 'ok', rows: this.#rows, complete: raw.complete });
  }

  /** @internal A later result: unchanged rows stay the same objects. */
  _applyPatch(patch: Patch, complete: boolean): void {
    if (patch.columns) this.#columns = patch.columns;
    const old = this.#rows;
    const [only] = patch.segments;
    if (!patch.columns && patch.segments.length === 1 && Array.isArray(only) && only[0] === 0 && only[1] === old.length) {
      // Every row kept (completeness flipped, or an error ended): the same array.
      this.#set({ status: 'ok', rows: old, complete });
      return;
    }
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
    this.#set({ status: 'ok', rows, complete });
  }

  /** @internal */
  _setError(error: FerryError, complete = this.#state.complete): void {
    const rows = this.#state.status === 'pending' ? undefined : this.#state.rows;
    this.#set({ status: 'error', error, rows, complete });
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
