/** Stable error codes. Apps switch on these; a code is never renamed once shipped. */
export type FerryErrorCode =
  | 'sql_error'
  | 'bad_request'
  | 'unknown_subscription'
  | 'internal'
  | 'worker_unavailable'
  | 'closed'
  | 'storage_quota'
  | 'storage_unavailable'
  | 'storage_corrupt'
  | 'database_deleted';

/** The shape errors take when they cross from the worker: data, never a bare string. */
export interface ErrorData {
  code: FerryErrorCode;
  message: string;
  retryable: boolean;
}

/** Every error ferrydb raises. `code` is stable; `message` is for humans. */
export class FerryError extends Error {
  readonly code: FerryErrorCode;
  readonly retryable: boolean;

  constructor(data: ErrorData) {
    super(data.message);
    this.name = 'FerryError';
    this.code = data.code;
    this.retryable = data.retryable;
  }
}
