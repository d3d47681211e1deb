//! WAL checkpoints off the store thread.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past
//! 1,000 frames, on the connection that committed: here the one store
//! thread, so every few pages of an initial sync (whose view rows fill the
//! WAL) one request waited 8–10 ms for pages to be copied into the
//! database file. Instead, a commit that leaves the WAL that long wakes a
//! checkpointer thread with its own connection, which copies them while
//! the store thread goes on: in WAL mode a `PASSIVE` checkpoint never blocks
//! the writer, nor the writer it. The writer starts the WAL from its
//! beginning again at its next transaction after a checkpoint that copied
//! every frame.
//!
//! The WAL stays bounded: should it reach [`CHECKPOINT_HERE`] frames anyway
//! (the checkpointer stopped, or cannot keep up), the committing connection
//! checkpoints itself, as SQLite would by default.

use crate::store::{Result, StoreError};
use rusqlite::{wal::CheckpointMode, Connection};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

/// WAL frames after a commit from which the checkpointer is woken:
/// SQLite's own default for checkpointing.
pub const WAKE_CHECKPOINTER: i32 = 1_000;

/// WAL frames after a commit from which the committing connection
/// checkpoints itself (16 MB at SQLite's default page size): the
/// checkpointer copies while the store writes, but the WAL starts over
/// only after a checkpoint that copied everything, so one long burst of
/// writes ends up here.
pub const CHECKPOINT_HERE: i32 = 4_000;

/// Moves `conn`'s WAL checkpoints (its database at `path`, in WAL mode) to
/// a thread of their own, which ends when `conn` is closed.
pub fn checkpoint_off_thread(conn: &mut Connection, path: &Path) -> Result<()> {
    let unavailable =
        |e: rusqlite::Error| StoreError::Unavailable(format!("cannot open {path:?}: {e}"));
    let own = Connection::open(path).map_err(unavailable)?;
    // As durable as the store's commits: the checkpoint syncs the WAL
    // before copying it and the database file after.
    own.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(unavailable)?;
    // Held through each checkpoint: two at once would fail one of them
    // (`SQLITE_BUSY`), and the one in place must not fail.
    let checkpointing = Arc::new(Mutex::new(()));
    let in_place = checkpointing.clone();
    // One wake-up waiting is enough: the checkpoint copies every frame
    // committed by the time it runs.
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("ferrydb-sqlite-checkpoint".into())
        .spawn(move || {
            // Ends when the hook, and with it `wake`, is dropped.
            while woken.recv().is_ok() {
                let _one = checkpointing.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = own.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the checkpointer: {e}")))?;
    // Replaces SQLite's automatic checkpoint, which is a WAL hook too. The
    // commit has happened when the hook runs: an error returned would make
    // it look failed, so none is.
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames| {
        if frames >= CHECKPOINT_HERE {
            let _one = in_place.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = wal.checkpoint() {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        } else if frames >= WAKE_CHECKPOINTER {
            let _ = wake.try_send(());
        }
        Ok(())
    }))
    .map_err(|e| StoreError::Internal(format!("cannot watch the WAL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A fresh database file in the system's temporary directory.
    fn database(name: &str) -> (Connection, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ferrydb-checkpoint-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (x TEXT);",
        )
        .unwrap();
        checkpoint_off_thread(&mut conn, &path).unwrap();
        (conn, path)
    }

    /// Commits 100 rows of 1 KB: about 25 WAL frames.
    fn commit_rows(conn: &mut Connection) {
        let row = "x".repeat(1000);
        let tx = conn.transaction().unwrap();
        for _ in 0..100 {
            tx.execute("INSERT INTO t VALUES (?1)", [&row]).unwrap();
        }
        tx.commit().unwrap();
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    /// Past the wake-up mark and far below the in-place one, with nothing
    /// committed after, only the checkpointer can move the rows into the
    /// database file, and it does.
    #[test]
    fn the_checkpointer_copies_the_wal_into_the_database_file() {
        let (mut conn, path) = database("copies");
        let empty = file_len(&path);
        // ~1,250 frames: past WAKE_CHECKPOINTER, far below CHECKPOINT_HERE.
        for _ in 0..50 {
            commit_rows(&mut conn);
        }
        // 5,000 rows of 1 KB: at least 5 MB in the file once copied.
        let deadline = Instant::now() + Duration::from_secs(60);
        while file_len(&path) < empty + 5_000_000 {
            assert!(
                Instant::now() < deadline,
                "the checkpointer copied nothing in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5_000);
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// However the checkpointer keeps up, the WAL never grows much past the
    /// in-place mark: ~50,000 frames are written through it.
    #[test]
    fn the_wal_stays_bounded_while_the_store_writes_on() {
        let (mut conn, path) = database("bounded");
        let wal = path.with_extension("db-wal");
        // The WAL file: a 32-byte header, then frames of 24 bytes + a page.
        let bound = 32 + (CHECKPOINT_HERE as u64 + 100) * (24 + 4096);
        for _ in 0..2_000 {
            commit_rows(&mut conn);
            assert!(
                file_len(&wal) < bound,
                "the WAL outgrew its bound: {} bytes",
                file_len(&wal)
            );
        }
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 200_000);
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
