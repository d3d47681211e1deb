//! The page store: the replica's database file, held in memory, that SQLite
//! opens through our VFS ([`super::vfs`]). It turns every committed write
//! transaction into one [`Commit`] for the frame log.
//!
//! # How commits are detected
//!
//! Connections run with `journal_mode=MEMORY`: the rollback journal lives in
//! SQLite's heap, so a failed or aborted transaction still rolls back, and the
//! only file SQLite writes is the database itself. Every byte written to it
//! while a connection holds the write lock marks its pages dirty. The
//! transaction ends when that connection drops the lock back to SHARED or
//! NONE, which SQLite does right after it commits or rolls back (in the
//! default `locking_mode=NORMAL`). At that moment the file holds the outcome,
//! and the database header's change counter (bytes 24..28) tells which one:
//! SQLite increments it in every commit that changes the file and a rollback
//! restores the old page 1 with the old value. Changed counter → the dirty
//! pages' current bytes become one [`Commit`]. Same counter → the transaction
//! rolled back; if it had spilled pages into the file, the rollback rewrote
//! them, except free-list pages whose content SQLite does not journal. Those
//! pages stay dirty and ride along with the next commit, so every commit's
//! frame, applied to the previous image, gives exactly this file again.
//! `xSync` is not used as the signal because rollback playback syncs too and
//! `synchronous=OFF` skips it.

use super::error::Result;
use super::frame::{valid_page_size, Before, Commit, MAX_FILE_BYTES};
use super::image::{PageImage, PageSource};
use super::page_set::PageSet;
use super::vfs;
use rsqlite_vfs::LockLevel;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// SQLite's lock protocol over all connections to one page store, so several
/// connections (say, a writer and a reader) can share it safely.
#[derive(Debug, Default)]
struct LockTable {
    /// Connections holding SHARED or more.
    shared: usize,
    /// The connection holding RESERVED, PENDING or EXCLUSIVE.
    writer: Option<u64>,
    /// The writer waits for readers to leave; no new reader may enter.
    pending: bool,
    exclusive: bool,
}

/// The file behind one page store, shared by every connection's file handle.
#[derive(Debug, Default)]
pub(super) struct StoreFile {
    image: PageImage,
    locks: LockTable,
    /// Pages written during the current write transaction.
    dirty: PageSet,
    /// Set at the transaction's first change: the header's change counter
    /// then (`None` when the file had no complete header yet).
    counter_before: Option<Option<[u8; 4]>>,
    /// The file as the log last saw it (at the last captured commit): its size
    /// and the bytes of pages changed since, copied at their first write, so
    /// the frame holds only what changed. At most [`KEEP_BEFORE`] pages.
    before: Before,
    /// Pages `1..=intact_pages` were not truncated away since the last
    /// capture, so a first write still finds what the log saw there.
    intact_pages: u32,
    /// Commits captured and not yet taken by the engine, oldest first. A
    /// `Vec` used as a queue: it holds one or two, and a `VecDeque` would be
    /// one more instantiation in the wasm.
    commits: Vec<Commit>,
}

/// Commits of more pages (bulk loads, a pulled page of rows) are stored whole:
/// most of their pages are new, so comparing them would cost time and save
/// little, and keeping their old bytes would cost memory.
const KEEP_BEFORE: usize = 64;

/// A lock-level request that conflicts with another connection.
pub(super) struct Busy;

/// A write or resize that would take the file past [`MAX_FILE_BYTES`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLarge;

impl StoreFile {
    pub(super) fn read(&self, buf: &mut [u8], offset: u64) -> usize {
        self.image.read(buf, offset)
    }

    pub(super) fn len(&self) -> u64 {
        self.image.len_bytes()
    }

    pub(super) fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), TooLarge> {
        if offset.saturating_add(buf.len() as u64) > MAX_FILE_BYTES {
            return Err(TooLarge);
        }
        self.before_change();
        self.keep_before(offset, buf.len());
        self.image.write(buf, offset);
        let pages = self.image.pages_touched(offset, buf.len());
        self.dirty.extend(pages);
        Ok(())
    }

    pub(super) fn truncate(&mut self, len: u64) -> Result<(), TooLarge> {
        if len > MAX_FILE_BYTES {
            return Err(TooLarge);
        }
        self.before_change();
        if let Some(kept) = len.checked_div(u64::from(self.image.page_size())) {
            self.intact_pages = self.intact_pages.min(kept as u32);
        }
        self.image.truncate(len);
        Ok(())
    }

    /// Copies the pages `offset..offset + len` falls in, where this is their
    /// first write since the log saw them.
    fn keep_before(&mut self, offset: u64, len: usize) {
        if self.image.page_size() == 0 {
            return;
        }
        for pgno in self.image.pages_touched(offset, len) {
            let kept = &mut self.before.pages;
            if pgno > self.intact_pages || kept.len() >= KEEP_BEFORE {
                return;
            }
            if !kept.iter().any(|&(n, _)| n == pgno) {
                let bytes = self.image.page(pgno).expect("an intact page");
                kept.push((pgno, bytes.into()));
            }
        }
    }

    fn before_change(&mut self) {
        if self.counter_before.is_none() {
            self.counter_before = Some(self.change_counter());
        }
    }

    fn change_counter(&self) -> Option<[u8; 4]> {
        let mut header = [0; 100];
        (self.image.read(&mut header, 0) == 100).then(|| header[24..28].try_into().expect("4"))
    }

    /// The page size the database header declares, if valid.
    fn header_page_size(&self) -> Option<u32> {
        let mut header = [0; 100];
        if self.image.read(&mut header, 0) != 100 {
            return None;
        }
        let raw = u32::from(u16::from_be_bytes([header[16], header[17]]));
        let size = if raw == 1 { 65536 } else { raw };
        valid_page_size(size).then_some(size)
    }

    /// Raises `holder`'s lock to `level`, following SQLite's lock protocol.
    pub(super) fn lock(
        &mut self,
        id: u64,
        holder: &mut LockLevel,
        level: LockLevel,
    ) -> Result<(), Busy> {
        if *holder >= level {
            return Ok(());
        }
        let locks = &mut self.locks;
        match level {
            LockLevel::None => {}
            LockLevel::Shared => {
                if locks.pending || locks.exclusive {
                    return Err(Busy);
                }
                locks.shared += 1;
            }
            LockLevel::Reserved => {
                if locks.writer.is_some() {
                    return Err(Busy);
                }
                locks.writer = Some(id);
            }
            LockLevel::Pending | LockLevel::Exclusive => {
                if locks.writer.is_some_and(|writer| writer != id) {
                    return Err(Busy);
                }
                locks.writer = Some(id);
                locks.pending = true;
                *holder = LockLevel::Pending;
                if level == LockLevel::Exclusive {
                    if locks.shared > 1 {
                        return Err(Busy);
                    }
                    locks.exclusive = true;
                }
            }
        }
        *holder = level;
        Ok(())
    }

    /// Lowers `holder`'s lock to `level`; leaving the write lock ends the
    /// write transaction, which is where a commit is captured.
    pub(super) fn unlock(&mut self, holder: &mut LockLevel, level: LockLevel) {
        if *holder <= level {
            return;
        }
        if *holder >= LockLevel::Reserved {
            self.locks.writer = None;
            self.locks.pending = false;
            self.locks.exclusive = false;
            self.end_write_transaction();
        }
        if level == LockLevel::None {
            // SQLite always takes SHARED first, so this handle was counted.
            self.locks.shared = self.locks.shared.saturating_sub(1);
        }
        *holder = level;
    }

    pub(super) fn writer_active(&self) -> bool {
        self.locks.writer.is_some()
    }

    fn end_write_transaction(&mut self) {
        let Some(before) = self.counter_before.take() else {
            return;
        };
        if self.change_counter() == before {
            // Rolled back. The pages stay dirty: SQLite restores what matters
            // but leaves free-list pages it reused with the rolled-back bytes,
            // and the next commit carries them so the log's image stays
            // byte-identical to this file.
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty).into_sorted();
        let mut known = true;
        if let Some(size) = self.header_page_size() {
            if size != self.image.page_size() {
                // A VACUUM with a new page size rewrote the file at that size.
                self.image.set_page_size(size);
                dirty = (1..=self.image.db_pages()).collect();
                known = false;
            }
        }
        let db_pages = self.image.db_pages();
        let before = std::mem::replace(&mut self.before, Before::of(db_pages));
        self.intact_pages = db_pages;
        let pages = dirty
            .iter()
            .filter(|&&pgno| pgno <= db_pages)
            .map(|&pgno| (pgno, self.image.page(pgno).expect("in range").into()))
            .collect();
        self.commits.push(Commit {
            page_size: self.image.page_size(),
            db_pages,
            pages,
            before: (known && dirty.len() <= KEEP_BEFORE).then_some(before),
        });
    }
}

/// One replica database held in memory. Open SQLite connections on it with
/// [`PageStore::open_connection`]; after each transaction, collect what it
/// committed with [`PageStore::take_commit`] and hand it to the frame log.
///
/// Connections keep the file alive after the store is dropped, but the name is
/// released then, so no new connection can open it.
pub struct PageStore {
    name: String,
    file: Arc<Mutex<StoreFile>>,
}

impl std::fmt::Debug for PageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PageStore {
    /// A page store holding `image` (from recovery, or [`PageImage::empty`]).
    pub fn new(image: PageImage) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("ferrydb-{}.db", NEXT.fetch_add(1, Ordering::Relaxed));
        let file = Arc::new(Mutex::new(StoreFile {
            before: Before::of(image.db_pages()),
            intact_pages: image.db_pages(),
            image,
            ..StoreFile::default()
        }));
        vfs::register_file(&name, file.clone())?;
        Ok(PageStore { name, file })
    }

    /// The name SQLite knows this database by (unique in the process).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a connection in the mode commit capture relies on:
    /// `journal_mode=MEMORY`, `locking_mode=NORMAL`, `synchronous=OFF` (the
    /// file is memory; durability comes from the frame log). Do not change
    /// these pragmas on the connection: WAL is unsupported, OFF breaks
    /// rollback, and EXCLUSIVE locking would hide commit boundaries.
    pub fn open_connection(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags_and_vfs(&self.name, flags, vfs::VFS_NAME)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=MEMORY", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("memory") {
            return Err(super::Error::Unavailable(format!(
                "page store refused journal_mode=MEMORY (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA locking_mode=NORMAL; PRAGMA synchronous=OFF;")?;
        Ok(conn)
    }

    /// The oldest commit not yet taken. Call after every transaction (and
    /// until `None`: statements in autocommit mode commit one by one).
    pub fn take_commit(&self) -> Option<Commit> {
        let mut file = self.lock();
        (!file.commits.is_empty()).then(|| file.commits.remove(0))
    }

    /// A copy of the current file (tests, diagnostics, exports).
    pub fn snapshot(&self) -> PageImage {
        self.lock().image.clone()
    }

    fn lock(&self) -> MutexGuard<'_, StoreFile> {
        // A panic while holding the lock leaves the image as consistent as any
        // crash would; keep serving it.
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PageStore {
    fn drop(&mut self) {
        vfs::unregister_file(&self.name);
    }
}

impl PageSource for PageStore {
    fn page_size(&self) -> u32 {
        self.lock().image.page_size()
    }

    fn db_pages(&self) -> u32 {
        self.lock().image.db_pages()
    }

    fn copy_page(&self, pgno: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(self.lock().image.page(pgno).expect("page within the store"));
    }

    fn at_commit_boundary(&self) -> bool {
        let file = self.lock();
        file.commits.is_empty() && !file.writer_active() && file.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::frame::{decode_frame, encode_frame};

    /// A transaction that shrinks the file and grows it back sees zeros
    /// where the log still has the old pages: those pages are stored whole.
    #[test]
    fn a_page_truncated_and_written_again_in_one_transaction_is_stored_whole() {
        let mut image = PageImage::empty();
        for pgno in 1..=4u8 {
            image.write(&[pgno; 512], u64::from(pgno - 1) * 512);
        }
        let mut file = StoreFile {
            before: Before::of(4),
            intact_pages: 4,
            image: image.clone(),
            ..StoreFile::default()
        };
        let mut holder = LockLevel::None;
        assert!(file.lock(1, &mut holder, LockLevel::Reserved).is_ok());
        file.write(&[9; 4], 24).unwrap(); // the change counter: a commit
        file.truncate(2 * 512).unwrap();
        file.truncate(3 * 512).unwrap();
        file.write(&[7; 8], 2 * 512 + 100).unwrap();
        file.unlock(&mut holder, LockLevel::None);
        let commit = file.commits.remove(0);
        let mut bytes = Vec::new();
        encode_frame(1, &commit, &mut bytes);
        image.apply_frame(&decode_frame(&bytes).unwrap()).unwrap();
        assert!(image == file.image, "replay differs from the file");
    }
}
