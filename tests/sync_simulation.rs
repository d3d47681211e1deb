//! Seeded simulation of several clients syncing with the reference server
//! (its real sync core over its SQLite store, `SqliteServer`) over an
//! unreliable network: requests and replies dropped, duplicated, delayed and so
//! reordered; HTTP 5xx and 401s; pokes lost; clients going offline and
//! restarting from their SQLite file; the server demanding replica resets;
//! mutations the server rejects (another user's rows, ids taken on the
//! server but invisible to the client). After the faults stop and everything
//! settles, every replica must equal what the server holds for its user, every
//! mutation must have run exactly once on the server, no outbox may be left,
//! rejection logs must match the server's, and each shared counter must equal
//! the sum of its accepted increments.
//!
//! `FERRYDB_SIM_STEPS` (steps per seed, default 4000, three seeds) and `FERRYDB_SIM_SEED`
//! (run one seed) tune it; a failure prints the seed to replay.
//!
//! Restarts reopen the client's SQLite file in a temp directory: nothing but
//! what is on disk survives, as after a browser reload.

#[path = "sync_simulation/checks.rs"]
mod checks;
#[path = "sync_simulation/workload.rs"]
mod workload;
#[path = "sync_simulation/world.rs"]
mod world;

use ferrydb::engine::sync::Event;
use world::{Sim, CLIENTS};

/// What happened in one run (printed with `--nocapture`).
#[derive(Default, Debug)]
pub struct Stats {
    pub mutations: u64,
    pub local_failures: u64,
    pub pushes: u64,
    pub pulls: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub http_errors: u64,
    pub restarts: u64,
    pub resets: u64,
    pub rejected: u64,
    pub rebases_checked: u64,
}

/// Prints the seed if the run panics, so the failure can be replayed.
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("simulation failed; replay with FERRYDB_SIM_SEED={}", self.0);
        }
    }
}

fn run(seed: u64, steps: u64) -> Stats {
    let _report = SeedReport(seed);
    let dir = std::env::temp_dir().join(format!("ferrydb-sim-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sim = Sim::new(seed, &dir);
    for c in 0..CLIENTS {
        sim.handle(c, Event::Online);
    }
    for _ in 0..steps {
        sim.step();
    }
    sim.settle();
    sim.check();
    let stats = std::mem::take(&mut sim.stats);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    stats
}

#[test]
fn replicas_converge_under_an_unreliable_network() {
    let steps: u64 = std::env::var("FERRYDB_SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000);
    let seeds: Vec<u64> = match std::env::var("FERRYDB_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3],
    };
    for seed in seeds {
        let started = std::time::Instant::now();
        let stats = run(seed, steps);
        eprintln!(
            "seed {seed}: {steps} steps in {:?}: {stats:?}",
            started.elapsed()
        );
        assert!(
            stats.mutations > steps / 4,
            "seed {seed}: too few mutations ({stats:?})"
        );
    }
}
