//! The frame: one committed write transaction as it is stored in the log.
//!
//! A frame carries, for every page the transaction changed, the bytes that
//! changed (or the whole page), the database size after the commit and its
//! sequence number, so replaying frames in sequence order over a base image
//! reproduces the file exactly. Frames are concatenated into log files; a torn
//! or damaged frame fails its length or checksum test and ends the replay.
//!
//! Layout (little-endian), version 2:
//!
//! ```text
//! 0   magic "FDBF"           4
//! 4   version (2), 3 zero    4
//! 8   seq                    u64
//! 16  page_size              u32
//! 20  db_pages               u32
//! 24  page_count             u32
//! 28  body_len               u32
//! 32  page_count records:    pgno u32 (strictly increasing, each ≤ db_pages),
//!                            run_count u16, then run_count runs of
//!                            offset u16, len − 1 u16, the bytes (ascending,
//!                            not overlapping, within the page)
//! ..  crc32 of all the above u32
//! ```
//!
//! A run overwrites bytes of the page as it was before the commit, which is
//! what the replay's image holds (zeros for a page past the file's previous
//! end). A one-row write changes a few hundred bytes of each of its six or so
//! pages, so its frame is ~1 KB where whole pages made it 25 KB: that is what
//! the log writes, checksums and copies out of the wasm for every write.
//!
//! Version 1 (written before 2026-12-05, still read) stored whole pages: the
//! header's first 28 bytes, the page numbers (u32 each), then `page_size`
//! bytes per page.

const MAGIC: &[u8; 4] = b"FDBF";

/// The largest sequence or generation number of ours. They count up from 1
/// and never get near 2^63 (a billion commits a second would take 292
/// years), so a larger one in a file name or header is damage; refusing it
/// keeps every `+ 1` on them in range.
pub const MAX_COUNTER: u64 = (1 << 63) - 1;

/// The largest database file the page store holds: 4 GiB, all a wasm32
/// worker's memory could ever be. The file lives in memory, so a frame or
/// manifest claiming more is damage, and believing it would make recovery
/// allocate for pages no file holds (and abort). Writes past it fail
/// (`SQLITE_FULL`), so no frame of ours claims more.
pub const MAX_FILE_BYTES: u64 = 1 << 32;

/// Whether `db_pages` pages of `page_size` bytes fit in [`MAX_FILE_BYTES`].
pub fn file_fits(page_size: u32, db_pages: u32) -> bool {
    u64::from(page_size) * u64::from(db_pages) <= MAX_FILE_BYTES
}
const VERSION: u8 = 2;
const HEADER_LEN: usize = 32;
/// Version 1's header: no `body_len`.
const V1_HEADER_LEN: usize = 28;

/// The pages one committed transaction changed, as the page store captured
/// them. The frame log gives it a sequence number when it is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub page_size: u32,
    /// Size of the database file after the commit, in pages.
    pub db_pages: u32,
    /// Changed pages by page number (1-based), ascending, each `page_size` long.
    pub pages: Vec<(u32, Box<[u8]>)>,
    /// What the pages held before, if the page store knows: the frame then
    /// keeps only the bytes that differ. `None`: every page is stored whole.
    pub before: Option<Before>,
}

/// The file before a commit, as far as the frame needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Before {
    /// The file's size in pages: a page past it was zeros.
    pub db_pages: u32,
    /// Changed pages within it whose bytes the page store kept (a few, in no
    /// order); a page not here (and not past `db_pages`) is stored whole.
    pub pages: Vec<(u32, Box<[u8]>)>,
}

impl Before {
    /// A file of `db_pages` pages, none of them kept.
    pub fn of(db_pages: u32) -> Self {
        Before {
            db_pages,
            pages: Vec::new(),
        }
    }
}

/// Appends `commit` as frame number `seq` to `out`.
pub fn encode_frame(seq: u64, commit: &Commit, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&commit.page_size.to_le_bytes());
    out.extend_from_slice(&commit.db_pages.to_le_bytes());
    out.extend_from_slice(&(commit.pages.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for (pgno, page) in &commit.pages {
        debug_assert_eq!(page.len(), commit.page_size as usize);
        out.extend_from_slice(&pgno.to_le_bytes());
        let count_at = out.len();
        out.extend_from_slice(&[0; 2]);
        let base = match &commit.before {
            Some(before) if *pgno > before.db_pages => Base::Zeros,
            Some(before) => match before.pages.iter().find(|(n, _)| n == pgno) {
                Some((_, bytes)) => Base::Bytes(bytes),
                None => Base::Unknown,
            },
            None => Base::Unknown,
        };
        let mut runs = 0u16;
        let mut run = |at: usize, len: usize| {
            out.extend_from_slice(&(at as u16).to_le_bytes());
            out.extend_from_slice(&((len - 1) as u16).to_le_bytes());
            out.extend_from_slice(&page[at..at + len]);
            runs += 1;
        };
        match base {
            // Real pages are whole words; only damaged input gets here.
            _ if page.is_empty() => {}
            Base::Unknown => run(0, page.len()),
            _ if page.len() % 8 != 0 => run(0, page.len()),
            Base::Zeros => changed_runs(page, &vec![0; page.len()], run),
            Base::Bytes(before) => changed_runs(page, before, run),
        }
        out[count_at..count_at + 2].copy_from_slice(&runs.to_le_bytes());
    }
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    out[start + 28..start + 32].copy_from_slice(&body_len.to_le_bytes());
    let crc = crate::storage::crc32::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// What a changed page held before its commit.
enum Base<'a> {
    Unknown,
    Zeros,
    Bytes(&'a [u8]),
}

/// Calls `run(at, len)` for each stretch of 8-byte words in which `page`
/// differs from `before`, in order. Most of a page is unchanged, and a word
/// a step finds that fast; an unchanged word between two runs costs more
/// stored than a second run's header does.
fn changed_runs(page: &[u8], before: &[u8], mut run: impl FnMut(usize, usize)) {
    let differs = |i: usize| page[i * 8..i * 8 + 8] != before[i * 8..i * 8 + 8];
    let words = page.len() / 8;
    let mut i = 0;
    while i < words {
        if differs(i) {
            let start = i;
            while i < words && differs(i) {
                i += 1;
            }
            run(start * 8, (i - start) * 8);
        }
        i += 1;
    }
}

/// A frame validated in place, borrowing the log file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub seq: u64,
    pub page_size: u32,
    pub db_pages: u32,
    page_count: u32,
    version: u8,
    /// Version 2: the page records. Version 1: the page numbers, then the pages.
    records: &'a [u8],
    /// Length of the whole encoded frame, checksum included.
    pub encoded_len: usize,
}

/// Called with a page number, an offset in the page and the bytes to write there.
pub type RunVisitor<'v, 'a> = &'v mut dyn FnMut(u32, usize, &'a [u8]);

impl<'a> FrameRef<'a> {
    pub fn page_count(&self) -> usize {
        self.page_count as usize
    }

    /// Calls `visit` for each run of changed bytes, page by page in
    /// ascending order, each page's runs in order (a version-1 page is one
    /// run, the whole page). A page whose bytes did not change has none.
    pub fn runs(&self, visit: RunVisitor<'_, 'a>) {
        self.walk(visit).expect("validated when decoded");
    }

    /// [`FrameRef::runs`], checking as it goes what the header promises:
    /// `page_count` pages, ascending, none past the file; runs ascending, not
    /// overlapping and within the page; (version 2) nothing after the records.
    fn walk(&self, visit: RunVisitor<'_, 'a>) -> Option<()> {
        let size = self.page_size as usize;
        let count = self.page_count as usize;
        let mut rest = self.records;
        let mut previous = 0;
        for index in 0..count {
            let pgno;
            if self.version == 1 {
                pgno = read_u32(&self.records[index * 4..]);
                visit(pgno, 0, &self.records[count * 4 + index * size..][..size]);
            } else {
                pgno = read_u32(rest.get(..4)?);
                let runs = read_u16(rest.get(4..6)?);
                rest = &rest[6..];
                let mut page_end = 0;
                for _ in 0..runs {
                    let header = rest.get(..4)?;
                    let at = usize::from(read_u16(header));
                    let len = usize::from(read_u16(&header[2..])) + 1;
                    if at < page_end || at + len > size {
                        return None;
                    }
                    visit(pgno, at, rest.get(4..4 + len)?);
                    page_end = at + len;
                    rest = &rest[4 + len..];
                }
            }
            if pgno <= previous || pgno > self.db_pages {
                return None;
            }
            previous = pgno;
        }
        (self.version == 1 || rest.is_empty()).then_some(())
    }
}

/// Why bytes are not a frame. Recovery treats every kind alike (the log ends
/// here); the distinction is for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameDefect {
    /// Fewer bytes than the header or the lengths it declares: a torn write.
    Truncated,
    /// Wrong magic or version, or a header that cannot describe a real commit.
    BadHeader,
    /// The checksum does not match: torn or damaged bytes.
    BadChecksum,
}

/// Validates the frame at the start of `bytes`.
pub fn decode_frame(bytes: &[u8]) -> Result<FrameRef<'_>, FrameDefect> {
    if bytes.len() < V1_HEADER_LEN {
        return Err(FrameDefect::Truncated);
    }
    let version = bytes[4];
    if &bytes[0..4] != MAGIC || !(1..=VERSION).contains(&version) || bytes[5..8] != [0, 0, 0] {
        return Err(FrameDefect::BadHeader);
    }
    let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let page_size = read_u32(&bytes[16..20]);
    let db_pages = read_u32(&bytes[20..24]);
    let page_count = read_u32(&bytes[24..28]);
    if !valid_page_size(page_size)
        || !file_fits(page_size, db_pages)
        || page_count > db_pages
        || seq == 0
        || seq > MAX_COUNTER
    {
        return Err(FrameDefect::BadHeader);
    }
    let (header_len, records_len) = if version == 1 {
        let len = u64::from(page_count) * (4 + u64::from(page_size));
        (V1_HEADER_LEN, len)
    } else if bytes.len() < HEADER_LEN {
        return Err(FrameDefect::Truncated);
    } else {
        (HEADER_LEN, u64::from(read_u32(&bytes[28..32])))
    };
    let total = header_len as u64 + records_len + 4;
    if (bytes.len() as u64) < total {
        return Err(FrameDefect::Truncated);
    }
    // Bounded by bytes.len() above, so the casts cannot truncate.
    let total = total as usize;
    let stored = read_u32(&bytes[total - 4..total]);
    if crate::storage::crc32::hash(&bytes[..total - 4]) != stored {
        return Err(FrameDefect::BadChecksum);
    }
    let frame = FrameRef {
        seq,
        page_size,
        db_pages,
        page_count,
        version,
        records: &bytes[header_len..total - 4],
        encoded_len: total,
    };
    frame
        .walk(&mut |_, _, _| {})
        .ok_or(FrameDefect::BadHeader)?;
    Ok(frame)
}

/// The valid frames at the start of a log file, in order, ending silently at
/// the first defect or at a frame whose sequence number does not follow its
/// predecessor's (a file is always one contiguous run).
pub fn read_frames(bytes: &[u8]) -> impl Iterator<Item = FrameRef<'_>> {
    let mut rest = bytes;
    let mut expected: Option<u64> = None;
    std::iter::from_fn(move || {
        let frame = decode_frame(rest).ok()?;
        if expected.is_some_and(|seq| seq != frame.seq) {
            return None;
        }
        expected = Some(frame.seq + 1);
        rest = &rest[frame.encoded_len..];
        Some(frame)
    })
}

/// SQLite's page sizes: powers of two from 512 to 65536.
pub fn valid_page_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes(bytes[..2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(page_size: u32) -> Commit {
        Commit {
            page_size,
            db_pages: 9,
            pages: vec![
                (1, vec![1; page_size as usize].into()),
                (7, vec![7; page_size as usize].into()),
            ],
            before: None,
        }
    }

    /// The pages `frame` leaves, written over `pages` (page numbers from 1).
    fn apply(frame: &FrameRef<'_>, mut pages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        pages.resize(frame.db_pages as usize, vec![0; frame.page_size as usize]);
        frame.runs(&mut |pgno, at, bytes| {
            pages[pgno as usize - 1][at..at + bytes.len()].copy_from_slice(bytes);
        });
        pages
    }

    /// Numbers below `n` (xorshift64), deterministic from `seed`.
    fn numbers(seed: u64, n: u64) -> impl Iterator<Item = u64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
    }

    /// A page of `size` random bytes.
    fn noise(size: usize, seed: u64) -> Vec<u8> {
        numbers(seed, 256).take(size).map(|b| b as u8).collect()
    }

    #[test]
    fn round_trips() {
        let mut bytes = Vec::new();
        encode_frame(42, &sample(512), &mut bytes);
        let frame = decode_frame(&bytes).unwrap();
        assert_eq!(frame.encoded_len, bytes.len());
        assert_eq!((frame.seq, frame.db_pages, frame.page_count()), (42, 9, 2));
        let pages = apply(&frame, vec![vec![0xFF; 512]; 9]);
        assert_eq!((&pages[0], &pages[6]), (&vec![1; 512], &vec![7; 512]));
        assert_eq!(
            pages[1],
            vec![0xFF; 512],
            "a page not in the frame is left alone"
        );
    }

    /// A write that changes a few bytes of each page stores about those bytes,
    /// and applied over the file before it gives the file after it.
    #[test]
    fn a_small_change_stores_only_what_changed() {
        let before: Vec<Vec<u8>> = (1..=3).map(|seed| noise(4096, seed)).collect();
        let mut after = before.clone();
        after[0][24..28].copy_from_slice(&[9, 9, 9, 9]);
        after[2][100] ^= 1;
        after[2][4000..4090].fill(3);
        let new_page = {
            let mut page = vec![0; 4096];
            page[..8].fill(5);
            page[4080..].fill(6);
            page
        };
        after.push(new_page);
        let commit = Commit {
            page_size: 4096,
            db_pages: 4,
            pages: [1, 3, 4]
                .map(|n| (n, after[n as usize - 1].clone().into()))
                .to_vec(),
            before: Some(Before {
                db_pages: 3,
                pages: [1, 3]
                    .map(|n| (n, before[n as usize - 1].clone().into()))
                    .to_vec(),
            }),
        };
        let mut bytes = Vec::new();
        encode_frame(1, &commit, &mut bytes);
        assert!(bytes.len() < 300, "{} bytes", bytes.len());
        let frame = decode_frame(&bytes).unwrap();
        assert_eq!(apply(&frame, before.clone()), after);
        // Without the bytes before, the pages are stored whole.
        let whole = Commit {
            before: Some(Before {
                db_pages: 3,
                pages: vec![],
            }),
            ..commit
        };
        bytes.clear();
        encode_frame(1, &whole, &mut bytes);
        assert!(bytes.len() > 2 * 4096, "{} bytes", bytes.len());
        assert_eq!(apply(&decode_frame(&bytes).unwrap(), before), after);
    }

    /// Runs are the changed words, apart; a 64 KiB page changed in every
    /// word is one run (its length is stored less one).
    #[test]
    fn runs_cover_exactly_the_changed_words() {
        for seed in 0..50 {
            let before = noise(1024, seed);
            let mut after = before.clone();
            let mut rng = numbers(seed + 1000, 1024);
            for _ in 0..rng.next().unwrap() % 40 {
                let at = rng.next().unwrap() as usize;
                after[at] ^= 1 + (rng.next().unwrap() % 255) as u8;
            }
            let mut rebuilt = before.clone();
            let mut last_end = 0;
            changed_runs(&after, &before, |at, len| {
                assert!(at > last_end || at == 0, "runs are apart");
                assert!(at % 8 == 0 && len % 8 == 0 && len > 0);
                for word in (at..at + len).step_by(8) {
                    assert_ne!(after[word..word + 8], before[word..word + 8]);
                }
                rebuilt[at..at + len].copy_from_slice(&after[at..at + len]);
                last_end = at + len;
            });
            assert_eq!(rebuilt, after);
        }
        let mut runs = Vec::new();
        changed_runs(&[1; 65536], &[0; 65536], |at, len| runs.push((at, len)));
        assert_eq!(runs, [(0, 65536)]);
    }

    /// Logs written before version 2 hold whole pages, and still recover.
    #[test]
    fn version_1_frames_are_read() {
        let mut bytes = b"FDBF\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&3u64.to_le_bytes());
        for n in [512u32, 4, 2, 2, 4] {
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        bytes.extend_from_slice(&[2; 512]);
        bytes.extend_from_slice(&[4; 512]);
        let crc = crate::storage::crc32::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let frame = decode_frame(&bytes).unwrap();
        assert_eq!(
            (frame.seq, frame.page_count(), frame.encoded_len),
            (3, 2, bytes.len())
        );
        let pages = apply(&frame, vec![]);
        assert_eq!(
            pages,
            [vec![0; 512], vec![2; 512], vec![0; 512], vec![4; 512]]
        );
    }

    #[test]
    fn every_torn_prefix_is_rejected() {
        let mut bytes = Vec::new();
        encode_frame(1, &sample(512), &mut bytes);
        for len in 0..bytes.len() {
            assert!(
                decode_frame(&bytes[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let mut bytes = Vec::new();
        encode_frame(1, &sample(512), &mut bytes);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            assert!(decode_frame(&damaged).is_err(), "flip at {i} accepted");
        }
    }

    /// Found by the fuzz tests: a frame claiming a huge file made recovery
    /// allocate it (and abort), and one numbered `u64::MAX` overflowed the
    /// next number. Both are damage, refused like a bad magic.
    #[test]
    fn frames_past_the_largest_file_or_number_are_refused() {
        let mut bytes = Vec::new();
        let huge = Commit {
            page_size: 512,
            db_pages: u32::MAX,
            pages: vec![],
            before: None,
        };
        encode_frame(1, &huge, &mut bytes);
        assert_eq!(decode_frame(&bytes).unwrap_err(), FrameDefect::BadHeader);
        bytes.clear();
        encode_frame(MAX_COUNTER + 1, &sample(512), &mut bytes);
        assert_eq!(decode_frame(&bytes).unwrap_err(), FrameDefect::BadHeader);
        bytes.clear();
        encode_frame(MAX_COUNTER, &sample(512), &mut bytes);
        assert_eq!(decode_frame(&bytes).unwrap().seq, MAX_COUNTER);
        assert!(file_fits(65536, 65536) && !file_fits(65536, 65537));
    }

    #[test]
    fn reading_a_log_stops_at_a_gap_or_a_torn_tail() {
        let mut log = Vec::new();
        encode_frame(5, &sample(512), &mut log);
        encode_frame(6, &sample(512), &mut log);
        let whole = log.len();
        encode_frame(8, &sample(512), &mut log);
        let seqs: Vec<u64> = read_frames(&log).map(|f| f.seq).collect();
        assert_eq!(seqs, [5, 6]);
        let seqs: Vec<u64> = read_frames(&log[..whole - 1]).map(|f| f.seq).collect();
        assert_eq!(seqs, [5]);
    }
}
