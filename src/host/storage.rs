//! The storage writer: one storage request in flight at a time, so commits
//! made while a write is in flight share the next one (group commit). What
//! tabs are told and when a stalled log is retried is the engine's
//! [`StorageStatus`]; this runs it.
//!
//! Checkpoints (folding the frame log into segments) copy every changed page,
//! which takes a while on a large replica, so they never start on the way to
//! a reply: once the log is due one, a timer is set, and when it has fired the
//! checkpoint starts the next time the writer has nothing in flight.

use super::interface::{Output, Timer};
use super::tab_message::CallId;
use super::worker_message::{StorageReport, WorkerMessage};
use super::Host;
use crate::engine::durability::StorageStatus;
use crate::engine::live::TabId;
use crate::storage;

pub struct StorageWriter {
    backend: String,
    status: StorageStatus,
    /// The request in flight.
    pub writing: Option<u64>,
    /// `deleteDatabase` calls waiting for the files to go.
    pub deleting: Vec<(TabId, CallId)>,
    seed: u64,
    checkpoint: CheckpointWait,
}

/// Where the writer is on the way to the next checkpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CheckpointWait {
    /// The log is not due one, or none is asked for yet.
    None,
    /// The log is due one; the timer is set.
    Timer,
    /// The timer fired: start once nothing is in flight.
    Ready,
}

/// How long after the log becomes due a checkpoint waits, so that a burst of
/// writes is not slowed by the copy.
const CHECKPOINT_DELAY_MS: u64 = 200;

impl StorageWriter {
    pub fn new(
        backend: String,
        durable_seq: u64,
        error: Option<storage::Error>,
        seed: u64,
    ) -> Self {
        StorageWriter {
            backend,
            status: StorageStatus::new(durable_seq, error, seed),
            writing: None,
            deleting: Vec::new(),
            seed,
            checkpoint: CheckpointWait::None,
        }
    }

    pub fn report(&self) -> StorageReport {
        StorageReport {
            backend: self.backend.clone(),
            durable_seq: self.status.durable_seq,
            error: self
                .status
                .error
                .clone()
                .map(|e| crate::Error::Storage(e).to_data()),
        }
    }

    /// The replica starts over on fresh files (`deleteDatabase`).
    pub fn replaced(&mut self, backend: String) {
        self.backend = backend;
        self.status = StorageStatus::new(0, None, self.seed);
        self.writing = None;
        self.checkpoint = CheckpointWait::None;
    }
}

impl Host {
    /// Starts the next storage request unless one is in flight; once there
    /// is none, tells the tabs about a stall and sets its retry.
    pub(super) fn pump_storage(&mut self) {
        if self.storage.writing.is_some() || !self.storage.deleting.is_empty() {
            return;
        }
        let mut next = self.engine.next_io();
        if next.is_none() && self.engine.storage_stalled().is_none() {
            next = self.checkpoint_when_idle();
        }
        if let Some(request) = next {
            self.storage.writing = Some(request.id);
            self.out.push(Output::StorageIo(request));
            return;
        }
        let idle = self.storage.status.idle(self.engine.storage_stalled());
        if idle.tell {
            self.broadcast_storage();
        }
        if let Some(ms) = idle.retry_in_ms {
            let at = self.at(u64::from(ms));
            self.out.push(Output::SetTimer {
                timer: Timer::StorageRetry,
                at,
            });
        }
    }

    pub(super) fn storage_done(&mut self, id: u64, result: storage::Result<()>) {
        if self.storage.writing != Some(id) {
            return; // for files since deleted
        }
        self.storage.writing = None;
        if !self.storage.deleting.is_empty() {
            // `deleteDatabase` waited for this write.
            self.out.push(Output::DeleteFiles);
        }
        let done = self.engine.io_done(id, result);
        let durable = self.engine.durable_seq();
        if self
            .storage
            .status
            .io_done(durable, self.engine.storage_stalled())
        {
            self.broadcast_storage();
        }
        // Mutations now on disk may be pushed.
        self.sync_handled(done.map(|d| d.sync));
    }

    /// With nothing to write: starts the checkpoint asked for (returning its
    /// first request), or sets the timer if the log has become due one.
    fn checkpoint_when_idle(&mut self) -> Option<storage::IoRequest> {
        match self.storage.checkpoint {
            CheckpointWait::Ready => {
                self.storage.checkpoint = CheckpointWait::None;
                self.engine.checkpoint_if_due();
                self.engine.next_io()
            }
            CheckpointWait::None if self.engine.checkpoint_due() => {
                self.storage.checkpoint = CheckpointWait::Timer;
                let at = self.at(CHECKPOINT_DELAY_MS);
                self.out.push(Output::SetTimer {
                    timer: Timer::Checkpoint,
                    at,
                });
                None
            }
            _ => None,
        }
    }

    pub(super) fn checkpoint_fired(&mut self) {
        if self.storage.checkpoint == CheckpointWait::Timer {
            self.storage.checkpoint = CheckpointWait::Ready;
        }
    }

    pub(super) fn storage_retry(&mut self) {
        self.storage.status.retry_fired();
        self.engine.resume_storage();
    }

    /// The browser deleted the files: the log stops for good, the tabs are
    /// told at once, and mutations held until they were on disk go to the
    /// server from memory.
    pub(super) fn storage_cleared(&mut self, why: String) {
        let released = self.engine.storage_cleared(why);
        if self.storage.status.failed(self.engine.storage_stalled()) {
            self.broadcast_storage();
        }
        self.sync_handled(released);
    }

    fn broadcast_storage(&mut self) {
        let report = self.storage.report();
        self.broadcast(WorkerMessage::Storage(report));
    }
}
