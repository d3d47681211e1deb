/**
 * Generated from the Rust definitions by `cargo test -p ferrydb typescript`
 * (`src/host/tests/typescript.rs`): do not edit. The error codes come from
 * `ErrorCode` and `StatusErrorCode`, the messages from `TabMessage` and
 * `WorkerMessage` (`src/host/`).
 */
import type { ErrorData } from '../errors.js';
import type { LiveUpdate, SqlParam, StorageBackend } from '../protocol.js';
import type { Settled, SyncEventMessage, WorkerSyncStatus } from '../sync.js';
import type { SyncSubscriptionStatus } from '../subscriptions.js';

/** Stable error codes (`FerryError.code`). A code is never renamed once shipped. */
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
  | 'storage_cleared'
  | 'database_deleted'
  | 'write_outside_mutator'
  | 'unknown_mutator'
  | 'bad_arguments'
  | 'unknown_query'
  | 'mutator_failed'
  | 'forbidden'
  | 'rejected'
  | 'invalid_app'
  | 'app_outdated'
  | 'bad_response';

/** Why syncing is failing (`syncStatus.error.code`); stable. */
export type SyncErrorCode =
  | 'network'
  | 'server_error'
  | 'timeout'
  | 'bad_response'
  | 'auth_required'
  | 'unauthorized'
  | 'update_needed'
  | 'server_behind'
  | 'forbidden';

/** Every message a tab sends the worker. */
export type TabMessage =
  | { type: 'hello'; lock: string }
  | { type: 'open'; id: number; app?: string | null; server?: string | null; auth: boolean }
  | { type: 'token'; ask: number; token?: string | null; error?: string | null }
  | { type: 'bye' }
  | { type: 'deleteDatabase'; id: number }
  | { type: 'exec'; id: number; sql: string; params: SqlParam[]; key?: string | null }
  | { type: 'execMany'; id: number; sql: string; rows: SqlParam[][]; key?: string | null }
  | { type: 'query'; id: number; sql: string; params: SqlParam[] }
  | { type: 'subscribe'; id: number; subscription: number; sql: string; params: SqlParam[] }
  | { type: 'unsubscribe'; id: number; subscription: number }
  | { type: 'mutate'; id: number; name: string; args: unknown; key?: string | null }
  | { type: 'clearRejections'; id: number }
  | { type: 'pauseSync'; id: number }
  | { type: 'resumeSync'; id: number }
  | { type: 'stats'; id: number }
  | { type: 'syncHold'; id: number; hold: number; query: string; args: unknown; ttl?: number | null }
  | { type: 'syncRelease'; id: number; hold: number };

/** Every message the worker sends a tab (`fatal` comes from the worker's JS entry, not from Rust). */
export type WorkerMessage =
  | { type: 'reply'; id: number; ok?: unknown; error?: ErrorData; seq?: number }
  | { type: 'storage'; backend: StorageBackend; durableSeq: number; error?: ErrorData }
  | { type: 'reset' }
  | { type: 'live'; updates: LiveUpdate[] }
  | { type: 'syncStatus'; status: WorkerSyncStatus }
  | { type: 'syncEvent'; event: SyncEventMessage }
  | { type: 'settled'; settled: Settled }
  | { type: 'needToken'; ask: number }
  | { type: 'syncState'; hold: number; status: SyncSubscriptionStatus };
