//! Seeded simulation of several clients syncing with the reference server
//! (its real sync core over its SQLite store, `SqliteServer`) over an
//! unreliable network: requests and replies dropped, duplicated, delayed and so
//! reordered; HTTP 5xx and 401s; pokes lost; clients going offline and
//! restarting from their SQLite file; the server demanding replica resets;
//! mutations the server rejects (another user's rows, ids taken on the
//! server but invisible to the client). After the faults stop and everything
//! settles, every replica must equal what the server holds for its user, every
//! mutation must have run exactly once on the server, no outbox may be left,
//! and rejection logs must match the server's.
//!
//! Two worlds run it. Protocol v1 (`Mode::Rules`, the sample app): each
//! shared counter must also equal the sum of its accepted increments.
//! Protocol v2 (`Mode::Subscriptions`, lists shared through `members`):
//! users share lists and revoke them, keep writing to lists just taken from
//! them, and each replica changes its subscriptions; an oracle computes from
//! the server's tables what each replica must hold (exactly the rows its
//! subscriptions select), checks every response as the server sends it
//! (nothing of a row the subscriptions do not select, `del` only of keys the
//! group held), and predicts the writes the server must reject `forbidden`.
//!
//! `FERRYDB_SIM_STEPS` (steps per seed, default 4000, three seeds) and `FERRYDB_SIM_SEED`
//! (run one seed) tune it; a failure prints the seed to replay.
//!
//! Restarts reopen the client's SQLite file in a temp directory: nothing but
//! what is on disk survives, as after a browser reload.

#[path = "sync_simulation/checks.rs"]
mod checks;
#[path = "sync_simulation/oracle.rs"]
mod oracle;
#[path = "sync_simulation/sharing.rs"]
mod sharing;
#[path = "sync_simulation/sharing_checks.rs"]
mod sharing_checks;
#[path = "sync_simulation/workload.rs"]
mod workload;
#[path = "sync_simulation/world.rs"]
mod world;

use ferrydb::engine::sync::Event;
use world::{Mode, Sim};

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
    /// Sharing world: subscription sets changed, memberships added and
    /// removed (accepted by the server), `del`s sent (and of those, of a key
    /// the group was never sent), pull responses checked, `forbidden`
    /// rejections predicted (and of those, writes to a target the user had
    /// seen and can no longer read).
    pub subscription_changes: u64,
    pub shares: u64,
    pub revocations: u64,
    pub dels: u64,
    pub dels_of_unsent: u64,
    pub responses_checked: u64,
    pub forbidden_predicted: u64,
    pub forbidden_after_revocation: u64,
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

fn run(mode: Mode, seed: u64, steps: u64) -> Stats {
    let _report = SeedReport(seed);
    let dir = std::env::temp_dir().join(format!(
        "ferrydb-sim-{mode:?}-{}-{seed}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sim = Sim::new(mode, seed, &dir);
    for c in 0..mode.clients() {
        if mode == Mode::Subscriptions {
            sim.subscribe_on_open(c);
        }
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

/// Runs `mode`'s world for each seed, the steps `FERRYDB_SIM_STEPS` says;
/// returns each seed's steps and stats.
fn run_seeds(mode: Mode) -> Vec<(u64, u64, Stats)> {
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
    seeds
        .into_iter()
        .map(|seed| {
            let started = std::time::Instant::now();
            let stats = run(mode, seed, steps);
            eprintln!(
                "{mode:?} seed {seed}: {steps} steps in {:?}: {stats:?}",
                started.elapsed()
            );
            assert!(
                stats.mutations > steps / 4,
                "seed {seed}: too few mutations ({stats:?})"
            );
            (seed, steps, stats)
        })
        .collect()
}

#[test]
fn replicas_converge_under_an_unreliable_network() {
    run_seeds(Mode::Rules);
}

#[test]
fn subscribed_replicas_converge_to_exactly_what_their_subscriptions_select() {
    for (seed, steps, stats) in run_seeds(Mode::Subscriptions) {
        // Every path was taken (a short run, `FERRYDB_SIM_STEPS`, may miss some).
        if steps >= 2_000 {
            let taken = [
                stats.subscription_changes,
                stats.shares,
                stats.revocations,
                stats.dels,
                stats.forbidden_after_revocation,
            ];
            assert!(
                taken.iter().all(|&n| n > 0),
                "seed {seed}: a path was never taken ({stats:?})"
            );
        }
    }
}
