//! Seeded crash simulation. A random workload of SQLite transactions (commits,
//! rollbacks, cache spills, bulk deletes, VACUUMs, page-size changes) runs on
//! the page store; a simulated host performs the log's I/O requests in random
//! order, sometimes failing them (partly applied); checkpoints start at random.
//!
//! Before each I/O step lands, the disk is copied twice as a crash would leave
//! it (the step fully applied but unacknowledged; the step torn: a prefix of
//! the write, optionally followed by junk, or a delete that did not happen) and
//! recovered. Every recovery must yield exactly the state after some committed
//! transaction L with durable ≤ L ≤ appended (byte-identical file), a database
//! whose `PRAGMA integrity_check` is `ok`, and the same rows. Each simulated
//! run also crashes for real a few times and carries on from the recovered
//! state, so stale files from earlier lives are part of what is tested.
//!
//! By default seeds 1, 2, … run until at least 10,000 crash points are
//! checked (38 seeds, 25 s of CPU at the test profile's opt-level 1);
//! `FERRYDB_CRASH_ITERS=n` runs seeds 1..=n instead (more seeds, more
//! points: about 250 a seed), `FERRYDB_CRASH_SEED=s` replays one seed. A
//! failure prints its seed; the end prints the count.

use super::{image_hash, integrity, Rng};
use crate::storage::frame::{decode_frame, encode_frame};
use crate::storage::{
    recover, written_at, Error, FrameLog, IoOp, IoRequest, LogConfig, PageImage, PageStore,
};
use ferrydb_fuzz::thousands;
use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::time::Instant;

const LIFETIMES: usize = 4;

type Disk = BTreeMap<String, Vec<u8>>;

/// Odd seeds write a new file per group commit; even seeds append in place
/// (as a leader tab's worker does) and start each lifetime as a new leader,
/// one fencing epoch up, so files of older epochs are part of what recovers.
fn config(seed: u64, lifetime: u64) -> LogConfig {
    let leader = seed.is_multiple_of(2);
    LogConfig {
        epoch: if leader { lifetime + 1 } else { 0 },
        append_limit: if leader { 10 * 1024 } else { 0 },
        segment_bytes: 3 * 4096,
        checkpoint_after_bytes: 48 * 1024,
        checkpoint_after_files: 6,
    }
}

/// FNV-1a over every row, or 0 before the table exists.
fn row_digest(conn: &Connection) -> u64 {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'kv'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if !exists {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut stmt = conn.prepare("SELECT k, v, n FROM kv ORDER BY k").unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let (k, v, n): (i64, Vec<u8>, i64) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        for b in k.to_le_bytes().iter().chain(&v).chain(&n.to_le_bytes()) {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

struct Simulation {
    seed: u64,
    rng: Rng,
    disk: Disk,
    store: PageStore,
    conn: Connection,
    log: FrameLog,
    /// Requests the host took and has not performed yet.
    issued: Vec<IoRequest>,
    /// (file hash, row digest) after each committed transaction, by seq.
    states: Vec<(u64, u64)>,
    /// The file the appended frames describe: the previous one with each
    /// commit applied. Must equal the live file after every commit.
    shadow: PageImage,
    crash_points: usize,
    /// Lives ended by a crash so far: the fencing epoch of a leader's.
    lifetime: u64,
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let recovered = recover(Vec::new(), config(seed, 0)).unwrap();
        let store = PageStore::new(recovered.image).unwrap();
        let conn = store.open_connection().unwrap();
        let states = vec![(image_hash(&store.snapshot()), 0)];
        let mut sim = Simulation {
            seed,
            rng: Rng::new(seed),
            disk: Disk::new(),
            store,
            conn,
            log: recovered.log,
            issued: Vec::new(),
            states,
            shadow: PageImage::empty(),
            crash_points: 0,
            lifetime: 0,
        };
        sim.start_lifetime();
        sim
    }

    fn start_lifetime(&mut self) {
        self.conn.execute_batch("PRAGMA cache_size=20").unwrap();
        self.conn
            .execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v BLOB NOT NULL, n INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS kv_n ON kv(n);
                 COMMIT;",
            )
            .unwrap();
        self.collect_commit();
    }

    fn run(mut self) -> usize {
        for lifetime in 0..LIFETIMES {
            for _ in 0..100 + self.rng.below(100) {
                self.step();
            }
            if lifetime + 1 < LIFETIMES {
                self.crash_and_restart();
            }
        }
        self.crash_points
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=29 => self.transaction(),
            30..=44 => {
                for _ in 0..1 + self.rng.below(3) {
                    if let Some(request) = self.log.next_io() {
                        self.issued.push(request);
                    }
                }
            }
            45..=84 => {
                if !self.issued.is_empty() {
                    let i = self.rng.below(self.issued.len() as u64) as usize;
                    let request = self.issued.swap_remove(i);
                    self.perform(request);
                }
            }
            85..=89 => self.log.resume(),
            _ => {
                if self.log.checkpoint_due() || self.rng.chance(20) {
                    self.log.start_checkpoint(&self.store);
                }
            }
        }
    }

    /// Takes the commit of the statement or transaction just run (at most one).
    fn collect_commit(&mut self) {
        let Some(commit) = self.store.take_commit() else {
            return;
        };
        assert!(
            self.store.take_commit().is_none(),
            "one transaction, one commit"
        );
        let seq = self.log.append(&commit);
        assert_eq!(self.states.len() as u64, seq, "sequence numbers are dense");
        let mut frame = Vec::new();
        encode_frame(seq, &commit, &mut frame);
        self.shadow
            .apply_frame(&decode_frame(&frame).unwrap())
            .unwrap();
        let hash = image_hash(&self.store.snapshot());
        assert_eq!(
            image_hash(&self.shadow),
            hash,
            "seed {}: frame {seq} does not rebuild the file",
            self.seed
        );
        self.states.push((hash, row_digest(&self.conn)));
    }

    fn upsert(&mut self, k: u64, len: usize) {
        let v = self.rng.bytes(len);
        let n = self.rng.below(50) as i64;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO kv(k, v, n) VALUES (?1, ?2, ?3)",
                params![k as i64, v, n],
            )
            .unwrap();
    }

    fn small_change(&mut self) {
        let k = self.rng.below(150);
        match self.rng.below(4) {
            0 | 1 => {
                let len = 1 + self.rng.below(500) as usize;
                self.upsert(k, len);
            }
            2 => {
                self.conn
                    .execute("DELETE FROM kv WHERE k = ?1", [k as i64])
                    .unwrap();
            }
            _ => {
                let sql = "UPDATE kv SET n = n + 1 WHERE k BETWEEN ?1 AND ?1 + 20";
                self.conn.execute(sql, [k as i64]).unwrap();
            }
        }
    }

    fn transaction(&mut self) {
        match self.rng.below(100) {
            0..=59 => {
                self.conn.execute_batch("BEGIN").unwrap();
                for _ in 0..1 + self.rng.below(5) {
                    self.small_change();
                }
                let commit = self.rng.chance(75);
                self.conn
                    .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
                    .unwrap();
            }
            60..=74 => self.small_change(),
            75..=84 => {
                // Enough rows to spill the 20-page cache into the file.
                self.conn.execute_batch("BEGIN").unwrap();
                for i in 0..40 {
                    let k = 1000 + self.rng.below(60) + i;
                    self.upsert(k, 600);
                }
                let commit = self.rng.chance(70);
                self.conn
                    .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
                    .unwrap();
            }
            85..=91 => {
                let sql = [
                    "DELETE FROM kv WHERE k >= 1000",
                    "DELETE FROM kv WHERE k % 3 = 0",
                ];
                self.conn
                    .execute(sql[self.rng.below(2) as usize], [])
                    .unwrap();
            }
            92..=95 => self.conn.execute_batch("VACUUM").unwrap(),
            96..=97 => {
                let size = [1024, 2048, 4096][self.rng.below(3) as usize];
                self.conn
                    .execute_batch(&format!("PRAGMA page_size={size}; VACUUM;"))
                    .unwrap();
            }
            _ => {
                let failed = self
                    .conn
                    .execute("INSERT INTO kv(k, v, n) VALUES (1, x'00', NULL)", []);
                assert!(failed.is_err());
            }
        }
        self.collect_commit();
    }

    /// The disk if the host crashed while performing `request`: fully applied,
    /// or torn (a prefix of a write, maybe followed by junk; a delete not done).
    fn crashed_disk(&mut self, request: &IoRequest, torn: bool) -> Disk {
        let mut disk = self.disk.clone();
        match &request.op {
            IoOp::Write { name, bytes } if torn => {
                let mut partial = bytes[..self.rng.below(bytes.len() as u64 + 1) as usize].to_vec();
                if self.rng.chance(30) {
                    let junk = 1 + self.rng.below(64) as usize;
                    partial.extend(self.rng.bytes(junk));
                }
                disk.insert(name.clone(), partial);
            }
            IoOp::Write { name, bytes } => {
                disk.insert(name.clone(), bytes.to_vec());
            }
            // The host has no file to append to (a checkpoint deleted it):
            // the request fails and nothing lands.
            IoOp::Append { name, .. } if !disk.contains_key(name) => {}
            IoOp::Append { name, at, bytes } if torn => {
                let mut partial = bytes[..self.rng.below(bytes.len() as u64 + 1) as usize].to_vec();
                if self.rng.chance(30) {
                    let junk = 1 + self.rng.below(64) as usize;
                    partial.extend(self.rng.bytes(junk));
                }
                let file = written_at(&disk[name], *at, &partial).expect("appends at the end");
                disk.insert(name.clone(), file);
            }
            IoOp::Append { name, at, bytes } => {
                let file = written_at(&disk[name], *at, bytes).expect("appends at the end");
                disk.insert(name.clone(), file);
            }
            IoOp::Delete { .. } if torn => {}
            IoOp::Delete { name } => {
                disk.remove(name);
            }
        }
        disk
    }

    fn perform(&mut self, request: IoRequest) {
        for torn in [false, true] {
            let disk = self.crashed_disk(&request, torn);
            self.check_recovery(&disk);
        }
        if self.rng.chance(5) {
            // A failure after which some of the bytes may have landed anyway.
            let torn = self.rng.chance(70);
            self.disk = self.crashed_disk(&request, torn);
            let error = if self.rng.chance(50) {
                Error::Quota("full".into())
            } else {
                Error::Unavailable("flaky".into())
            };
            self.log.io_done(request.id, Err(error));
        } else {
            let missing = match &request.op {
                IoOp::Append { name, .. } => !self.disk.contains_key(name),
                _ => false,
            };
            self.disk = self.crashed_disk(&request, false);
            let result = match missing {
                true => Err(Error::Unavailable("no such file".into())),
                false => Ok(()),
            };
            self.log.io_done(request.id, result);
        }
    }

    /// Recovers from `disk` and checks the result against the committed states.
    fn check_recovery(&mut self, disk: &Disk) -> crate::storage::Recovered {
        let files = disk.iter().map(|(n, b)| (n.clone(), b.clone())).collect();
        let recovered = recover(files, config(self.seed, self.lifetime))
            .unwrap_or_else(|e| panic!("seed {}: recovery failed: {e}", self.seed));
        let last = recovered.report.last_seq;
        let (durable, appended) = (self.log.durable_seq(), self.log.appended_seq());
        assert!(
            durable <= last && last <= appended,
            "seed {}: recovered {last}, durable {durable}, appended {appended}",
            self.seed
        );
        let (hash, digest) = self.states[last as usize];
        assert_eq!(
            image_hash(&recovered.image),
            hash,
            "seed {}: file after {last} differs",
            self.seed
        );
        let store = PageStore::new(recovered.image.clone()).unwrap();
        let conn = store.open_connection().unwrap();
        assert_eq!(
            integrity(&conn),
            "ok",
            "seed {}: integrity after {last}",
            self.seed
        );
        assert_eq!(
            row_digest(&conn),
            digest,
            "seed {}: rows after {last}",
            self.seed
        );
        self.crash_points += 1;
        recovered
    }

    /// Crashes for real (mid-request, maybe) and carries on from what recovers.
    fn crash_and_restart(&mut self) {
        let disk = match self.issued.pop() {
            Some(request) => {
                let torn = self.rng.chance(50);
                self.crashed_disk(&request, torn)
            }
            None => self.disk.clone(),
        };
        self.lifetime += 1;
        let recovered = self.check_recovery(&disk);
        self.disk = disk;
        self.issued.clear();
        self.states.truncate(recovered.report.last_seq as usize + 1);
        self.store = PageStore::new(recovered.image).unwrap();
        self.conn = self.store.open_connection().unwrap();
        self.log = recovered.log;
        self.shadow = self.store.snapshot();
        self.start_lifetime();
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// Crash points every default run checks at least: seeds are added until
/// the simulations have crashed this often.
const MIN_CRASH_POINTS: usize = 10_000;

/// The seed to run after `ran` seeds that found `points` crash points, or
/// `None` to stop. `chosen`: the seeds the environment asked for, if any.
fn next_seed(chosen: &Option<Vec<u64>>, ran: usize, points: usize) -> Option<u64> {
    match chosen {
        Some(seeds) => seeds.get(ran).copied(),
        None => (points < MIN_CRASH_POINTS).then_some(ran as u64 + 1),
    }
}

#[test]
fn recovery_after_any_crash_yields_a_durable_prefix() {
    let chosen: Option<Vec<u64>> = match env_u64("FERRYDB_CRASH_SEED") {
        Some(seed) => Some(vec![seed]),
        None => env_u64("FERRYDB_CRASH_ITERS").map(|n| (1..=n).collect()),
    };
    let started = Instant::now();
    let (mut seeds, mut crash_points) = (0, 0);
    while let Some(seed) = next_seed(&chosen, seeds, crash_points) {
        let run = std::panic::catch_unwind(|| Simulation::new(seed).run());
        match run {
            Ok(points) => crash_points += points,
            Err(panic) => {
                eprintln!("crash simulation failed; replay with FERRYDB_CRASH_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
        seeds += 1;
    }
    eprintln!(
        "crash simulation: {} crash points over {seeds} seed{} in {:.1?}",
        thousands(crash_points),
        if seeds == 1 { "" } else { "s" },
        started.elapsed()
    );
    assert!(
        crash_points >= 100 * seeds,
        "only {crash_points} crash points"
    );
}
