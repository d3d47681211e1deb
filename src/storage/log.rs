//! The frame log: a sans-IO state machine that turns commits into files.
//!
//! The engine [`append`](FrameLog::append)s each commit and gets its sequence
//! number. The host asks [`next_io`](FrameLog::next_io) for work, performs each
//! [`IoRequest`] asynchronously (OPFS, IndexedDB, memory) in any order and
//! reports back with [`io_done`](FrameLog::io_done). The log never does I/O
//! itself and never waits.
//!
//! - **Group commit.** At most one log write is in flight. Frames appended
//!   meanwhile are batched into the next write, a new file named after its
//!   first frame. A write is whole-file: creating or replacing `name` with
//!   exactly `bytes`. A host that can write a file in place (OPFS sync
//!   access handles) sets [`LogConfig::append_limit`]: then a group commit
//!   extends the file the previous one wrote ([`IoOp::Append`]) until it
//!   holds that many bytes, which costs a fraction of a new file. A torn
//!   append is what recovery already stops at: a frame that fails its CRC.
//! - **Durability.** [`durable_seq`](FrameLog::durable_seq) is the highest N
//!   with every frame ≤ N on storage; a transaction's `durable` promise
//!   resolves once it reaches the transaction's sequence number.
//! - **Failure.** A failed log write stalls the log with the error (nothing
//!   later can become durable before it); its frames stay queued and are
//!   rewritten whole after [`resume`](FrameLog::resume).
//! - **Cleared storage.** Any request failing with [`Error::Cleared`] (the
//!   files were deleted under us) stops the log for good: no more I/O, no
//!   resume, and `durable_seq` never grows again, since frames written now
//!   would sit on disk without the files they build on.
//! - **Checkpoint.** See `checkpoint.rs`.

use super::error::Error;
use super::frame::{encode_frame, Commit};
use super::manifest::{FileName, Manifest};
use super::page_set::PageSet;
use std::sync::Arc;

/// Who writes, how files are written, their sizes and checkpoint frequency.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The writer's fencing epoch (`storage::fence`), named in every log and
    /// manifest file it writes; 0 for a writer that is never fenced.
    pub epoch: u64,
    /// 0: every group commit writes a new log file. Otherwise the host can
    /// write in place, and a group commit appends to the log file this log
    /// last wrote while that file holds fewer bytes than this.
    pub append_limit: u64,
    /// Target size of one segment file, in bytes (rounded down to whole pages,
    /// at least one). Smaller segments make checkpoints after scattered small
    /// writes cheaper; larger ones mean fewer files to open.
    pub segment_bytes: u32,
    /// [`FrameLog::checkpoint_due`] once durable log files hold this many bytes...
    pub checkpoint_after_bytes: u64,
    /// ...or once there are this many of them (each costs a read on open).
    pub checkpoint_after_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            epoch: 0,
            append_limit: 0,
            segment_bytes: 1 << 20,
            checkpoint_after_bytes: 16 << 20,
            checkpoint_after_files: 256,
        }
    }
}

/// One piece of I/O for the host to perform, then acknowledge with its `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub id: u64,
    pub op: IoOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Create or replace the file `name` with exactly `bytes`.
    Write { name: String, bytes: Arc<[u8]> },
    /// Write `bytes` at offset `at` of the log file `name`, which this log
    /// wrote (with `Write` or `Append`) and has `at` bytes; only with
    /// [`LogConfig::append_limit`].
    Append {
        name: String,
        at: u64,
        bytes: Arc<[u8]>,
    },
    /// Remove the file `name`; a file already gone counts as success.
    Delete { name: String },
}

/// What an issued request was for, by id.
#[derive(Debug)]
pub(super) enum InFlight {
    /// Frames `first..=last`; the bytes are kept to rewrite them after a
    /// failure. `file`: the first frame of the file they extend, if appended.
    LogWrite {
        first: u64,
        last: u64,
        bytes: Arc<[u8]>,
        file: Option<u64>,
    },
    SegmentWrite {
        name: String,
    },
    ManifestWrite,
    /// A segment of an abandoned checkpoint: deleted once it has landed.
    OrphanSegment {
        name: String,
    },
    /// `blocking`: a stale log file that must be gone before frames are
    /// written again (its name or sequence numbers could be reused).
    Delete {
        name: String,
        blocking: bool,
    },
}

/// A durable log file, holding frames `first..=last`, written by the
/// leader of fencing epoch `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LogFile {
    pub first: u64,
    pub last: u64,
    pub bytes: u64,
    pub epoch: u64,
}

impl LogFile {
    pub fn name(&self) -> String {
        FileName::Log {
            first: self.first,
            epoch: self.epoch,
        }
        .to_string()
    }
}

/// Adds `file` to `files` (ascending by `first`), replacing one with the same
/// `first`. A Vec, not a `BTreeMap`: each B-tree instantiation costs the wasm
/// ~5 KB, and new files almost always go at the end.
pub(super) fn insert_log_file(files: &mut Vec<LogFile>, file: LogFile) {
    match files.binary_search_by_key(&file.first, |f| f.first) {
        Ok(i) => files[i] = file,
        Err(i) => files.insert(i, file),
    }
}

pub struct FrameLog {
    pub(super) config: LogConfig,
    /// The number the next appended commit gets.
    pub(super) next_seq: u64,
    pub(super) durable_seq: u64,
    /// Encoded frames not yet handed to the host, starting at `pending_first`.
    pending: Vec<u8>,
    pending_first: u64,
    log_write_in_flight: bool,
    stalled: Option<Error>,
    pub(super) last_error: Option<Error>,
    /// Durable log files, ascending by first frame.
    pub(super) log_files: Vec<LogFile>,
    /// The first frame of the log file the next group commit may extend:
    /// the last one this log wrote, until a checkpoint starts or a write
    /// fails (never a file recovery found: its tail may be torn).
    pub(super) append_to: Option<u64>,
    pub(super) log_bytes: u64,
    blocking_deletes: usize,
    /// Blocking deletes that failed, issued again on [`FrameLog::resume`].
    failed_deletes: Vec<String>,
    /// Requests to issue, oldest first: a `Vec` used as a queue (it holds a
    /// few; a `VecDeque` would be one more instantiation in the wasm).
    pub(super) ready: Vec<IoRequest>,
    /// Issued requests by id, ascending (ids only grow). A Vec, not a
    /// `HashMap`: it holds a few hundred entries at most, and each map
    /// instantiation costs the wasm several KB.
    pub(super) in_flight: Vec<(u64, InFlight)>,
    next_id: u64,
    /// The durable checkpoint, if any.
    pub(super) manifest: Option<Manifest>,
    pub(super) next_gen: u64,
    /// Pages changed by frames the current manifest does not cover.
    pub(super) dirty_pages: PageSet,
    /// The smallest database size since the manifest: pages above it may have
    /// been dropped and re-grown (zeroed) without being written.
    pub(super) low_water_pages: u32,
    pub(super) checkpoint: Option<super::checkpoint::CheckpointRun>,
}

/// Everything recovery learned that the log needs to carry on.
pub(super) struct ResumePoint {
    pub last_seq: u64,
    pub manifest: Option<Manifest>,
    pub next_gen: u64,
    /// Ascending by first frame.
    pub log_files: Vec<LogFile>,
    pub dirty_pages: PageSet,
    pub low_water_pages: u32,
    /// Unneeded files; `true` = must be deleted before the next log write.
    pub garbage: Vec<(String, bool)>,
}

impl FrameLog {
    /// The log of a new, empty database.
    pub fn new(config: LogConfig) -> Self {
        Self::resume_from(
            config,
            ResumePoint {
                last_seq: 0,
                manifest: None,
                next_gen: 1,
                log_files: Vec::new(),
                dirty_pages: PageSet::default(),
                low_water_pages: 0,
                garbage: Vec::new(),
            },
        )
    }

    pub(super) fn resume_from(config: LogConfig, point: ResumePoint) -> Self {
        let mut log = FrameLog {
            config,
            next_seq: point.last_seq + 1,
            durable_seq: point.last_seq,
            pending: Vec::new(),
            pending_first: 0,
            log_write_in_flight: false,
            stalled: None,
            last_error: None,
            log_bytes: point.log_files.iter().map(|file| file.bytes).sum(),
            log_files: point.log_files,
            append_to: None,
            blocking_deletes: 0,
            failed_deletes: Vec::new(),
            ready: Vec::new(),
            in_flight: Vec::new(),
            next_id: 1,
            manifest: point.manifest,
            next_gen: point.next_gen,
            dirty_pages: point.dirty_pages,
            low_water_pages: point.low_water_pages,
            checkpoint: None,
        };
        for (name, blocking) in point.garbage {
            log.queue_delete(name, blocking);
        }
        log
    }

    /// Adds a commit to the log; returns its sequence number.
    pub fn append(&mut self, commit: &Commit) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.cleared() {
            return seq;
        }
        if self.pending.is_empty() {
            self.pending_first = seq;
        }
        encode_frame(seq, commit, &mut self.pending);
        self.dirty_pages
            .extend(commit.pages.iter().map(|&(pgno, _)| pgno));
        self.low_water_pages = self.low_water_pages.min(commit.db_pages);
        seq
    }

    /// The sequence number of the last appended commit (0 if none ever).
    pub fn appended_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Every frame up to and including this number is on storage.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The error that stopped log writes, until [`FrameLog::resume`].
    pub fn stalled(&self) -> Option<&Error> {
        self.stalled.as_ref()
    }

    /// The most recent failure reported by the host (log or checkpoint).
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// The files were deleted under the log ([`Error::Cleared`]): it has
    /// stopped for good.
    pub fn cleared(&self) -> bool {
        matches!(self.stalled, Some(Error::Cleared(_)))
    }

    /// The host learned that the files were deleted under the log (the
    /// browser said so, or a request failed with [`Error::Cleared`]): stop
    /// for good.
    pub fn files_cleared(&mut self, why: String) {
        if !self.cleared() {
            self.stalled = Some(Error::Cleared(why));
            // Never to be written: do not hold them (nor later frames) in memory.
            self.pending = Vec::new();
        }
    }

    /// Lets log writes (and failed blocking deletes) be issued again after a
    /// failure. The host calls it after backing off, or when space was freed.
    /// Does nothing once the storage was [`cleared`](FrameLog::cleared).
    pub fn resume(&mut self) {
        if self.cleared() {
            return;
        }
        self.stalled = None;
        for name in std::mem::take(&mut self.failed_deletes) {
            self.blocking_deletes -= 1;
            self.queue_delete(name, true);
        }
    }

    /// True when nothing is queued or in flight: everything appended is durable
    /// and no checkpoint is running.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty() && self.ready.is_empty()
    }

    /// The next request for the host, or `None` until something changes (an
    /// append, an acknowledgement, a checkpoint start, a resume).
    pub fn next_io(&mut self) -> Option<IoRequest> {
        if self.cleared() {
            return None;
        }
        if !self.log_write_in_flight
            && self.stalled.is_none()
            && self.blocking_deletes == 0
            && !self.pending.is_empty()
        {
            let first = self.pending_first;
            let last = self.next_seq - 1;
            let bytes: Arc<[u8]> = std::mem::take(&mut self.pending).into();
            let extend = self.appendable();
            let op = match extend {
                Some(file) => IoOp::Append {
                    name: file.name(),
                    at: file.bytes,
                    bytes: bytes.clone(),
                },
                None => IoOp::Write {
                    name: FileName::Log {
                        first,
                        epoch: self.config.epoch,
                    }
                    .to_string(),
                    bytes: bytes.clone(),
                },
            };
            let id = self.issue(InFlight::LogWrite {
                first,
                last,
                bytes,
                file: extend.map(|file| file.first),
            });
            self.log_write_in_flight = true;
            return Some(IoRequest { id, op });
        }
        (!self.ready.is_empty()).then(|| self.ready.remove(0))
    }

    /// The host finished request `id`. An error means the operation may have
    /// happened partly or not at all.
    pub fn io_done(&mut self, id: u64, result: Result<(), Error>) {
        let Some(what) = self.take_in_flight(id) else {
            return;
        };
        if let Err(error) = &result {
            self.last_error = Some(error.clone());
            if let Error::Cleared(why) = error {
                self.files_cleared(why.clone());
            }
        }
        match what {
            InFlight::LogWrite {
                first,
                last,
                bytes,
                file,
            } => {
                self.log_write_in_flight = false;
                let covered = self.manifest.as_ref().is_some_and(|m| m.seq >= last);
                match result {
                    Ok(()) => self.log_write_landed(first, last, bytes.len() as u64, file),
                    Err(_) if self.cleared() => {}
                    // A durable checkpoint covers these frames already (it
                    // deleted the file this appended to): nothing to rewrite.
                    Err(_) if covered => {}
                    Err(error) => {
                        // The file may end in a torn frame now: write anew.
                        self.append_to = None;
                        let mut queued = bytes.to_vec();
                        queued.append(&mut self.pending);
                        self.pending = queued;
                        self.pending_first = first;
                        self.stalled = Some(error);
                    }
                }
            }
            InFlight::Delete { name, blocking } => {
                if blocking {
                    match result {
                        Ok(()) => self.blocking_deletes -= 1,
                        Err(error) => {
                            self.failed_deletes.push(name);
                            if !self.cleared() {
                                self.stalled = Some(error);
                            }
                        }
                    }
                }
            }
            InFlight::OrphanSegment { name } => self.queue_delete(name, false),
            InFlight::SegmentWrite { name } => self.segment_done(name, result),
            InFlight::ManifestWrite => self.manifest_done(result),
        }
    }

    /// The log file the next group commit appends to, if any.
    fn appendable(&self) -> Option<LogFile> {
        let first = self.append_to?;
        let i = self
            .log_files
            .binary_search_by_key(&first, |f| f.first)
            .ok()?;
        let file = self.log_files[i];
        (file.bytes < self.config.append_limit).then_some(file)
    }

    /// Frames `first..=last` (`len` bytes) are on storage: a new file, or
    /// the end of the file starting at frame `extended`.
    fn log_write_landed(&mut self, first: u64, last: u64, len: u64, extended: Option<u64>) {
        if self.cleared() {
            // Landed after another request found the files gone: nothing under it.
            return;
        }
        self.durable_seq = self.durable_seq.max(last);
        if self.manifest.as_ref().is_some_and(|m| m.seq >= last) {
            // A checkpoint finished while this write was in flight (and
            // deleted the file already if this extended it).
            if extended.is_none() {
                let epoch = self.config.epoch;
                self.queue_delete(FileName::Log { first, epoch }.to_string(), false);
            }
            return;
        }
        let file_first = match extended {
            None => {
                let epoch = self.config.epoch;
                let file = LogFile {
                    first,
                    last,
                    bytes: len,
                    epoch,
                };
                insert_log_file(&mut self.log_files, file);
                first
            }
            Some(file_first) => {
                // Only a checkpoint removes a file, and one that starts stops
                // appends (`append_to`) after the one in flight, which it covers.
                let i = self
                    .log_files
                    .binary_search_by_key(&file_first, |f| f.first)
                    .expect("appended to a log file still kept");
                let file = &mut self.log_files[i];
                file.last = last;
                file.bytes += len;
                file_first
            }
        };
        self.log_bytes += len;
        // A running checkpoint that covers these frames deletes this file
        // once it lands: frames appended to it then would go with it.
        if self.config.append_limit > 0 && !self.checkpoint_folds(last) {
            self.append_to = Some(file_first);
        }
    }

    pub(super) fn issue(&mut self, what: InFlight) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push((id, what));
        id
    }

    /// Removes and returns what request `id` was for, if it is in flight.
    pub(super) fn take_in_flight(&mut self, id: u64) -> Option<InFlight> {
        let i = self
            .in_flight
            .binary_search_by_key(&id, |&(issued, _)| issued)
            .ok()?;
        Some(self.in_flight.remove(i).1)
    }

    pub(super) fn queue_delete(&mut self, name: String, blocking: bool) {
        if blocking {
            self.blocking_deletes += 1;
        }
        let id = self.issue(InFlight::Delete {
            name: name.clone(),
            blocking,
        });
        self.ready.push(IoRequest {
            id,
            op: IoOp::Delete { name },
        });
    }
}

impl std::fmt::Debug for FrameLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameLog")
            .field("appended_seq", &self.appended_seq())
            .field("durable_seq", &self.durable_seq)
            .field("pending_bytes", &self.pending.len())
            .field("log_files", &self.log_files.len())
            .field("checkpoint_seq", &self.manifest.as_ref().map(|m| m.seq))
            .field("stalled", &self.stalled)
            .finish_non_exhaustive()
    }
}
