/**
 * Messages between a tab and the worker. The messages themselves are
 * generated from their one Rust definition (`src/host/tab_message.rs`,
 * `src/host/worker_message.rs`) into `generated/wire.ts`; this module names
 * the values they carry and what each call resolves to.
 */
import type { ErrorData } from './errors.js';
import type { TabMessage, WorkerMessage as RustWorkerMessage } from './generated/wire.js';

export type { TabMessage } from './generated/wire.js';

/** A SQLite value as JavaScript sees it (integers past 2^53 arrive as bigint). */
export type SqlValue = null | number | bigint | string | Uint8Array;
/** Values a caller may bind: booleans are stored as 0/1. */
export type SqlParam = SqlValue | boolean;

export interface RawRows {
  columns: string[];
  rows: SqlValue[][];
}

/** A live query's first result, and whether it is complete (see `QueryState`). */
export interface LiveRows extends RawRows {
  complete: boolean;
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

/** The tab messages that are calls to the engine, without their id. */
export type Request = DistributiveOmit<
  Exclude<TabMessage, { type: 'hello' | 'open' | 'token' | 'bye' | 'deleteDatabase' }>,
  'id'
>;

/** Every tab message that carries a call id, without it. */
export type Call = DistributiveOmit<Extract<TabMessage, { id: number }>, 'id'>;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What each request resolves to. */
export interface ResponseOf {
  exec: ExecResult;
  execMany: ExecResult;
  query: RawRows;
  subscribe: LiveRows;
  unsubscribe: undefined;
  mutate: { mutationId: number };
  clearRejections: undefined;
  pauseSync: undefined;
  resumeSync: undefined;
  stats: WorkerStats;
  syncHold: undefined;
  syncRelease: undefined;
}

/**
 * The change from a live query's previous rows to its new ones: runs of old rows
 * kept as they are (`[from, count]`) and rows that are new. `columns` is there
 * only when the column list changed.
 */
export interface Patch {
  columns?: string[];
  segments: Array<[from: number, count: number] | { rows: SqlValue[][] }>;
}

/** A live query's change, and whether it is now complete (a flip alone keeps every row). */
export type LiveUpdate =
  | { subscription: number; patch: Patch; complete: boolean }
  | { subscription: number; error: ErrorData; complete: boolean };

/**
 * `indexeddb+opfs`: the frame log in IndexedDB, checkpoint segments in OPFS (the default).
 * `opfs-sync`: all in OPFS, the log appended in place through sync access handles (a leader tab's worker).
 */
export type StorageBackend = 'indexeddb+opfs' | 'opfs' | 'opfs-sync' | 'indexeddb' | 'memory';

/** Where the replica is stored, and how much of it is on disk. */
export interface StorageStatus {
  backend: StorageBackend;
  /** Every commit up to this sequence number is on disk. */
  durableSeq: number;
  /** Set while writes are not reaching the disk (`storage_quota`, `storage_unavailable`, `storage_cleared`). */
  error?: ErrorData;
}

export type WorkerMessage =
  | RustWorkerMessage
  /** The worker could not start (e.g. the wasm failed to load): sent by its JS entry. */
  | { type: 'fatal'; error: ErrorData };
