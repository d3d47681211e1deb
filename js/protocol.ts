/**
 * Messages between a tab and the worker. Mirrors `src/engine/request.rs` and
 * `src/wasm/tabs.rs`; change them together.
 */
import type { ErrorData } from './errors.js';
import type { Settled, SyncEventMessage, WorkerSyncStatus } from './sync.js';

/** A SQLite value as JavaScript sees it (integers past 2^53 arrive as bigint). */
export type SqlValue = null | number | bigint | string | Uint8Array;
/** Values a caller may bind: booleans are stored as 0/1. */
export type SqlParam = SqlValue | boolean;

export interface RawRows {
  columns: string[];
  rows: SqlValue[][];
}

export interface ExecResult {
  rowsAffected: number;
  lastInsertRowid: number | bigint;
}

export interface WorkerStats {
  tabs: number;
  liveQueries: number;
  subscriptions: number;
  /** Size of the worker's WebAssembly memory, where the replica lives. */
  wasmMemoryBytes: number;
}

export type Request =
  | { type: 'exec'; sql: string; params: SqlParam[] }
  | { type: 'execMany'; sql: string; rows: SqlParam[][] }
  | { type: 'query'; sql: string; params: SqlParam[] }
  | { type: 'subscribe'; subscription: number; sql: string; params: SqlParam[] }
  | { type: 'unsubscribe'; subscription: number }
  | { type: 'mutate'; name: string; args: unknown }
  | { type: 'clearRejections' }
  | { type: 'pauseSync' }
  | { type: 'resumeSync' }
  | { type: 'stats' };

/** What each request resolves to. */
export interface ResponseOf {
  exec: ExecResult;
  execMany: ExecResult;
  query: RawRows;
  subscribe: RawRows;
  unsubscribe: undefined;
  mutate: { mutationId: number };
  clearRejections: undefined;
  pauseSync: undefined;
  resumeSync: undefined;
  stats: WorkerStats;
}

export type TabMessage =
  | { type: 'hello'; lock: string }
  | { type: 'bye' }
  | { type: 'deleteDatabase'; id: number }
  /** First message of a tab with an app: its definition (JSON text), sync base URL, token provider. */
  | { type: 'open'; id: number; app: string; server?: string; auth: boolean }
  /** The answer to `needToken`: a token, `null` for none, or why the provider failed. */
  | { type: 'token'; ask: number; token: string | null }
  | { type: 'token'; ask: number; error: string }
  | (Request & { id: number });

/**
 * The change from a live query's previous rows to its new ones: runs of old rows
 * kept as they are (`[from, count]`) and rows that are new. `columns` is there
 * only when the column list changed.
 */
export interface Patch {
  columns?: string[];
  segments: Array<[from: number, count: number] | { rows: SqlValue[][] }>;
}

export type LiveUpdate = { subscription: number; patch: Patch } | { subscription: number; error: ErrorData };

/** Where the replica is stored, and how much of it is on disk. */
export interface StorageStatus {
  /** `indexeddb+opfs`: the frame log in IndexedDB, checkpoint segments in OPFS (the default). */
  backend: 'indexeddb+opfs' | 'opfs' | 'indexeddb' | 'memory';
  /** Every commit up to this sequence number is on disk. */
  durableSeq: number;
  /** Set while writes are not reaching the disk (`storage_quota`, `storage_unavailable`, `storage_cleared`). */
  error?: ErrorData;
}

export type WorkerMessage =
  | { type: 'reply'; id: number; ok: unknown; seq?: number }
  | { type: 'reply'; id: number; error: ErrorData }
  | ({ type: 'storage' } & StorageStatus)
  /** `deleteDatabase` ran: every live query has ended. */
  | { type: 'reset' }
  | { type: 'live'; updates: LiveUpdate[] }
  /** The worker could not start (e.g. the wasm failed to load). */
  | { type: 'fatal'; error: ErrorData }
  | { type: 'syncStatus'; status: WorkerSyncStatus }
  | { type: 'syncEvent'; event: SyncEventMessage }
  /** The server decided on a mutation (sent to every tab; the one that made it resolves `server`). */
  | { type: 'settled'; settled: Settled }
  /** The worker needs a bearer token: call the app's `auth()` and answer with `token`. */
  | { type: 'needToken'; ask: number };
