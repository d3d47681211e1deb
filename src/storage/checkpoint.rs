//! Checkpoint: fold the log into segment files, so opening reads a bounded
//! number of files and the log can be deleted.
//!
//! A checkpoint of generation G covering frames ≤ N runs in three steps, each
//! starting only after the previous one is acknowledged:
//! 1. write `seg.G.*` for every segment whose pages changed since the last
//!    checkpoint (unchanged segments stay in their older files);
//! 2. write `manifest.G`, naming the file of every segment;
//! 3. delete the previous manifest, segment files it no longer names, and log
//!    files holding only frames ≤ N.
//!
//! New names are never reused, and nothing is deleted before the manifest
//! that replaces it is durable, so a crash anywhere leaves either the old or
//! the new checkpoint complete, plus files recovery deletes as garbage.

use super::error::Error;
use super::frame::valid_page_size;
use super::image::PageSource;
use super::log::{FrameLog, InFlight, IoOp, IoRequest};
use super::manifest::{FileName, Manifest, SegmentRef};
use super::page_set::PageSet;

/// The checkpoint in progress.
#[derive(Debug)]
pub(super) struct CheckpointRun {
    manifest: Manifest,
    /// Dirty state handed over to this run, given back if it fails.
    taken_dirty: PageSet,
    taken_low_water: u32,
    segments_waiting: usize,
    segments_written: Vec<String>,
}

impl FrameLog {
    /// True when the log has grown enough that a checkpoint should run.
    pub fn checkpoint_due(&self) -> bool {
        self.checkpoint.is_none()
            && (self.log_bytes >= self.config.checkpoint_after_bytes
                || self.log_files.len() >= self.config.checkpoint_after_files)
    }

    pub fn checkpoint_running(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// Whether the running checkpoint covers frame `seq`: once it lands it
    /// deletes the log files that end at or before it.
    pub(super) fn checkpoint_folds(&self, seq: u64) -> bool {
        self.checkpoint
            .as_ref()
            .is_some_and(|run| run.manifest.seq >= seq)
    }

    /// The sequence number the durable checkpoint covers (0 for none).
    pub fn checkpoint_seq(&self) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.seq)
    }

    /// Starts a checkpoint of `source`, which must hold exactly the state after
    /// the last appended commit (the page store between transactions, with
    /// every commit taken and appended). Copies the changed segments right
    /// away, so `source` may change as soon as this returns. Returns false if
    /// a checkpoint is running, `source` is mid-transaction, or there is
    /// nothing new to fold.
    pub fn start_checkpoint(&mut self, source: &dyn PageSource) -> bool {
        let seq = self.appended_seq();
        let page_size = source.page_size();
        if self.checkpoint.is_some()
            || self.cleared()
            || !source.at_commit_boundary()
            || seq == self.checkpoint_seq()
            || !valid_page_size(page_size)
        {
            return false;
        }
        let db_pages = source.db_pages();
        let pages_per_segment = (self.config.segment_bytes / page_size).max(1);
        let gen = self.next_gen;
        self.next_gen += 1;
        let old = self
            .manifest
            .as_ref()
            .filter(|m| m.page_size == page_size && m.pages_per_segment == pages_per_segment);
        let mut manifest = Manifest {
            gen,
            epoch: self.config.epoch,
            seq,
            page_size,
            db_pages,
            pages_per_segment,
            segments: Vec::new(),
        };
        let mut writes = Vec::new();
        for index in 0..Manifest::segment_count(db_pages, pages_per_segment) {
            let first = index * pages_per_segment + 1;
            let last = (first + pages_per_segment - 1).min(db_pages);
            let len = (last - first + 1) * page_size;
            let unchanged = last <= self.low_water_pages && !self.dirty_pages.any_in(first, last);
            let reusable = old
                .and_then(|m| m.segments.get(index as usize))
                .filter(|segment| unchanged && segment.len == len);
            if let Some(segment) = reusable {
                manifest.segments.push(*segment);
                continue;
            }
            let mut bytes = Vec::with_capacity(len as usize);
            for pgno in first..=last {
                source.copy_page(pgno, &mut bytes);
            }
            let crc = crate::storage::crc32::hash(&bytes);
            manifest.segments.push(SegmentRef { gen, len, crc });
            writes.push((FileName::Segment { gen, index }.to_string(), bytes));
        }
        // Frames after `seq` go to a new log file: the ones up to it are
        // deleted once the manifest is durable.
        self.append_to = None;
        self.checkpoint = Some(CheckpointRun {
            manifest,
            taken_dirty: std::mem::take(&mut self.dirty_pages),
            taken_low_water: std::mem::replace(&mut self.low_water_pages, db_pages),
            segments_waiting: writes.len(),
            segments_written: Vec::new(),
        });
        for (name, bytes) in writes {
            let id = self.issue(InFlight::SegmentWrite { name: name.clone() });
            let bytes = bytes.into();
            self.ready.push(IoRequest {
                id,
                op: IoOp::Write { name, bytes },
            });
        }
        self.write_manifest_when_ready();
        true
    }

    fn write_manifest_when_ready(&mut self) {
        let Some(run) = &self.checkpoint else { return };
        if run.segments_waiting > 0 {
            return;
        }
        let name = run.manifest.name();
        let bytes = run.manifest.encode().into();
        let id = self.issue(InFlight::ManifestWrite);
        self.ready.push(IoRequest {
            id,
            op: IoOp::Write { name, bytes },
        });
    }

    pub(super) fn segment_done(&mut self, name: String, result: Result<(), Error>) {
        match (result, &mut self.checkpoint) {
            (Ok(()), Some(run)) => {
                run.segments_waiting -= 1;
                run.segments_written.push(name);
                self.write_manifest_when_ready();
            }
            (Err(_), Some(_)) => {
                let written = self.abandon_checkpoint();
                // No manifest names these files, so deleting them is safe.
                self.queue_delete(name, false);
                for name in written {
                    self.queue_delete(name, false);
                }
            }
            (_, None) => self.queue_delete(name, false),
        }
    }

    pub(super) fn manifest_done(&mut self, result: Result<(), Error>) {
        if result.is_err() || self.cleared() {
            // The manifest may have landed whole despite the error, so its
            // segments must stay; recovery deletes whichever side lost.
            self.abandon_checkpoint();
            return;
        }
        let Some(run) = self.checkpoint.take() else {
            return;
        };
        let new = run.manifest;
        self.durable_seq = self.durable_seq.max(new.seq);
        if let Some(old) = self.manifest.take() {
            self.queue_delete(old.name(), false);
            for (index, segment) in old.segments.iter().enumerate() {
                let kept = new
                    .segments
                    .get(index)
                    .is_some_and(|kept| kept.gen == segment.gen);
                if !kept {
                    self.queue_delete(old.segment_name(index as u32), false);
                }
            }
        }
        let mut folded = Vec::new();
        self.log_files.retain(|file| {
            let fold = file.last <= new.seq;
            if fold {
                folded.push(*file);
            }
            !fold
        });
        for file in folded {
            self.log_bytes -= file.bytes;
            self.queue_delete(file.name(), false);
        }
        self.manifest = Some(new);
    }

    /// Ends the running checkpoint unsuccessfully: its dirty state returns to
    /// the log, its unissued writes are dropped and its issued ones become
    /// orphans. Returns the segment files already written.
    fn abandon_checkpoint(&mut self) -> Vec<String> {
        let Some(run) = self.checkpoint.take() else {
            return Vec::new();
        };
        self.dirty_pages.extend(run.taken_dirty.into_sorted());
        self.low_water_pages = self.low_water_pages.min(run.taken_low_water);
        let in_flight = &mut self.in_flight;
        self.ready.retain(|request| {
            let Ok(i) = in_flight.binary_search_by_key(&request.id, |&(id, _)| id) else {
                return true;
            };
            let unissued = matches!(in_flight[i].1, InFlight::SegmentWrite { .. });
            if unissued {
                in_flight.remove(i);
            }
            !unissued
        });
        for (_, what) in &mut self.in_flight {
            if let InFlight::SegmentWrite { name } = what {
                *what = InFlight::OrphanSegment {
                    name: std::mem::take(name),
                };
            }
        }
        run.segments_written
    }
}
