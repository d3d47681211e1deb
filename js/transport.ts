/**
 * The tab's end of the worker's port: calls by id, each answered exactly
 * once by its `reply` (or failed all together when the tab closes or the
 * worker cannot start). Every other message goes to `onMessage`.
 */
import { FerryError, type ErrorData } from './errors.js';
import type { Request, TabMessage, WorkerMessage } from './protocol.js';

interface Pending {
  resolve: (value: unknown, seq?: number) => void;
  reject: (error: FerryError) => void;
}

export class Transport {
  readonly #port: MessagePort;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  /** Set when the worker refused this tab for good: every call fails with it. */
  #fatal: FerryError | undefined;

  constructor(port: MessagePort, onMessage: (message: Exclude<WorkerMessage, { type: 'reply' }>) => void) {
    this.#port = port;
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

  /** Sends `request` with a new id; `wrap` turns the reply's value (and commit `seq`) into the result. */
  call<R>(request: Request, wrap: (value: unknown, seq?: number) => R): Promise<R> {
    if (this.#closed) return Promise.reject(new FerryError(closedError()));
    if (this.#fatal) return Promise.reject(this.#fatal);
    const id = this.nextId();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: (value, seq) => resolve(wrap(value, seq)), reject });
      this.send({ ...request, id } as TabMessage);
    });
  }

  /** Sends a control message that carries `id` and awaits its reply. */
  control(message: (id: number) => TabMessage): Promise<unknown> {
    if (this.#closed) return Promise.reject(new FerryError(closedError()));
    const id = this.nextId();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.send(message(id));
    });
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
