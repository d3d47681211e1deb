//! The frame log's state machine on its own: group commit, durability,
//! failures, checkpoint failures and garbage after recovery.

use super::small_config;
use crate::storage::frame::read_frames;
use crate::storage::{
    open_backend, perform, Commit, Error, FrameLog, IoOp, IoRequest, MemoryBackend, PageImage,
    StorageBackend,
};

fn commit(pgno: u32, fill: u8) -> Commit {
    Commit {
        page_size: 4096,
        db_pages: pgno.max(1),
        pages: vec![(pgno, vec![fill; 4096].into())],
        before: None,
    }
}

fn write_of(request: &IoRequest) -> (&str, &[u8]) {
    match &request.op {
        IoOp::Write { name, bytes } => (name, bytes),
        other => panic!("expected a whole-file write, got {other:?}"),
    }
}

fn quota() -> Error {
    Error::Quota("full".into())
}

#[test]
fn frames_appended_during_a_write_go_out_together_in_the_next_one() {
    let mut log = FrameLog::new(small_config());
    assert_eq!(log.append(&commit(1, 1)), 1);
    let first = log.next_io().expect("a log write");
    assert_eq!(write_of(&first).0, "log.0000000000000001");
    assert_eq!(log.append(&commit(1, 2)), 2);
    assert_eq!(log.append(&commit(2, 3)), 3);
    assert_eq!(log.next_io(), None, "one log write at a time");
    assert_eq!(log.durable_seq(), 0);
    log.io_done(first.id, Ok(()));
    assert_eq!(log.durable_seq(), 1);
    let second = log.next_io().expect("the batch");
    let (name, bytes) = write_of(&second);
    assert_eq!(name, "log.0000000000000002");
    let seqs: Vec<u64> = read_frames(bytes).map(|f| f.seq).collect();
    assert_eq!(seqs, [2, 3]);
    log.io_done(second.id, Ok(()));
    assert_eq!(log.durable_seq(), 3);
    assert!(log.is_idle());
}

#[test]
fn a_failed_write_stalls_until_resumed_then_rewrites_everything_pending() {
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    let request = log.next_io().unwrap();
    log.append(&commit(1, 2));
    log.io_done(request.id, Err(quota()));
    assert_eq!(log.stalled(), Some(&quota()));
    assert_eq!(log.stalled().unwrap().code(), "storage_quota");
    assert_eq!(log.next_io(), None);
    log.resume();
    let retry = log.next_io().unwrap();
    let (name, bytes) = write_of(&retry);
    assert_eq!(name, "log.0000000000000001", "same file, rewritten whole");
    assert_eq!(read_frames(bytes).count(), 2);
    log.io_done(retry.id, Ok(()));
    assert_eq!(log.durable_seq(), 2);
}

#[test]
fn a_failed_segment_write_abandons_the_checkpoint_and_removes_its_files() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(small_config());
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    for pgno in 1..=12 {
        let c = commit(pgno, pgno as u8);
        image.set_page(pgno, &c.pages[0].1);
        log.append(&c);
    }
    log.run_io(&mut backend);
    assert!(log.start_checkpoint(&image));
    assert!(!log.start_checkpoint(&image), "one checkpoint at a time");
    // Three segments of four pages: the first lands, the second fails.
    let a = log.next_io().unwrap();
    let b = log.next_io().unwrap();
    perform(&mut backend, &a).unwrap();
    log.io_done(a.id, Ok(()));
    log.io_done(b.id, Err(quota()));
    assert!(!log.checkpoint_running());
    log.run_io(&mut backend);
    assert!(
        backend.files.keys().all(|n| n.starts_with("log.")),
        "{:?}",
        backend.files.keys().collect::<Vec<_>>()
    );
    assert_eq!(log.checkpoint_seq(), 0);

    assert!(log.start_checkpoint(&image));
    log.run_io(&mut backend);
    assert_eq!(log.checkpoint_seq(), 12);
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(recovered.image, image);
}

#[test]
fn a_failed_manifest_write_keeps_the_segments_it_may_name() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(small_config());
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    for pgno in 1..=3 {
        let c = commit(pgno, 9);
        image.set_page(pgno, &c.pages[0].1);
        log.append(&c);
    }
    log.run_io(&mut backend);
    assert!(log.start_checkpoint(&image));
    let segment = log.next_io().unwrap();
    perform(&mut backend, &segment).unwrap();
    log.io_done(segment.id, Ok(()));
    let manifest = log.next_io().unwrap();
    assert!(write_of(&manifest).0.starts_with("manifest."));
    // The write landed, but the host reported an error anyway.
    perform(&mut backend, &manifest).unwrap();
    log.io_done(manifest.id, Err(Error::Unavailable("lost ack".into())));
    log.run_io(&mut backend);
    assert!(backend.files.keys().any(|n| n.starts_with("seg.")));
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(recovered.report.checkpoint_seq, 3);
    assert_eq!(recovered.image, image);
}

#[test]
fn stale_log_files_are_deleted_before_new_frames_are_written() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    log.run_io(&mut backend);
    // Frame 2 was torn; a frame 3 after the gap must never be replayed.
    let mut torn = Vec::new();
    crate::storage::frame::encode_frame(2, &commit(1, 2), &mut torn);
    torn.truncate(torn.len() - 1);
    backend.files.insert("log.0000000000000002".into(), torn);
    let mut stale = Vec::new();
    crate::storage::frame::encode_frame(3, &commit(1, 3), &mut stale);
    backend.files.insert("log.0000000000000003".into(), stale);

    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(recovered.report.last_seq, 1);
    assert_eq!(recovered.report.garbage_files, 2);
    let mut log = recovered.log;
    assert_eq!(log.append(&commit(1, 4)), 2);
    let deletes: Vec<IoRequest> = std::iter::from_fn(|| log.next_io()).collect();
    assert_eq!(deletes.len(), 2);
    assert!(deletes.iter().all(|r| matches!(r.op, IoOp::Delete { .. })));
    for request in &deletes {
        log.io_done(request.id, Ok(()));
    }
    let write = log
        .next_io()
        .expect("the log write, once the deletes landed");
    assert_eq!(write_of(&write).0, "log.0000000000000002");
}

#[test]
fn a_checkpoint_rewrites_segments_that_shrank_and_grew_back_unwritten() {
    let mut backend = MemoryBackend::default();
    let mut config = small_config();
    config.segment_bytes = 2 * 4096;
    let mut log = FrameLog::new(config.clone());
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    for pgno in 1..=8 {
        let c = commit(pgno, pgno as u8);
        image.set_page(pgno, &c.pages[0].1);
        log.append(&c);
    }
    log.run_io(&mut backend);
    assert!(log.start_checkpoint(&image));
    log.run_io(&mut backend);
    // Truncate to four pages, then grow back to eight writing only page 8:
    // pages 5..7 are zero now although no frame since the checkpoint wrote them.
    image.resize_pages(4);
    log.append(&Commit {
        page_size: 4096,
        db_pages: 4,
        pages: vec![],
        before: None,
    });
    let last = commit(8, 0xEE);
    image.set_page(8, &last.pages[0].1);
    log.append(&last);
    log.run_io(&mut backend);
    assert!(log.start_checkpoint(&image));
    log.run_io(&mut backend);
    let recovered = open_backend(&backend, config).unwrap();
    assert_eq!(recovered.report.frames_replayed, 0);
    assert_eq!(recovered.image, image);
}

/// Found by the fuzz tests: recovery numbers the next checkpoint after the
/// largest generation named on disk, and `manifest.ffffffffffffffff`
/// overflowed that. No checkpoint of ours gets there, so it is not our file.
#[test]
fn a_name_past_the_largest_generation_is_not_ours() {
    let files = vec![
        ("manifest.ffffffffffffffff".to_owned(), vec![1, 2, 3]),
        ("seg.ffffffffffffffff.00000000".to_owned(), vec![4]),
    ];
    let recovered = crate::storage::recover(files, small_config()).unwrap();
    assert_eq!(recovered.report.last_seq, 0);
    assert_eq!(recovered.report.garbage_files, 0);
}

fn cleared() -> Error {
    Error::Cleared("the directory is gone".into())
}

#[test]
fn storage_cleared_under_the_log_stops_it_for_good_and_durability_stops_growing() {
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    let first = log.next_io().unwrap();
    log.io_done(first.id, Ok(()));
    assert_eq!(log.durable_seq(), 1);
    log.append(&commit(1, 2));
    let second = log.next_io().unwrap();
    log.io_done(second.id, Err(cleared()));
    assert!(log.cleared());
    let error = log.stalled().unwrap();
    assert_eq!(error.code(), "storage_cleared");
    assert!(!error.retryable(), "retrying cannot bring the files back");
    // Neither a resume nor new commits write anything on top of the lost files.
    log.resume();
    assert!(log.cleared());
    assert_eq!(log.append(&commit(2, 3)), 3, "commits keep their numbers");
    assert_eq!(log.next_io(), None);
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    image.set_page(1, &[2; 4096]);
    image.set_page(2, &[3; 4096]);
    assert!(!log.start_checkpoint(&image), "no checkpoint either");
    assert_eq!(log.durable_seq(), 1);
}

#[test]
fn any_request_that_finds_the_files_gone_stops_the_log_even_a_quota_stalled_one() {
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    let write = log.next_io().unwrap();
    log.io_done(write.id, Err(quota()));
    assert_eq!(log.stalled(), Some(&quota()));
    log.resume();
    let retry = log.next_io().unwrap();
    log.io_done(retry.id, Err(cleared()));
    assert_eq!(log.stalled(), Some(&cleared()));
    log.resume();
    assert_eq!(log.next_io(), None);
    assert_eq!(log.durable_seq(), 0);
}

#[test]
fn a_log_write_that_lands_after_the_files_were_found_gone_is_not_durable() {
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    let write = log.next_io().unwrap();
    // A request performed concurrently (a delete from recovery's garbage, say) finds them gone first.
    log.queue_delete("log.00000000000000ff".into(), false);
    let delete = log.next_io().unwrap();
    log.io_done(delete.id, Err(cleared()));
    log.io_done(write.id, Ok(()));
    assert_eq!(log.durable_seq(), 0);
    assert!(log.cleared());
}

#[test]
fn told_that_the_files_were_cleared_the_log_stops_before_any_request_fails() {
    let mut log = FrameLog::new(small_config());
    log.append(&commit(1, 1));
    let write = log.next_io().unwrap();
    log.io_done(write.id, Ok(()));
    log.append(&commit(1, 2));
    log.files_cleared("the connection was closed".into());
    assert_eq!(log.stalled().map(Error::code), Some("storage_cleared"));
    assert_eq!(log.next_io(), None, "the queued frame is never written");
    assert_eq!(log.durable_seq(), 1);
}

/// A leader tab's log: fencing epoch `epoch`, appending in place.
fn leader_config(epoch: u64) -> crate::storage::LogConfig {
    crate::storage::LogConfig {
        epoch,
        append_limit: 3 * 4200,
        ..small_config()
    }
}

fn op_of(request: &IoRequest) -> (&'static str, &str, u64) {
    match &request.op {
        IoOp::Write { name, .. } => ("write", name, 0),
        IoOp::Append { name, at, .. } => ("append", name, *at),
        IoOp::Delete { name } => ("delete", name, 0),
    }
}

/// Appends `commits` one group commit each, performing every request.
fn commit_each(
    log: &mut FrameLog,
    backend: &mut MemoryBackend,
    commits: &[Commit],
) -> Vec<(String, String, u64)> {
    let mut ops = Vec::new();
    for c in commits {
        log.append(c);
        while let Some(request) = log.next_io() {
            let (kind, name, at) = op_of(&request);
            ops.push((kind.to_owned(), name.to_owned(), at));
            let result = perform(backend, &request);
            log.io_done(request.id, result);
        }
    }
    ops
}

#[test]
fn with_in_place_writes_group_commits_extend_one_file_up_to_the_limit() {
    let frame = frames(1, 1, 1).len() as u64;
    let config = crate::storage::LogConfig {
        append_limit: 3 * frame,
        ..leader_config(3)
    };
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(config.clone());
    let commits: Vec<Commit> = (1..=4).map(|i| commit(1, i)).collect();
    let ops = commit_each(&mut log, &mut backend, &commits);
    let name = "log.0000000000000001.0000000000000003";
    let expected = [
        ("write", name, 0),
        ("append", name, frame),
        ("append", name, 2 * frame),
        // The file holds the limit's worth: the next group commit starts anew.
        ("write", "log.0000000000000004.0000000000000003", 0),
    ];
    let ops: Vec<(&str, &str, u64)> = ops
        .iter()
        .map(|(k, n, at)| (k.as_str(), n.as_str(), *at))
        .collect();
    assert_eq!(ops, expected);
    assert_eq!(log.durable_seq(), 4);
    let recovered = open_backend(&backend, config).unwrap();
    assert_eq!(recovered.report.last_seq, 4);
    assert_eq!(page_one(&recovered.image), 4);
}

#[test]
fn a_failed_append_is_written_again_as_a_new_file() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(leader_config(1));
    commit_each(&mut log, &mut backend, &[commit(1, 1)]);
    log.append(&commit(1, 2));
    let append = log.next_io().unwrap();
    assert_eq!(op_of(&append).0, "append");
    // Torn: half of the frame landed before the failure.
    let IoOp::Append { name, at, bytes } = &append.op else {
        unreachable!()
    };
    backend.append(name, *at, &bytes[..100]).unwrap();
    log.io_done(append.id, Err(quota()));
    log.resume();
    let retry = log.next_io().unwrap();
    assert_eq!(
        op_of(&retry),
        ("write", "log.0000000000000002.0000000000000001", 0)
    );
    let result = perform(&mut backend, &retry);
    log.io_done(retry.id, result);
    assert_eq!(log.durable_seq(), 2);
    let recovered = open_backend(&backend, leader_config(2)).unwrap();
    assert_eq!(recovered.report.last_seq, 2);
}

#[test]
fn a_checkpoint_stops_appends_to_the_file_it_will_delete() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(leader_config(1));
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    let c = commit(1, 1);
    image.set_page(1, &c.pages[0].1);
    commit_each(&mut log, &mut backend, &[c]);
    assert!(log.start_checkpoint(&image));
    let ops = commit_each(&mut log, &mut backend, &[commit(1, 2)]);
    assert!(
        ops.iter()
            .any(|op| op.0 == "write" && op.1 == "log.0000000000000002.0000000000000001"),
        "frames after the checkpoint go to a new file: {ops:?}"
    );
    assert!(ops.iter().all(|op| op.0 != "append"), "{ops:?}");
    assert!(!backend
        .files
        .keys()
        .any(|n| n == "log.0000000000000001.0000000000000001"));
    assert_eq!(
        open_backend(&backend, leader_config(2))
            .unwrap()
            .report
            .last_seq,
        2
    );
}

/// Found by the crash simulation: a write in flight when a checkpoint
/// started, landing after it, made its file the one to extend again. The
/// next group commit then appended to a file the checkpoint deletes, and
/// its frames were lost with it (or the log panicked when the append landed
/// after the delete).
#[test]
fn a_write_landing_after_a_checkpoint_started_leaves_its_file_closed() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(leader_config(1));
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    commit_each(&mut log, &mut backend, &[commit(1, 1)]);
    let c = commit(1, 2);
    image.set_page(1, &c.pages[0].1);
    log.append(&c);
    let in_flight = log.next_io().unwrap();
    assert_eq!(op_of(&in_flight).0, "append");
    assert!(log.start_checkpoint(&image));
    let result = perform(&mut backend, &in_flight);
    log.io_done(in_flight.id, result);

    log.append(&commit(1, 3));
    let next = log.next_io().unwrap();
    assert_eq!(
        op_of(&next),
        ("write", "log.0000000000000003.0000000000000001", 0),
        "frames after the checkpoint go to a new file"
    );
    // The checkpoint lands (and deletes the old file) before that write does.
    while let Some(request) = log.next_io() {
        let result = perform(&mut backend, &request);
        log.io_done(request.id, result);
    }
    assert_eq!(log.checkpoint_seq(), 2);
    let result = perform(&mut backend, &next);
    log.io_done(next.id, result);
    assert_eq!(log.durable_seq(), 3);
    let recovered = open_backend(&backend, leader_config(2)).unwrap();
    assert_eq!(recovered.report.last_seq, 3);
    assert_eq!(page_one(&recovered.image), 3);
}

/// The frames a leader of `epoch` writes from `first`: one per commit, each
/// page filled with `fill`.
fn frames(first: u64, count: u64, fill: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    for seq in first..first + count {
        crate::storage::frame::encode_frame(seq, &commit(1, fill), &mut bytes);
    }
    bytes
}

fn page_one(image: &PageImage) -> u8 {
    let mut page = Vec::new();
    crate::storage::PageSource::copy_page(image, 1, &mut page);
    page[0]
}

/// A leader frozen with its log file open, and woken after another took
/// over from frame 4, extends its own file in place (the fence is checked
/// per new file): recovery keeps the new leader's frames from 4 on.
#[test]
fn frames_an_old_leader_appends_after_a_takeover_are_not_recovered() {
    let mut backend = MemoryBackend::default();
    let mut old = frames(1, 3, 1);
    old.extend(frames(4, 5, 9)); // 4..=8, written after the takeover
    backend
        .files
        .insert("log.0000000000000001.0000000000000001".into(), old);
    backend.files.insert(
        "log.0000000000000004.0000000000000002".into(),
        frames(4, 2, 2),
    );
    let recovered = open_backend(&backend, leader_config(3)).unwrap();
    assert_eq!(recovered.report.last_seq, 5);
    assert_eq!(page_one(&recovered.image), 2);
}

/// The same after the new leader checkpointed and its log files are gone:
/// the manifest says where its epoch took over.
#[test]
fn a_checkpoint_of_a_newer_epoch_ends_an_older_leaders_frames() {
    let mut backend = MemoryBackend::default();
    let mut log = FrameLog::new(leader_config(2));
    let mut image = PageImage::empty();
    image.set_page_size(4096);
    let commits: Vec<Commit> = (0..5).map(|_| commit(1, 2)).collect();
    image.set_page(1, &commits[0].pages[0].1);
    commit_each(&mut log, &mut backend, &commits);
    assert!(log.start_checkpoint(&image));
    log.run_io(&mut backend);
    assert_eq!(log.checkpoint_seq(), 5);
    assert!(backend.files.keys().all(|n| !n.starts_with("log.")));
    assert!(backend
        .files
        .keys()
        .any(|n| n.starts_with("manifest.") && n.ends_with(".0000000000000002")));
    // An epoch-1 file whose frames go on past the checkpoint.
    backend.files.insert(
        "log.0000000000000001.0000000000000001".into(),
        frames(1, 8, 9),
    );
    let recovered = open_backend(&backend, leader_config(3)).unwrap();
    assert_eq!(recovered.report.last_seq, 5);
    assert_eq!(page_one(&recovered.image), 2);
}

/// A writer without a fence (a SharedWorker's) opening files a leader tab
/// wrote carries on at the leader's epoch: its frames must not be taken for
/// an older leader's.
#[test]
fn an_unfenced_writer_after_a_leader_writes_at_the_leaders_epoch() {
    let mut backend = MemoryBackend::default();
    backend.files.insert(
        "log.0000000000000001.0000000000000005".into(),
        frames(1, 2, 1),
    );
    let mut log = open_backend(&backend, small_config()).unwrap().log;
    let ops = commit_each(&mut log, &mut backend, &[commit(1, 7)]);
    assert_eq!(ops[0].1, "log.0000000000000003.0000000000000005");
    let recovered = open_backend(&backend, small_config()).unwrap();
    assert_eq!(recovered.report.last_seq, 3);
    assert_eq!(page_one(&recovered.image), 7);
}
