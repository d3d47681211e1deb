//! The replica's durable side: the page store SQLite runs on, and the frame log
//! each commit goes to. The engine hands commits over as they happen; the host
//! performs the log's I/O and acknowledges it (see `crate::storage`).

use super::sync::{Backoff, SplitMix64};
use crate::storage::{self, FrameLog, IoRequest, PageStore, Recovered};

pub struct Durability {
    store: PageStore,
    log: FrameLog,
}

impl Durability {
    /// The page store over a recovered image, with the log that carries on from it,
    /// and a connection SQLite runs on.
    pub fn open(recovered: Recovered) -> storage::Result<(Self, rusqlite::Connection)> {
        let store = PageStore::new(recovered.image)?;
        let conn = store.open_connection()?;
        Ok((
            Durability {
                store,
                log: recovered.log,
            },
            conn,
        ))
    }

    /// Moves finished transactions into the log; returns the sequence number of
    /// the last one, if there was any.
    pub fn capture(&mut self) -> Option<u64> {
        let mut last = None;
        while let Some(commit) = self.store.take_commit() {
            last = Some(self.log.append(&commit));
        }
        last
    }

    /// Folds the log into segments if it has grown enough. Copying the pages
    /// takes a while on a large replica, so the host calls this when it is idle,
    /// not on the way to a reply. Returns whether a checkpoint started.
    pub fn checkpoint_due(&self) -> bool {
        self.log.checkpoint_due()
    }

    pub fn checkpoint_if_due(&mut self) -> bool {
        self.log.checkpoint_due() && self.log.start_checkpoint(&self.store)
    }

    pub fn next_io(&mut self) -> Option<IoRequest> {
        self.log.next_io()
    }

    pub fn io_done(&mut self, id: u64, result: storage::Result<()>) {
        self.log.io_done(id, result);
    }

    pub fn durable_seq(&self) -> u64 {
        self.log.durable_seq()
    }

    pub fn appended_seq(&self) -> u64 {
        self.log.appended_seq()
    }

    /// The error that stopped log writes, if they are stopped.
    pub fn stalled(&self) -> Option<&storage::Error> {
        self.log.stalled()
    }

    pub fn resume(&mut self) {
        self.log.resume();
    }

    /// The files were deleted under the replica: the log stops for good.
    pub fn files_cleared(&mut self, why: String) {
        self.log.files_cleared(why);
    }
}

/// What the tabs are told about storage (how far the replica is on disk,
/// and why it is not), and when the host tries a stalled log again. The host
/// reports what happened to the log; this decides what to tell and when to
/// retry, so the browser edge decides nothing.
///
/// - The error ends only when the log is writing again, not with any request
///   that happened to succeed (a delete), so tabs never see it flap.
/// - One retry pending at a time, after the sync client's [`Backoff`]
///   (250 ms doubling to 30 s, with jitter), and none for an error retrying
///   cannot help (`storage_corrupt`, `storage_cleared`).
#[derive(Debug)]
pub struct StorageStatus {
    /// Every commit up to this one is on disk (as last told).
    pub durable_seq: u64,
    /// Why commits are not reaching the disk (as last told).
    pub error: Option<storage::Error>,
    backoff: Backoff,
    rng: SplitMix64,
    retry_pending: bool,
}

/// Retries of a stalled log, before jitter.
pub const STORAGE_RETRY_MS: (u64, u64) = (250, 30_000);

/// The host's writer ran out of work: what to do next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idle {
    /// The status changed: tell the tabs.
    pub tell: bool,
    /// Resume the log and write again after this many ms (a timer).
    pub retry_in_ms: Option<u32>,
}

impl Default for StorageStatus {
    fn default() -> Self {
        StorageStatus::new(0, None, 0)
    }
}

impl StorageStatus {
    /// `seed` drives the retry jitter.
    pub fn new(durable_seq: u64, error: Option<storage::Error>, seed: u64) -> Self {
        StorageStatus {
            durable_seq,
            error,
            backoff: Backoff::new(STORAGE_RETRY_MS.0, STORAGE_RETRY_MS.1),
            rng: SplitMix64::new(seed),
            retry_pending: false,
        }
    }

    /// A request finished; `durable` and `stalled` are the log's now.
    /// Returns whether the tabs must be told.
    pub fn io_done(&mut self, durable: u64, stalled: Option<&storage::Error>) -> bool {
        let grew = durable > self.durable_seq;
        let recovered = self.error.is_some() && stalled.is_none();
        if grew {
            self.durable_seq = durable;
        }
        if recovered {
            self.error = None;
            self.backoff.reset();
        }
        grew || recovered
    }

    /// The writer has nothing more to do; `stalled` is the log's error, if
    /// it is stalled.
    pub fn idle(&mut self, stalled: Option<&storage::Error>) -> Idle {
        let Some(error) = stalled else {
            return Idle::default();
        };
        let tell = self.error.as_ref() != Some(error);
        self.error = Some(error.clone());
        let retry_in_ms = (error.retryable() && !self.retry_pending).then(|| {
            self.retry_pending = true;
            self.backoff.next_delay(&mut self.rng) as u32
        });
        Idle { tell, retry_in_ms }
    }

    /// The retry timer fired: the host resumes the log and writes.
    pub fn retry_fired(&mut self) {
        self.retry_pending = false;
    }

    /// The log failed without a request failing (the browser deleted the
    /// files); `stalled` is its error now. Returns whether to tell the tabs.
    pub fn failed(&mut self, stalled: Option<&storage::Error>) -> bool {
        self.idle(stalled).tell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> storage::Error {
        storage::Error::Quota("full".into())
    }

    /// Whether `ms` is a jittered delay of the backoff step whose cap is `cap`.
    fn within(ms: Option<u32>, cap: u32) -> bool {
        ms.is_some_and(|ms| (cap / 2..=cap).contains(&ms))
    }

    #[test]
    fn a_stall_is_told_once_and_retried_with_one_timer_at_a_time_backing_off_with_jitter() {
        let mut status = StorageStatus::new(3, None, 1);
        let first = status.idle(Some(&quota()));
        assert!(first.tell);
        assert!(within(first.retry_in_ms, 250), "{first:?}");
        // Commits while it is stalled run the writer again: no second timer, nothing new to tell.
        assert_eq!(
            status.idle(Some(&quota())),
            Idle {
                tell: false,
                retry_in_ms: None
            }
        );
        status.retry_fired();
        // The retried write failed again (the log is stalled again): nothing to tell.
        assert!(!status.io_done(3, Some(&quota())));
        let second = status.idle(Some(&quota()));
        assert!(!second.tell);
        assert!(within(second.retry_in_ms, 500), "{second:?}");
        for _ in 0..10 {
            status.retry_fired();
            status.idle(Some(&quota()));
        }
        status.retry_fired();
        assert!(
            within(status.idle(Some(&quota())).retry_in_ms, 30_000),
            "capped"
        );
        assert_eq!(status.error, Some(quota()));
        assert_eq!(status.durable_seq, 3);
    }

    #[test]
    fn retries_of_many_workers_stalled_together_spread_out() {
        let delays: Vec<Option<u32>> = (0..8)
            .map(|seed| {
                StorageStatus::new(0, None, seed)
                    .idle(Some(&quota()))
                    .retry_in_ms
            })
            .collect();
        assert!(delays.iter().all(|&d| within(d, 250)));
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 4, "jitter spreads retries: {delays:?}");
    }

    #[test]
    fn the_error_ends_when_the_log_writes_again_not_with_any_success() {
        let mut status = StorageStatus::new(3, None, 1);
        status.idle(Some(&quota()));
        status.retry_fired();
        // A delete succeeded, but the log is still stalled: the error stands.
        assert!(!status.io_done(3, Some(&quota())));
        assert_eq!(status.error, Some(quota()));
        // The log wrote the stalled frames: durable grows, the error ends.
        assert!(status.io_done(5, None));
        assert_eq!((status.durable_seq, status.error.clone()), (5, None));
        // The next stall starts its backoff afresh.
        assert!(within(status.idle(Some(&quota())).retry_in_ms, 250));
    }

    #[test]
    fn errors_retrying_cannot_help_are_told_and_never_retried() {
        let mut status = StorageStatus::new(7, None, 1);
        let cleared = storage::Error::Cleared("gone".into());
        assert!(status.failed(Some(&cleared)));
        assert_eq!(
            status.idle(Some(&cleared)),
            Idle {
                tell: false,
                retry_in_ms: None
            }
        );
        // Cleared while a quota retry was pending: told, and no new retry.
        let mut status = StorageStatus::new(7, None, 1);
        status.idle(Some(&quota()));
        let told = status.idle(Some(&cleared));
        assert_eq!(
            told,
            Idle {
                tell: true,
                retry_in_ms: None
            }
        );
        assert_eq!(status.error, Some(cleared));
    }

    #[test]
    fn a_healthy_writer_tells_only_growth() {
        let mut status = StorageStatus::new(0, None, 1);
        assert!(status.io_done(1, None));
        assert!(!status.io_done(1, None), "a delete or segment write");
        assert_eq!(status.idle(None), Idle::default());
    }
}
