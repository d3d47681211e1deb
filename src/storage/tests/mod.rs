//! Storage tests: the page store under SQLite (`store.rs`), the frame log's
//! state machine (`log.rs`), seeded crash simulations (`crash.rs`) and fuzz
//! tests of the file format's decoders (`fuzz.rs`, inputs in `fuzz_inputs.rs`).

mod crash;
mod fuzz;
mod fuzz_inputs;
mod log;
mod store;

use super::{LogConfig, PageImage, PageStore};
use rusqlite::Connection;

/// SplitMix64: a tiny seeded generator, so every run can be replayed.
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// FNV-1a over the page size and every byte of the file: equal hashes mean
/// byte-identical database files.
pub(super) fn image_hash(image: &PageImage) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(&image.page_size().to_le_bytes());
    feed(&image.db_pages().to_le_bytes());
    for pgno in 1..=image.db_pages() {
        feed(image.page(pgno).expect("page"));
    }
    hash
}

pub(super) fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check runs")
}

/// Opens a store and connection on `image` and checks SQLite agrees it is sound.
pub(super) fn open_checked(image: PageImage) -> (PageStore, Connection) {
    let store = PageStore::new(image).expect("page store");
    let conn = store.open_connection().expect("connection");
    assert_eq!(integrity(&conn), "ok");
    (store, conn)
}

/// Small files and eager checkpoints, so tests exercise many of each.
pub(super) fn small_config() -> LogConfig {
    LogConfig {
        epoch: 0,
        append_limit: 0,
        segment_bytes: 4 * 4096,
        checkpoint_after_bytes: 64 * 1024,
        checkpoint_after_files: 8,
    }
}
