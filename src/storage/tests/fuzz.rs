//! Fuzz tests of the storage format's decoders (see `tests/fuzz`, the
//! `ferrydb-fuzz` crate): frames, manifests, file names, and recovery from a
//! whole set of files. The inputs (`fuzz_inputs.rs`) are real files of a
//! small database damaged at random, half of them re-sealed (their
//! checksums made right again) so the damage gets past the CRCs to the
//! checks behind them. Whatever the files hold, decoding returns a value or
//! a typed error, never panics, and what recovery accepts can be opened,
//! written and recovered again.
//!
//! Each target prints its number of cases; `FERRYDB_FUZZ_CASES=n` runs n of
//! each, `FERRYDB_FUZZ_SEED=s` replays the case a failure names.

use super::fuzz_inputs::{
    damaged, damaged_disk, edge_frame, edge_manifest, edge_name, reseal_frames, reseal_manifest,
    sample_frames, sample_manifests, Disk,
};
use super::small_config;
use crate::storage::frame::{decode_frame, encode_frame, read_frames};
use crate::storage::manifest::Manifest;
use crate::storage::{
    open_backend, recover, Commit, Error, FileName, MemoryBackend, PageImage, PageStore,
};
use ferrydb_fuzz::{bytes, run, thousands, Rng};
use std::cell::Cell;

#[test]
fn frames() {
    let seeds = sample_frames();
    let generate = |rng: &mut Rng| match rng.below(4) {
        0 => edge_frame(rng),
        _ => damaged(rng, &seeds, reseal_frames),
    };
    run("storage decode_frame", 5_000, generate, |input| {
        let bytes = &input.0;
        if let Ok(frame) = decode_frame(bytes) {
            assert!(frame.encoded_len <= bytes.len());
            // A valid frame applies to a file of its size without panicking.
            if frame.db_pages <= 64 {
                let mut image = PageImage::empty();
                image.set_page_size(frame.page_size);
                image.apply_frame(&frame).unwrap();
            }
        }
        let mut expected = None;
        for frame in read_frames(bytes) {
            assert!(expected.is_none_or(|seq| seq == frame.seq));
            expected = frame.seq.checked_add(1);
        }
    });
}

#[test]
fn manifests() {
    let seeds = sample_manifests();
    let generate = |rng: &mut Rng| match rng.below(4) {
        0 => edge_manifest(rng),
        _ => damaged(rng, &seeds, |bytes| reseal_manifest(bytes, None)),
    };
    run("storage Manifest::decode", 5_000, generate, |input| {
        if let Some(manifest) = Manifest::decode(&input.0) {
            assert_eq!(manifest.encode(), input.0, "re-encoded differently");
            for index in 0..manifest.segments.len() as u32 {
                let pages = manifest.segment_pages(index);
                assert!(pages.start() <= pages.end() && *pages.end() <= manifest.db_pages);
                FileName::parse(&manifest.segment_name(index)).unwrap();
            }
        }
    });
}

#[test]
fn file_names() {
    let generate = |rng: &mut Rng| {
        let name = edge_name(rng);
        let damaged = match rng.below(3) {
            0 => name.into_bytes(),
            1 => bytes::mutate(rng, name.as_bytes(), &[b"seg.", b"log.", b"manifest."]),
            _ => name.to_uppercase().into_bytes(),
        };
        String::from_utf8_lossy(&damaged).into_owned()
    };
    run("storage FileName::parse", 5_000, generate, |name| {
        if let Some(parsed) = FileName::parse(name) {
            assert_eq!(FileName::parse(&parsed.to_string()), Some(parsed));
        }
    });
}

/// Opens SQLite on a recovered image and reads everything: a damaged image
/// may be refused, but not crash the page store.
fn read_all(image: PageImage) {
    let Ok(store) = PageStore::new(image) else {
        return;
    };
    let Ok(conn) = store.open_connection() else {
        return;
    };
    let _ = conn.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0));
    let _ = conn.query_row("SELECT count(*), sum(length(v)) FROM kv", [], |row| {
        row.get::<_, i64>(0)
    });
}

/// The largest file the frames and manifests on `disk` claim, in bytes.
fn claimed_bytes(disk: &Disk) -> u64 {
    let claims = disk.0.iter().flat_map(|(name, bytes)| {
        let size = |page_size: u32, pages: u32| u64::from(page_size) * u64::from(pages);
        let claims: Vec<u64> = match FileName::parse(name) {
            Some(FileName::Log { .. }) => read_frames(bytes)
                .map(|f| size(f.page_size, f.db_pages))
                .collect(),
            Some(FileName::Manifest { .. }) => Manifest::decode(bytes)
                .map(|m| size(m.page_size, m.db_pages))
                .into_iter()
                .collect(),
            _ => vec![],
        };
        claims
    });
    claims.max().unwrap_or(0)
}

/// Disks whose damage claims a file this large are decoded but not
/// recovered: recovery would allocate the whole file, as it must for a real
/// one (claims past `MAX_FILE_BYTES` are refused without allocating).
const LARGEST_RECOVERED: u64 = 64 << 20;

/// What became of the recovery target's cases, for its report.
#[derive(Default)]
struct Outcomes {
    recovered: Cell<usize>,
    refused: Cell<usize>,
    too_large: Cell<usize>,
}

fn count(counter: &Cell<usize>) {
    counter.set(counter.get() + 1);
}

#[test]
fn recovery_from_damaged_files() {
    let outcomes = Outcomes::default();
    run("storage recover", 5_000, damaged_disk, |disk| {
        if claimed_bytes(disk) > LARGEST_RECOVERED {
            return count(&outcomes.too_large);
        }
        let recovered = match recover(disk.0.clone(), small_config()) {
            Ok(recovered) => recovered,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt(_)), "{e}");
                return count(&outcomes.refused);
            }
        };
        count(&outcomes.recovered);
        read_all(recovered.image.clone());
        // What recovery accepted carries on: a new commit on top is durable
        // and recovers again, onto the same file.
        let mut backend = MemoryBackend::default();
        for (name, bytes) in &disk.0 {
            backend.files.insert(name.clone(), bytes.clone());
        }
        let mut log = recovered.log;
        let mut image = recovered.image;
        let page_size = match image.page_size() {
            0 => 4096,
            size => size,
        };
        let db_pages = image.db_pages().max(1);
        let commit = Commit {
            page_size,
            db_pages,
            pages: vec![(db_pages, vec![0xAB; page_size as usize].into())],
            before: None,
        };
        let seq = log.append(&commit);
        log.run_io(&mut backend);
        assert_eq!(log.durable_seq(), seq, "the new commit is durable");
        let mut frame = Vec::new();
        encode_frame(seq, &commit, &mut frame);
        image.apply_frame(&decode_frame(&frame).unwrap()).unwrap();
        let again = open_backend(&backend, small_config()).expect("recovers after a new commit");
        assert_eq!(again.report.last_seq, seq);
        assert!(again.image == image, "recovered a different file");
    });
    eprintln!(
        "fuzz storage recover: {} recovered, {} refused as corrupt, {} not tried (claim over 64 MiB)",
        thousands(outcomes.recovered.get()),
        thousands(outcomes.refused.get()),
        thousands(outcomes.too_large.get())
    );
}
