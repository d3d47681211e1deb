//! The inputs of the storage fuzz tests (`fuzz.rs`): real files of a small
//! database (its log, segments and manifests at moments that matter), and
//! the ways they are damaged: bytes flipped, cut, spliced; numbers on the
//! edges; files dropped, renamed, copied, or taken from another moment; and
//! checksums made right again ("re-sealed"), so the damage gets past the
//! CRCs to the checks behind them.

use super::small_config;
use crate::storage::crc32;
use crate::storage::frame::{encode_frame, MAX_COUNTER};
use crate::storage::manifest::{Manifest, SegmentRef};
use crate::storage::{open_backend, recover, Commit, FileName, MemoryBackend, PageStore};
use ferrydb_fuzz::{bytes, Bytes, Rng};
use std::fmt;
use std::sync::OnceLock;

/// A backend's files, as recovery takes them.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Disk(pub Vec<(String, Vec<u8>)>);

/// Names, lengths and the first bytes: whole files would hide the names.
impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, bytes) in &self.0 {
            let head = Bytes(bytes[..bytes.len().min(48)].to_vec());
            list.entry(&format_args!("{name}: {} bytes, {head:?}", bytes.len()));
        }
        list.finish()
    }
}

fn files_of(backend: &MemoryBackend) -> Disk {
    let names = backend.files.keys();
    Disk(
        names
            .map(|name| (name.clone(), backend.files.get(name).unwrap().clone()))
            .collect(),
    )
}

/// The files of a small database at moments that matter: log files only;
/// after a checkpoint, with newer log files; after a `VACUUM` to another page
/// size and a second checkpoint, with the first one's files not yet deleted.
fn sample_disks() -> &'static [Disk] {
    static DISKS: OnceLock<Vec<Disk>> = OnceLock::new();
    DISKS.get_or_init(|| {
        let mut backend = MemoryBackend::default();
        let recovered = open_backend(&backend, small_config()).unwrap();
        let mut log = recovered.log;
        let store = PageStore::new(recovered.image).unwrap();
        let conn = store.open_connection().unwrap();
        let mut disks = Vec::new();
        let persist = |log: &mut crate::storage::FrameLog, backend: &mut MemoryBackend| {
            while let Some(commit) = store.take_commit() {
                log.append(&commit);
            }
            log.run_io(backend);
        };
        conn.execute_batch(
            "PRAGMA page_size=1024; CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        persist(&mut log, &mut backend);
        for i in 0..4 {
            conn.execute("INSERT INTO kv(v) VALUES (printf('%.300c', ?1))", [i])
                .unwrap();
            persist(&mut log, &mut backend);
        }
        disks.push(files_of(&backend));
        log.start_checkpoint(&store);
        log.run_io(&mut backend);
        conn.execute("UPDATE kv SET v = 'short' WHERE k = 2", [])
            .unwrap();
        persist(&mut log, &mut backend);
        disks.push(files_of(&backend));
        conn.execute_batch("PRAGMA page_size=512; VACUUM;").unwrap();
        persist(&mut log, &mut backend);
        let before_second = files_of(&backend);
        log.start_checkpoint(&store);
        log.run_io(&mut backend);
        let mut both = files_of(&backend);
        for file in before_second.0 {
            if !both.0.iter().any(|(name, _)| *name == file.0) {
                both.0.push(file);
            }
        }
        disks.push(both);
        for disk in &disks {
            assert!(recover(disk.0.clone(), small_config()).is_ok());
        }
        disks
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Rewrites the checksum of every frame whose header still says how long
/// it is, from the start of the file, so damage inside frames is judged by
/// the checks after the CRC.
pub(super) fn reseal_frames(bytes: &mut [u8]) {
    let mut at = 0;
    while bytes.len() - at >= 32 {
        let len = if bytes[at + 4] == 1 {
            let page_size = u64::from(u32_at(bytes, at + 16));
            let count = u64::from(u32_at(bytes, at + 24));
            28 + count * 4 + count * page_size + 4
        } else {
            32 + u64::from(u32_at(bytes, at + 28)) + 4
        };
        if len > (bytes.len() - at) as u64 {
            return;
        }
        let end = at + len as usize;
        let crc = crc32::hash(&bytes[at..end - 4]);
        bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// Rewrites a manifest's checksum (and, with `segments`, each entry's length
/// and CRC from the segment file it names, if present).
pub(super) fn reseal_manifest(bytes: &mut [u8], segments: Option<&Disk>) {
    if bytes.len() < 44 {
        return;
    }
    if let Some(disk) = segments {
        let mut at = 40;
        while at + 20 <= bytes.len() - 4 {
            let index = u32_at(bytes, at);
            let gen = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap());
            let name = FileName::Segment { gen, index }.to_string();
            if let Some((_, segment)) = disk.0.iter().find(|(n, _)| *n == name) {
                bytes[at + 12..at + 16].copy_from_slice(&(segment.len() as u32).to_le_bytes());
                bytes[at + 16..at + 20].copy_from_slice(&crc32::hash(segment).to_le_bytes());
            }
            at += 20;
        }
    }
    let end = bytes.len();
    let crc = crc32::hash(&bytes[..end - 4]);
    bytes[end - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// Commits of 1 to 3 pages of 512 or 1024 bytes, and logs of 1 to 3 frames.
pub(super) fn sample_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (seq, page_size, pages) in [
        (1, 512, vec![1]),
        (7, 1024, vec![1, 3, 4]),
        (2, 512, vec![2]),
    ] {
        let commit = Commit {
            page_size,
            db_pages: 4,
            pages: pages
                .into_iter()
                .map(|pgno| (pgno, vec![pgno as u8; page_size as usize].into()))
                .collect(),
            before: None,
        };
        let mut log = Vec::new();
        for i in 0..3 {
            encode_frame(seq + i, &commit, &mut log);
            out.push(log.clone());
        }
    }
    out
}

/// One of `seeds` damaged, or random bytes; re-sealed half the time.
pub(super) fn damaged(rng: &mut Rng, seeds: &[Vec<u8>], reseal: fn(&mut [u8])) -> Bytes {
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let mut out = match rng.below(10) {
        0 => bytes::random(rng),
        _ => {
            let seed = seeds[rng.below(seeds.len())];
            bytes::mutate(rng, seed, &seeds)
        }
    };
    if rng.chance(50) {
        reseal(&mut out);
    }
    Bytes(out)
}

const EDGE_U32: [u32; 10] = [
    0,
    1,
    2,
    3,
    5,
    512,
    65536,
    u32::MAX / 2,
    u32::MAX - 1,
    u32::MAX,
];
const EDGE_U64: [u64; 7] = [
    0,
    1,
    2,
    MAX_COUNTER,
    MAX_COUNTER + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// A frame encoded from a commit whose numbers sit on the edges: odd page
/// sizes, page numbers out of order or past the file, huge sizes.
pub(super) fn edge_frame(rng: &mut Rng) -> Bytes {
    let page_size = *rng.pick(&[0, 100, 512, 1024, 3000]);
    let db_pages = *rng.pick(&EDGE_U32);
    let pages = (0..rng.below(4))
        .map(|_| {
            let pgno = match rng.below(3) {
                0 => db_pages.wrapping_add(1),
                1 => *rng.pick(&EDGE_U32),
                _ => rng.below(5) as u32,
            };
            (pgno, vec![7; page_size as usize].into())
        })
        .collect();
    let commit = Commit {
        page_size,
        db_pages,
        pages,
        before: None,
    };
    let mut out = Vec::new();
    encode_frame(*rng.pick(&EDGE_U64), &commit, &mut out);
    Bytes(out)
}

pub(super) fn sample_manifests() -> Vec<Vec<u8>> {
    let disks = sample_disks();
    let found = disks
        .iter()
        .flat_map(|disk| &disk.0)
        .filter(|(name, _)| matches!(FileName::parse(name), Some(FileName::Manifest { .. })))
        .map(|(_, bytes)| bytes.clone());
    let mut manifests: Vec<Vec<u8>> = found.collect();
    assert!(!manifests.is_empty());
    manifests.push(Manifest::default().encode());
    manifests
}

/// A manifest encoded from numbers on the edges, its segment list mostly
/// consistent with them (so the checks behind the count see it).
pub(super) fn edge_manifest(rng: &mut Rng) -> Bytes {
    let page_size = *rng.pick(&[0, 1, 512, 1024, 65536, 131072, u32::MAX]);
    let db_pages = *rng.pick(&EDGE_U32);
    let pages_per_segment = *rng.pick(&EDGE_U32);
    let count = if rng.chance(80) {
        Manifest::segment_count(db_pages, pages_per_segment).min(8)
    } else {
        rng.below(4) as u32
    };
    let mut manifest = Manifest {
        gen: *rng.pick(&EDGE_U64),
        epoch: 0,
        seq: *rng.pick(&EDGE_U64),
        page_size,
        db_pages,
        pages_per_segment,
        segments: Vec::new(),
    };
    for index in 0..count {
        let first = u64::from(index) * u64::from(pages_per_segment) + 1;
        let last = (first + u64::from(pages_per_segment.max(1)) - 1).min(u64::from(db_pages));
        let len = last.saturating_sub(first).saturating_add(1) * u64::from(page_size);
        manifest.segments.push(SegmentRef {
            gen: *rng.pick(&EDGE_U64),
            len: if rng.chance(80) {
                len as u32
            } else {
                *rng.pick(&EDGE_U32)
            },
            crc: rng.next_u64() as u32,
        });
    }
    Bytes(manifest.encode())
}

/// Names of files of ours, with numbers near the edges.
pub(super) fn edge_name(rng: &mut Rng) -> String {
    let number = |rng: &mut Rng| *rng.pick(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, u64::MAX]);
    let name = match rng.below(3) {
        0 => FileName::Log {
            first: number(rng),
            epoch: *rng.pick(&[0, 0, 1, 2]),
        },
        1 => FileName::Manifest {
            gen: number(rng),
            epoch: *rng.pick(&[0, 0, 1, 2]),
        },
        _ => FileName::Segment {
            gen: number(rng),
            index: *rng.pick(&[0, 1, 2, 3, u32::MAX]),
        },
    };
    name.to_string()
}

/// A sample disk with one to three files damaged, dropped, copied under
/// another name, renamed, added, or taken from another sample; then, half
/// the time, every checksum made right again.
pub(super) fn damaged_disk(rng: &mut Rng) -> Disk {
    let samples = sample_disks();
    let mut disk = rng.pick(samples).clone();
    let all_bytes: Vec<&[u8]> = samples
        .iter()
        .flat_map(|d| &d.0)
        .map(|(_, b)| b.as_slice())
        .collect();
    for _ in 0..1 + rng.below(3) {
        let files = &mut disk.0;
        let i = rng.below(files.len());
        match rng.below(6) {
            0 | 1 if !files.is_empty() => {
                files[i].1 = bytes::mutate(rng, &files[i].1, &all_bytes);
            }
            2 if !files.is_empty() => {
                files.remove(i);
            }
            3 if !files.is_empty() => {
                let bytes = files[i].1.clone();
                files.push((edge_name(rng), bytes));
            }
            4 if !files.is_empty() => files[i].0 = files[i].0.to_uppercase(),
            _ => {
                let other = rng.pick(samples);
                let (name, bytes) = rng.pick(&other.0).clone();
                let bytes = if rng.chance(50) {
                    bytes
                } else {
                    bytes::random(rng)
                };
                let name = if rng.chance(50) { name } else { edge_name(rng) };
                files.push((name, bytes));
            }
        }
    }
    // As a backend holds them: one file per name, the last written.
    let mut backend = MemoryBackend::default();
    for (name, bytes) in disk.0 {
        backend.files.insert(name, bytes);
    }
    let mut disk = files_of(&backend);
    if rng.chance(50) {
        let snapshot = disk.clone();
        for (name, bytes) in &mut disk.0 {
            match FileName::parse(name) {
                Some(FileName::Log { .. }) => reseal_frames(bytes),
                Some(FileName::Manifest { .. }) => reseal_manifest(bytes, Some(&snapshot)),
                _ => {}
            }
        }
    }
    disk
}
