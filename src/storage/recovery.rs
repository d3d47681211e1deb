//! Recovery: rebuild the database image from the files a backend holds, and
//! the frame log that carries on from it.
//!
//! 1. The newest manifest that decodes is the base; its segments must all be
//!    present and match their CRCs (they were durable before it was written,
//!    so anything else is corruption, not a crash).
//! 2. Frames after the manifest's sequence number are replayed in order from
//!    the log files, ending at the first number no file holds validly (a torn
//!    or missing write). A file's frames stop where a leader of a higher
//!    fencing epoch took over: at the first frame of any file, or after the
//!    manifest, that a higher epoch wrote. A new leader writes from where
//!    its recovery ended, so a frozen old leader that wakes and extends its
//!    own file in place (the fence is checked per new file, not per append)
//!    adds nothing recovery keeps.
//! 3. Every other file of ours is garbage: deleted by the new log, and log
//!    files that could collide with new frames are deleted before any new
//!    frame is written.

use super::error::{Error, Result};
use super::frame::{read_frames, FrameRef};
use super::image::PageImage;
use super::log::{insert_log_file, FrameLog, LogConfig, LogFile, ResumePoint};
use super::manifest::{FileName, Manifest};
use super::page_set::PageSet;

/// The outcome of opening a database's files.
#[derive(Debug)]
pub struct Recovered {
    /// The database file to open a [`super::PageStore`] on.
    pub image: PageImage,
    /// The log, ready to take the next commit (and to delete garbage first).
    pub log: FrameLog,
    pub report: RecoveryReport,
}

/// What recovery found, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sequence number of the last transaction recovered (0: none).
    pub last_seq: u64,
    /// Sequence number the checkpoint covered (0: no checkpoint).
    pub checkpoint_seq: u64,
    pub frames_replayed: u64,
    /// Files of ours that recovery did not use and scheduled for deletion.
    pub garbage_files: usize,
}

/// A log file, named for the first frame it should hold and its writer's epoch.
struct LogRun {
    name: String,
    bytes: Vec<u8>,
    first: u64,
    epoch: u64,
}

/// The contiguous run of valid frames at the start of `run`'s file below
/// `end`, empty if not even its first frame is there. Decoded once and kept:
/// checking the checksums is most of what recovery costs.
fn valid_frames(run: &LogRun, end: u64) -> Vec<FrameRef<'_>> {
    let mut frames = read_frames(&run.bytes)
        .take_while(|frame| frame.seq < end)
        .peekable();
    if frames.peek().is_some_and(|frame| frame.seq == run.first) {
        frames.collect()
    } else {
        Vec::new()
    }
}

/// A manifest or segment file, by its key (generation, or generation and
/// index): what recovery keeps of it until it knows whether it is needed.
struct KeyedFile<K> {
    key: K,
    name: String,
    bytes: Vec<u8>,
}

/// Adds `file`, replacing one with the same key (two names can parse to the
/// same key, e.g. in upper and lower case hex: the one listed last counts).
/// A linear scan, not a map: there are few such files, and each map
/// instantiation costs the wasm several KB.
fn insert_keyed<K: PartialEq>(files: &mut Vec<KeyedFile<K>>, file: KeyedFile<K>) {
    match files.iter_mut().find(|f| f.key == file.key) {
        Some(same) => *same = file,
        None => files.push(file),
    }
}

/// Rebuilds the image and log from every file the backend listed (files that
/// are not ours are ignored). Consumes the bytes as it goes, so peak memory
/// stays near the size of the files.
pub fn recover(files: Vec<(String, Vec<u8>)>, mut config: LogConfig) -> Result<Recovered> {
    let mut manifests = Vec::new();
    let mut segments = Vec::new();
    let mut logs = Vec::new();
    let mut max_gen = 0;
    // The writer carries on at the highest epoch it finds at least: an
    // unfenced writer (epoch 0) after a leader's, or a leader whose epoch
    // file was lost, must not write frames older files would supersede.
    config.epoch = files
        .iter()
        .filter_map(|(name, _)| match FileName::parse(name)? {
            FileName::Log { epoch, .. } | FileName::Manifest { epoch, .. } => Some(epoch),
            FileName::Segment { .. } => None,
        })
        .fold(config.epoch, u64::max);
    for (name, bytes) in files {
        match FileName::parse(&name) {
            Some(FileName::Manifest { gen, epoch }) => {
                max_gen = max_gen.max(gen);
                let key = (gen, epoch);
                insert_keyed(&mut manifests, KeyedFile { key, name, bytes });
            }
            Some(FileName::Segment { gen, index }) => {
                max_gen = max_gen.max(gen);
                let key = (gen, index);
                insert_keyed(&mut segments, KeyedFile { key, name, bytes });
            }
            Some(FileName::Log { first, epoch }) => logs.push(LogRun {
                name,
                bytes,
                first,
                epoch,
            }),
            None => {}
        }
    }
    let mut garbage: Vec<(String, bool)> = Vec::new();

    // 1. The newest valid manifest and its segments.
    let mut manifest = None;
    // Newest first, by taking the newest left each time: there are one or two
    // manifests (more only after crashes), and no sort then reaches the wasm.
    while let Some(newest) = (0..manifests.len()).max_by_key(|&i| manifests[i].key) {
        let file = manifests.swap_remove(newest);
        match (&manifest, Manifest::decode(&file.bytes)) {
            (None, Some(decoded)) => {
                manifest = Some(Manifest {
                    epoch: file.key.1,
                    ..decoded
                })
            }
            _ => garbage.push((file.name, false)),
        }
    }
    let mut image = PageImage::empty();
    if let Some(manifest) = &manifest {
        // The image grows segment by segment, as each is found whole: a
        // damaged manifest cannot make it allocate pages no file holds.
        image.set_page_size(manifest.page_size);
        for (index, segment) in manifest.segments.iter().enumerate() {
            let key = (segment.gen, index as u32);
            let name = manifest.segment_name(index as u32);
            let found = segments
                .iter()
                .position(|file| file.key == key)
                .ok_or_else(|| Error::Corrupt(format!("checkpoint segment {name} is missing")))?;
            let bytes = segments.swap_remove(found).bytes;
            if bytes.len() != segment.len as usize
                || crate::storage::crc32::hash(&bytes) != segment.crc
            {
                return Err(Error::Corrupt(format!(
                    "checkpoint segment {name} is damaged"
                )));
            }
            let pages = manifest.segment_pages(index as u32);
            let size = manifest.page_size as usize;
            for (pgno, page) in pages.zip(bytes.chunks_exact(size)) {
                image.set_page(pgno, page);
            }
        }
    }
    garbage.extend(segments.into_iter().map(|file| (file.name, false)));

    // 2. Replay the chain of frames after the checkpoint.
    let checkpoint_seq = manifest.as_ref().map_or(0, |m| m.seq);
    let mut dirty_pages = PageSet::default();
    let mut low_water_pages = manifest.as_ref().map_or(0, |m| m.db_pages);
    let mut log_files = Vec::new();
    // Where a higher epoch took over from each file's writer.
    let takeover = |epoch: u64| {
        let manifest = manifest
            .as_ref()
            .filter(|m| m.epoch > epoch)
            .map(|m| m.seq + 1);
        logs.iter()
            .filter(|run| run.epoch > epoch)
            .map(|run| run.first)
            .chain(manifest)
            .min()
            .unwrap_or(u64::MAX)
    };
    let runs: Vec<Vec<FrameRef<'_>>> = logs
        .iter()
        .map(|run| valid_frames(run, takeover(run.epoch)))
        .collect();
    let mut used = vec![false; logs.len()];
    let mut expected = checkpoint_seq + 1;
    let mut frames_replayed = 0;
    loop {
        // Of the files holding frame `expected`, the one written last.
        let holder = (0..logs.len())
            .filter(|&i| {
                logs[i].first <= expected && runs[i].last().is_some_and(|f| f.seq >= expected)
            })
            .max_by_key(|&i| logs[i].first);
        let Some(i) = holder else { break };
        used[i] = true;
        let run = &logs[i];
        let from = expected;
        for frame in runs[i].iter().skip_while(|f| f.seq < from) {
            image.apply_frame(frame)?;
            frame.runs(&mut |pgno, _, _| dirty_pages.extend([pgno]));
            low_water_pages = low_water_pages.min(frame.db_pages);
            frames_replayed += 1;
            expected = frame.seq + 1;
        }
        let file = LogFile {
            first: run.first,
            last: expected - 1,
            bytes: run.bytes.len() as u64,
            epoch: run.epoch,
        };
        insert_log_file(&mut log_files, file);
    }
    let last_seq = expected - 1;
    for (run, used) in logs.into_iter().zip(used) {
        if !used {
            // A stale file at or past the next sequence number could be
            // mistaken for new frames later: it must go before any new write.
            garbage.push((run.name, run.first > last_seq));
        }
    }

    let report = RecoveryReport {
        last_seq,
        checkpoint_seq,
        frames_replayed,
        garbage_files: garbage.len(),
    };
    let point = ResumePoint {
        last_seq,
        manifest,
        next_gen: max_gen + 1,
        log_files,
        dirty_pages,
        low_water_pages,
        garbage,
    };
    Ok(Recovered {
        image,
        log: FrameLog::resume_from(config, point),
        report,
    })
}
