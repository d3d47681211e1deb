/**
 * The storage status the worker reports, and the `durable` promises of this
 * tab's writes: each resolves once `durableSeq` reaches its commit, or
 * rejects with the storage error if storage is failing now or fails first.
 */
import { FerryError, type ErrorData } from './errors.js';
import type { StorageStatus, TabMessage } from './protocol.js';
import type { OnReply } from './transport.js';

interface DurableWaiter {
  seq: number;
  resolve: () => void;
  reject: (error: FerryError) => void;
  /** The write, as sent: sent again to a new leader tab until it is durable. */
  write: TabMessage;
  /** Told the new leader's answer to the write sent again. */
  again: ((value: unknown) => void) | undefined;
}

export class Durability {
  #status: StorageStatus | undefined;
  readonly #listeners = new Set<(status: StorageStatus) => void>();
  /** Writes waiting to be on disk, oldest first. */
  #waiters: DurableWaiter[] = [];

  /** As the worker last said (undefined until it does). */
  get status(): StorageStatus | undefined {
    return this.#status;
  }

  onChange(listener: (status: StorageStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves once the commit `seq` is on disk; at once if nothing was
   * committed. The write stays in memory if storage fails, and reaches the
   * disk if storage recovers (`durableSeq` tells).
   */
  durable(seq: number | undefined, write: TabMessage, again?: (value: unknown) => void): Promise<void> {
    if (seq === undefined || (this.#status && this.#status.durableSeq >= seq)) return Promise.resolve();
    const failing = this.#status?.error;
    const promise = failing
      ? Promise.reject(new FerryError(failing))
      : new Promise<void>((resolve, reject) => this.#waiters.push({ seq, resolve, reject, write, again }));
    // Apps that never await `durable` must not see unhandled rejections.
    promise.catch(() => {});
    return promise;
  }

  changed(status: StorageStatus): void {
    this.#status = status;
    this.#settle();
    for (const listener of [...this.#listeners]) listener(status);
  }

  /**
   * A new leader tab: the writes not known to be on disk, to send it again.
   * Each waits for the new leader's answer (its new commit, or none if the
   * write survived), not for the old leader's sequence numbers.
   */
  handover(): [TabMessage, OnReply][] {
    return this.#waiters.map((waiter) => {
      waiter.seq = Infinity;
      return [
        waiter.write,
        (value, seq) => {
          waiter.again?.(value);
          waiter.seq = seq ?? 0;
          this.#settle();
        },
      ];
    });
  }

  #settle(): void {
    const status = this.#status!;
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) {
      if (waiter.seq <= status.durableSeq) waiter.resolve();
      else if (status.error) waiter.reject(new FerryError(status.error));
      else this.#waiters.push(waiter);
    }
  }

  failAll(error: ErrorData): void {
    for (const waiter of this.#waiters) waiter.reject(new FerryError(error));
    this.#waiters = [];
  }
}
