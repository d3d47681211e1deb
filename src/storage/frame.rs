//! The frame: one committed write transaction as it is stored in the log.
//!
//! A frame carries the full post-commit bytes of every page the transaction
//! changed, the database size after the commit and its sequence number, so
//! replaying frames in sequence order over a base image reproduces the file
//! exactly. Frames are concatenated into log files; a torn or damaged frame
//! fails its length or checksum test and ends the replay.
//!
//! Layout (little-endian):
//!
//! ```text
//! 0   magic "FDBF"           4
//! 4   version (1), 3 zero    4
//! 8   seq                    u64
//! 16  page_size              u32
//! 20  db_pages               u32
//! 24  page_count             u32
//! 28  page numbers           u32 × page_count, strictly increasing, each ≤ db_pages
//! ..  page bytes             page_size × page_count
//! ..  crc32 of all the above u32
//! ```

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
const VERSION: u8 = 1;
const HEADER_LEN: usize = 28;

/// The pages one committed transaction changed, as the page store captured
/// them. The frame log gives it a sequence number when it is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub page_size: u32,
    /// Size of the database file after the commit, in pages.
    pub db_pages: u32,
    /// Changed pages by page number (1-based), ascending, each `page_size` long.
    pub pages: Vec<(u32, Box<[u8]>)>,
}

impl Commit {
    /// Bytes this commit takes once encoded as a frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.pages.len() * (4 + self.page_size as usize) + 4
    }
}

/// Appends `commit` as frame number `seq` to `out`.
pub fn encode_frame(seq: u64, commit: &Commit, out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(commit.encoded_len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&commit.page_size.to_le_bytes());
    out.extend_from_slice(&commit.db_pages.to_le_bytes());
    out.extend_from_slice(&(commit.pages.len() as u32).to_le_bytes());
    for (pgno, _) in &commit.pages {
        out.extend_from_slice(&pgno.to_le_bytes());
    }
    for (_, bytes) in &commit.pages {
        debug_assert_eq!(bytes.len(), commit.page_size as usize);
        out.extend_from_slice(bytes);
    }
    let crc = crate::storage::crc32::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A frame validated in place, borrowing the log file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub seq: u64,
    pub page_size: u32,
    pub db_pages: u32,
    page_numbers: &'a [u8],
    data: &'a [u8],
    /// Length of the whole encoded frame, checksum included.
    pub encoded_len: usize,
}

impl<'a> FrameRef<'a> {
    pub fn page_count(&self) -> usize {
        self.page_numbers.len() / 4
    }

    /// The frame's pages as `(page number, bytes)` in ascending page order.
    pub fn pages(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let numbers = self.page_numbers;
        let data = self.data;
        let size = self.page_size as usize;
        numbers
            .chunks_exact(4)
            .zip(data.chunks_exact(size))
            .map(|(n, page)| (read_u32(n), page))
    }

    /// An owned copy, for callers that keep frames beyond the file's bytes.
    pub fn to_commit(&self) -> Commit {
        Commit {
            page_size: self.page_size,
            db_pages: self.db_pages,
            pages: self.pages().map(|(n, p)| (n, p.into())).collect(),
        }
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
    if bytes.len() < HEADER_LEN {
        return Err(FrameDefect::Truncated);
    }
    if &bytes[0..4] != MAGIC || bytes[4] != VERSION || bytes[5..8] != [0, 0, 0] {
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
    let numbers_len = page_count as u64 * 4;
    let data_len = page_count as u64 * u64::from(page_size);
    let total = HEADER_LEN as u64 + numbers_len + data_len + 4;
    if (bytes.len() as u64) < total {
        return Err(FrameDefect::Truncated);
    }
    // Bounded by bytes.len() above, so the casts cannot truncate.
    let total = total as usize;
    let body = &bytes[..total - 4];
    let stored = read_u32(&bytes[total - 4..total]);
    if crate::storage::crc32::hash(body) != stored {
        return Err(FrameDefect::BadChecksum);
    }
    let numbers_end = HEADER_LEN + numbers_len as usize;
    let page_numbers = &bytes[HEADER_LEN..numbers_end];
    let mut previous = 0;
    for n in page_numbers.chunks_exact(4).map(read_u32) {
        if n <= previous || n > db_pages {
            return Err(FrameDefect::BadHeader);
        }
        previous = n;
    }
    Ok(FrameRef {
        seq,
        page_size,
        db_pages,
        page_numbers,
        data: &bytes[numbers_end..total - 4],
        encoded_len: total,
    })
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
        }
    }

    #[test]
    fn round_trips() {
        let mut bytes = Vec::new();
        encode_frame(42, &sample(512), &mut bytes);
        assert_eq!(bytes.len(), sample(512).encoded_len());
        let frame = decode_frame(&bytes).unwrap();
        assert_eq!((frame.seq, frame.db_pages, frame.page_count()), (42, 9, 2));
        assert_eq!(frame.to_commit(), sample(512));
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
