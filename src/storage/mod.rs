//! Durable storage for the replica: SQLite runs on an in-memory page store;
//! every committed write transaction becomes one frame of an append-only log
//! that the host writes asynchronously; checkpoints fold the log into segment
//! files. Platform-free: the browser host (in `src/wasm/`) only moves bytes.
//!
//! # Using it
//!
//! ```
//! use ferrydb::storage::{open_backend, LogConfig, MemoryBackend, PageStore};
//! # fn main() -> ferrydb::storage::Result<()> {
//! let mut backend = MemoryBackend::default();
//! // Open: read every file, rebuild the image, get the log that carries on.
//! let recovered = open_backend(&backend, LogConfig::default())?;
//! let mut log = recovered.log;
//! let store = PageStore::new(recovered.image)?;
//! let conn = store.open_connection()?;
//!
//! // After each transaction: hand its commit to the log.
//! conn.execute_batch("CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1);")?;
//! while let Some(commit) = store.take_commit() {
//!     let seq = log.append(&commit); // resolve `durable` when durable_seq() >= seq
//! }
//! // The host performs I/O (asynchronously in the browser) and acknowledges it.
//! while let Some(request) = log.next_io() {
//!     let result = ferrydb::storage::perform(&mut backend, &request);
//!     log.io_done(request.id, result);
//! }
//! // Between transactions, when the log has grown:
//! if log.checkpoint_due() {
//!     log.start_checkpoint(&store);
//! }
//! # Ok(()) }
//! ```
//!
//! - [`PageStore`]: the database file in memory, opened by SQLite through our
//!   VFS (`vfs.rs`, `page_store.rs` explain how commits are detected).
//!   `PageStore::new(PageImage::empty())` for a new database.
//! - [`FrameLog`]: sans-IO. `append(&Commit) -> seq`, `next_io() ->
//!   Option<IoRequest>`, `io_done(id, Result)`, `durable_seq()`,
//!   `checkpoint_due()` / `start_checkpoint(&dyn PageSource)`, `stalled()` /
//!   `resume()` after a failed write.
//! - [`recover`] / [`open_backend`]: files → [`Recovered`] (`image`, `log`,
//!   `report`).
//! - [`StorageBackend`] with [`MemoryBackend`]; [`FrameLog::run_io`] drives a
//!   synchronous backend.
//! - [`Error`]: stable codes `storage_quota`, `storage_unavailable`,
//!   `storage_corrupt`, `storage_cleared`.
//!
//! # Decisions
//!
//! - **`journal_mode=MEMORY`.** The rollback journal stays in SQLite's heap:
//!   rollback of a failed or aborted transaction works, and the database file
//!   is the only file SQLite writes, so its writes are exactly the commit's
//!   pages. `OFF` would break rollback; WAL needs shared memory and would make
//!   the log SQLite's instead of ours.
//! - **Commit boundary** = the connection leaving the write lock, with the
//!   header's change counter telling commit from rollback (`page_store.rs`).
//! - **Files are written whole and never appended to**, because OPFS
//!   `createWritable` and IndexedDB `put` both replace whole files cheaply. A
//!   log write that failed is retried whole under the same name (it was never
//!   acknowledged); every other name is written once.
//! - **The host contract**: perform requests in any order and concurrently if
//!   it likes (the log only issues a request once everything it depends on is
//!   acknowledged); acknowledge each id exactly once; report `Quota` for
//!   `QuotaExceededError`, `Cleared` when the files were deleted under it
//!   (the log then stops for good) and `Unavailable` for anything else; after
//!   a retryable failure call `resume()` once it is worth trying again.
//! - **Limits**: the whole database lives in memory (plus SQLite's page cache);
//!   opening reads every segment and log file once; frames waiting for a
//!   stalled log stay in memory.

mod backend;
mod checkpoint;
mod crc32;
mod error;
pub mod fence;
pub mod frame;
mod image;
mod log;
mod manifest;
mod page_set;
mod page_store;
mod recovery;
mod vfs;

pub use backend::{open_backend, perform, written_at, MemoryBackend, MemoryFiles, StorageBackend};
pub use error::{Error, Result};
pub use frame::Commit;
pub use image::{PageImage, PageSource};
pub use log::{FrameLog, IoOp, IoRequest, LogConfig};
pub use manifest::FileName;
pub use page_store::PageStore;
pub use recovery::{recover, Recovered, RecoveryReport};

#[cfg(test)]
mod tests;
