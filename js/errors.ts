import type { FerryErrorCode } from './generated/wire.js';

export type { FerryErrorCode } from './generated/wire.js';

/** The shape errors take when they cross from the worker: data, never a bare string. */
export interface ErrorData {
  code: FerryErrorCode;
  message: string;
  retryable: boolean;
  /** Set when the sync server rejected a mutation: its code as the server sent it. */
  rejection?: ServerRejection | undefined;
}

/** The server's refusal of one mutation. */
export interface ServerRejection {
  mutationId: number;
  /** `forbidden`, `mutator_failed`, `bad_arguments`, `unknown_mutator`, or an app-defined code. */
  code: string;
  message: string;
}

/** Every error ferrydb raises. `code` is stable; `message` is for humans. */
export class FerryError extends Error {
  readonly code: FerryErrorCode;
  readonly retryable: boolean;
  /** For a mutation the sync server rejected: the server's own code and message. */
  readonly rejection: ServerRejection | undefined;

  constructor(data: ErrorData) {
    super(data.message);
    this.name = 'FerryError';
    this.code = data.code;
    this.retryable = data.retryable;
    this.rejection = data.rejection;
  }
}
