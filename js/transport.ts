/**
 * The tab's end of the worker's port: calls by id, each answered exactly
 * once by its `reply` (or failed all together when the tab closes or the
 * worker cannot start). Every other message goes to `onMessage`.
 *
 * In the leader-tab topology (`leader.ts`) the worker can change under the
 * tab; then `resend` gives the new one everything this tab holds there
 * (its lock, its app, live queries, sync holds: the *standing* messages)
 * and every call not answered yet, each with its first id. Writes carry a
 * `key` there, so one the old leader applied is not applied again.
 */
import { FerryError, type ErrorData } from './errors.js';
import type { Call, TabMessage, WorkerMessage } from './protocol.js';

/** A `MessagePort`, or the leader-tab relay that stands in for one. */
export type Port = Pick<MessagePort, 'postMessage' | 'close'> & { onmessage: ((event: MessageEvent) => void) | null };

/**
 * A port that is `loading`'s once it resolves: what is posted before is
 * posted then. (The leader-tab code loads only where it is needed.)
 */
export function portWhenLoaded(loading: Promise<Port>): Port {
  const early: unknown[] = [];
  let loaded: Port | undefined;
  let closed = false;
  const port: Port = {
    onmessage: null,
    postMessage: (m: unknown) => (loaded ? loaded.postMessage(m) : early.push(m)),
    close() {
      closed = true;
      loaded?.close();
    },
  };
  void loading.then((real) => {
    if (closed) return real.close();
    real.onmessage = (event) => port.onmessage?.(event);
    loaded = real;
    early.forEach((m) => real.postMessage(m));
  });
  return port;
}

/** A reply's value and its commit `seq`. */
export type OnReply = (value: unknown, seq?: number) => void;

interface Pending {
  resolve: OnReply;
  reject: (error: FerryError) => void;
  message: TabMessage;
}

export class Transport {
  readonly #port: Port;
  readonly #pending = new Map<number, Pending>();
  /** By key: what holds state in the worker, and its reply's handler when sent again. */
  readonly #standing = new Map<string, [TabMessage, OnReply | undefined]>();
  #nextId = 1;
  #closed = false;
  /** Set when the worker refused this tab for good: every call fails with it. */
  #fatal: FerryError | undefined;
  /** The prefix of write keys, in the leader-tab topology. */
  readonly #keys: string | undefined;

  constructor(
    port: Port,
    onMessage: (message: Exclude<WorkerMessage, { type: 'reply' }>) => void,
    keys?: string,
  ) {
    this.#port = port;
    this.#keys = keys;
    this.#port.onmessage = (event: MessageEvent<WorkerMessage>) => {
      const message = event.data;
      if (message.type === 'reply') this.#reply(message);
      else onMessage(message);
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A fresh id (calls and subscriptions share one sequence). */
  nextId(): number {
    return this.#nextId++;
  }

  send(message: TabMessage): void {
    if (!this.#closed) this.#port.postMessage(message);
  }

  /** Keeps `message` to send again to a new leader (none: forgets `key`). */
  stand(key: string, message?: TabMessage, again?: OnReply | undefined): void {
    if (message) this.#standing.set(key, [message, again]);
    else this.#standing.delete(key);
  }

  /**
   * Sends `request` with a new id; `wrap` turns the reply's value (and
   * commit `seq`) and the message sent into the result. With `stand`, the
   * message stands under that key once it succeeded (see `stand`).
   */
  call<R>(
    request: Call,
    wrap: (value: unknown, seq: number | undefined, message: TabMessage) => R,
    stand?: [string, OnReply?],
  ): Promise<R> {
    if (this.#closed) return Promise.reject(new FerryError(closedError()));
    if (this.#fatal) return Promise.reject(this.#fatal);
    const id = this.nextId();
    const message = { ...request, id, ...(this.#keys && { key: this.#keys + id }) } as TabMessage;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, {
        resolve: (value, seq) => {
          if (stand) this.stand(stand[0], message, stand[1]);
          resolve(wrap(value, seq, message));
        },
        reject,
        message,
      });
      this.send(message);
    });
  }

  /**
   * A new leader: sends it the standing messages, every call not answered
   * yet, and `writes` (answered, not known durable), whose replies go to
   * their handlers.
   */
  resend(writes: [TabMessage, OnReply][]): void {
    const unanswered = [...this.#pending.values()];
    for (const [message, again] of [...this.#standing.values(), ...writes]) {
      if (again) this.#pending.set((message as { id: number }).id, { resolve: again, reject: () => {}, message });
      this.send(message);
    }
    for (const { message } of unanswered) this.send(message);
  }

  /** From now on every call fails with `error`, and so do those waiting. */
  fail(error: ErrorData): void {
    this.#fatal = new FerryError(error);
    this.#failPending(error);
  }

  close(): void {
    this.#closed = true;
    this.#failPending(closedError());
    this.#port.close();
  }

  #reply(message: Extract<WorkerMessage, { type: 'reply' }>): void {
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.error) pending.reject(new FerryError(message.error));
    else pending.resolve(message.ok, message.seq);
  }

  #failPending(error: ErrorData): void {
    for (const pending of this.#pending.values()) pending.reject(new FerryError(error));
    this.#pending.clear();
  }
}

export function closedError(): ErrorData {
  return { code: 'closed', message: 'the database was closed', retryable: false };
}
