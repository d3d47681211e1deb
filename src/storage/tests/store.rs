//! The page store under real SQLite: commit capture, rollback, round trips
//! through a backend, checkpoints.

use super::{image_hash, integrity, open_checked, small_config};
use crate::storage::{
    open_backend, Commit, FileName, FrameLog, LogConfig, MemoryBackend, PageImage, PageStore,
};
use rusqlite::Connection;

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

fn commits(store: &PageStore) -> Vec<Commit> {
    std::iter::from_fn(|| store.take_commit()).collect()
}

/// Appends every waiting commit and makes it durable.
fn persist(store: &PageStore, log: &mut FrameLog, backend: &mut MemoryBackend) {
    for commit in commits(store) {
        log.append(&commit);
    }
    log.run_io(backend);
    assert_eq!(log.durable_seq(), log.appended_seq());
}

#[test]
fn open_write_close_reopen_round_trip() {
    let mut backend = MemoryBackend::default();
    {
        let recovered = open_backend(&backend, LogConfig::default()).unwrap();
        assert_eq!(recovered.report.last_seq, 0);
        let mut log = recovered.log;
        let store = PageStore::new(recovered.image).unwrap();
        let conn = store.open_connection().unwrap();
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
        conn.execute("INSERT INTO t(name) VALUES ('ada'), ('grace')", [])
            .unwrap();
        persist(&store, &mut log, &mut backend);
        assert_eq!(log.durable_seq(), 2);
    }
    let recovered = open_backend(&backend, LogConfig::default()).unwrap();
    assert_eq!(recovered.report.last_seq, 2);
    let (store, conn) = open_checked(recovered.image);
    let names: Vec<String> = conn
        .prepare("SELECT name FROM t ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["ada", "grace"]);
    // The reopened database keeps numbering where it left off.
    let mut log = recovered.log;
    conn.execute("INSERT INTO t(name) VALUES ('edsger')", [])
        .unwrap();
    let commit = store.take_commit().expect("a commit");
    assert_eq!(log.append(&commit), 3);
}

#[test]
fn ten_thousand_rows_in_one_transaction_make_one_frame() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(LogConfig::default());
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    persist(&store, &mut log, &mut backend);
    // A small page cache makes SQLite spill pages into the file mid-transaction.
    conn.execute_batch("PRAGMA cache_size=50").unwrap();
    conn.execute_batch(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO t(body) SELECT printf('%0200d', i) FROM n;
         COMMIT;",
    )
    .unwrap();
    let frames = commits(&store);
    assert_eq!(frames.len(), 1);
    assert!(
        frames[0].pages.len() > 400,
        "{} pages",
        frames[0].pages.len()
    );
    assert_eq!(frames[0].db_pages, store.snapshot().db_pages());
    assert_eq!(log.append(&frames[0]), 2);
    log.run_io(&mut backend);
    assert_eq!(log.durable_seq(), 2);

    let recovered = open_backend(&backend, LogConfig::default()).unwrap();
    assert_eq!(recovered.report.frames_replayed, 2);
    assert_eq!(image_hash(&recovered.image), image_hash(&store.snapshot()));
    let (_store, conn) = open_checked(recovered.image);
    assert_eq!(count(&conn, "SELECT count(*) FROM t"), 10000);
}

#[test]
fn rolled_back_transactions_make_no_frame_even_after_spilling() {
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB UNIQUE)")
        .unwrap();
    conn.execute("INSERT INTO t(body) VALUES (x'01')", [])
        .unwrap();
    assert_eq!(commits(&store).len(), 2);
    let before = store.snapshot();

    conn.execute_batch("PRAGMA cache_size=10").unwrap();
    conn.execute_batch(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO t(body) SELECT randomblob(300) FROM n;",
    )
    .unwrap();
    assert!(
        store.snapshot().db_pages() > before.db_pages(),
        "pages spilled into the file"
    );
    conn.execute_batch("ROLLBACK").unwrap();
    // A failing autocommit statement rolls back too.
    assert!(conn
        .execute("INSERT INTO t(body) VALUES (x'01')", [])
        .is_err());

    assert!(commits(&store).is_empty());
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(count(&conn, "SELECT count(*) FROM t"), 1);

    // Free-list pages the rollback left changed ride along with the next
    // commit, so the frames still rebuild the file byte for byte.
    conn.execute("INSERT INTO t(body) VALUES (x'02')", [])
        .unwrap();
    let next = commits(&store);
    assert_eq!(next.len(), 1);
    let mut rebuilt = before;
    let mut frame = Vec::new();
    crate::storage::frame::encode_frame(3, &next[0], &mut frame);
    rebuilt
        .apply_frame(&crate::storage::frame::decode_frame(&frame).unwrap())
        .unwrap();
    assert_eq!(image_hash(&rebuilt), image_hash(&store.snapshot()));
}

#[test]
fn each_autocommit_statement_is_its_own_commit() {
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
        .unwrap();
    assert_eq!(commits(&store).len(), 3);
    // Reads and empty write transactions commit nothing.
    conn.execute_batch("SELECT * FROM t; BEGIN IMMEDIATE; COMMIT;")
        .unwrap();
    assert!(commits(&store).is_empty());
}

#[test]
fn a_reader_and_a_writer_share_one_store() {
    let store = PageStore::new(PageImage::empty()).unwrap();
    let writer = store.open_connection().unwrap();
    let reader = store.open_connection().unwrap();
    writer.execute_batch("CREATE TABLE t(x)").unwrap();
    writer
        .execute_batch("BEGIN; INSERT INTO t VALUES (1);")
        .unwrap();
    assert_eq!(
        count(&reader, "SELECT count(*) FROM t"),
        0,
        "uncommitted rows are invisible"
    );
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM t"), 1);
    assert_eq!(commits(&store).len(), 2);
}

#[test]
fn clock_and_randomness_work_through_the_vfs() {
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    let year: i64 = conn
        .query_row("SELECT CAST(strftime('%Y', 'now') AS INTEGER)", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(year >= 2024, "{year}");
    let blob: Vec<u8> = conn
        .query_row("SELECT randomblob(16)", [], |row| row.get(0))
        .unwrap();
    assert_ne!(blob, [0; 16]);
}

#[test]
fn vacuum_to_a_new_page_size_round_trips() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(small_config());
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO t(body) SELECT randomblob(200) FROM n;",
    )
    .unwrap();
    persist(&store, &mut log, &mut backend);
    assert!(log.start_checkpoint(&store));
    log.run_io(&mut backend);
    conn.execute_batch("PRAGMA page_size=1024; VACUUM;")
        .unwrap();
    let vacuum = commits(&store);
    assert_eq!(vacuum.len(), 1);
    assert_eq!(vacuum[0].page_size, 1024);
    assert_eq!(vacuum[0].pages.len() as u32, vacuum[0].db_pages);
    log.append(&vacuum[0]);
    log.run_io(&mut backend);
    let expected = image_hash(&store.snapshot());

    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(image_hash(&recovered.image), expected);
    let mut log = recovered.log;
    log.run_io(&mut backend);
    let (store, conn) = open_checked(recovered.image);
    assert_eq!(count(&conn, "SELECT count(*) FROM t"), 300);
    assert!(log.start_checkpoint(&store));
    log.run_io(&mut backend);
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(image_hash(&recovered.image), expected);
}

#[test]
fn checkpoint_then_recover_equals_the_state_before_it() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(small_config());
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)")
        .unwrap();
    for i in 0..40 {
        conn.execute(
            "INSERT INTO t(body) VALUES (randomblob(?1))",
            [100 + i * 97],
        )
        .unwrap();
    }
    persist(&store, &mut log, &mut backend);
    assert!(log.checkpoint_due());
    let before = image_hash(&store.snapshot());
    assert!(log.start_checkpoint(&store));
    log.run_io(&mut backend);
    assert_eq!(log.checkpoint_seq(), 41);
    let names: Vec<FileName> = backend
        .files
        .keys()
        .filter_map(|n| FileName::parse(n))
        .collect();
    assert!(
        names.iter().all(|n| !matches!(n, FileName::Log { .. })),
        "logs folded: {names:?}"
    );
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(recovered.report.checkpoint_seq, 41);
    assert_eq!(recovered.report.frames_replayed, 0);
    assert_eq!(image_hash(&recovered.image), before);

    // A second checkpoint rewrites only the segments that changed.
    let segments_before = backend
        .files
        .keys()
        .filter(|n| n.starts_with("seg."))
        .count();
    conn.execute("UPDATE t SET body = x'00' WHERE id = 1", [])
        .unwrap();
    persist(&store, &mut log, &mut backend);
    assert!(log.start_checkpoint(&store));
    let mut written = 0;
    while let Some(request) = log.next_io() {
        if let crate::storage::IoOp::Write { name, .. } = &request.op {
            written += usize::from(name.starts_with("seg."));
        }
        let result = crate::storage::perform(&mut backend, &request);
        log.io_done(request.id, result);
    }
    assert!(
        written < segments_before,
        "{written} of {segments_before} segments rewritten"
    );
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(image_hash(&recovered.image), image_hash(&store.snapshot()));
    let (_store, conn) = open_checked(recovered.image);
    assert_eq!(count(&conn, "SELECT length(body) FROM t WHERE id = 1"), 1);
}

/// Recovery refuses frames that claim more than `MAX_FILE_BYTES`, so the
/// page store must never write them: SQLite gets `SQLITE_FULL` instead.
#[test]
fn the_file_cannot_grow_past_the_largest_recovery_accepts() {
    use crate::storage::frame::MAX_FILE_BYTES;
    use crate::storage::page_store::{StoreFile, TooLarge};
    let mut file = StoreFile::default();
    assert_eq!(file.write(&[1; 512], 0), Ok(()));
    assert_eq!(file.write(&[1; 512], MAX_FILE_BYTES - 511), Err(TooLarge));
    assert_eq!(file.truncate(MAX_FILE_BYTES + 1), Err(TooLarge));
    assert_eq!(file.len(), 512, "nothing changed");
}

/// A small write's frame holds the bytes it changed, not its pages, and
/// the frames replayed in order give the live file byte for byte, through
/// bulk loads (stored whole), rollbacks that leave pages dirty, a shrinking
/// `VACUUM` and a transaction that shrinks the file and grows it again.
#[test]
fn small_writes_store_what_changed_and_replay_to_the_same_file() {
    let store = PageStore::new(PageImage::empty()).unwrap();
    let conn = store.open_connection().unwrap();
    let mut replayed = PageImage::empty();
    let mut seq = 0;
    // Each frame's size, and what its pages would take whole.
    let mut replay = |store: &PageStore| -> Vec<(usize, usize)> {
        let mut sizes = Vec::new();
        for commit in commits(store) {
            seq += 1;
            let mut bytes = Vec::new();
            crate::storage::frame::encode_frame(seq, &commit, &mut bytes);
            let frame = crate::storage::frame::decode_frame(&bytes).unwrap();
            replayed.apply_frame(&frame).unwrap();
            sizes.push((bytes.len(), frame.page_count() * 4096));
        }
        assert!(
            replayed == store.snapshot(),
            "replay differs after frame {seq}"
        );
        sizes
    };
    conn.execute_batch(
        "CREATE TABLE t(id TEXT PRIMARY KEY, body TEXT); CREATE INDEX t_body ON t(body);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO t SELECT 'id-' || (i * 7919 % 3001), hex(randomblob(40)) FROM n;",
    )
    .unwrap();
    replay(&store);
    let (mut stored, mut whole) = (0, 0);
    for i in 0..40 {
        conn.execute(
            "INSERT OR REPLACE INTO t VALUES (?1, hex(randomblob(40)))",
            [format!("id-{}", i * 37 % 3001)],
        )
        .unwrap();
        for (len, pages) in replay(&store) {
            stored += len;
            whole += pages;
        }
        if i % 10 == 0 {
            conn.execute_batch("BEGIN; DELETE FROM t WHERE rowid % 3 = 0; ROLLBACK;")
                .unwrap();
        }
    }
    // A page split rewrites much of a page; most writes change a few rows'
    // bytes of each of their pages.
    assert!(
        stored * 8 < whole,
        "{stored} bytes stored for {whole} of pages"
    );
    conn.execute_batch("DELETE FROM t WHERE rowid % 2 = 0; VACUUM;")
        .unwrap();
    replay(&store);
    conn.execute_batch(
        "BEGIN; DELETE FROM t; VACUUM; ROLLBACK;
         BEGIN; DROP TABLE t; CREATE TABLE u(x); INSERT INTO u VALUES (randomblob(9000)); COMMIT;",
    )
    .unwrap_or(());
    replay(&store);
    conn.execute("INSERT INTO u VALUES (1)", []).ok();
    replay(&store);
}
