//! Names of the files the frame log keeps in the backend, and the checkpoint
//! manifest that ties a generation of segment files together.
//!
//! Files (one flat namespace per database):
//! - `log.<first seq>[.<epoch>]`: frames `first..`, written whole by one
//!   group commit, or (where the host writes in place) by one and extended
//!   by the group commits after it;
//! - `seg.<gen>.<index>`: pages `index × pages_per_segment + 1 ..` as raw bytes,
//!   written by the checkpoint of generation `gen`;
//! - `manifest.<gen>[.<epoch>]`: the checkpoint: which segment file holds
//!   each range of pages, with its length and CRC, and the frame sequence it
//!   covers.
//!
//! Numbers are 16 (seq, gen, epoch) or 8 (index) lower-case hex digits, so
//! names sort in numeric order. The epoch is the fencing epoch of the
//! leader-tab writer (`storage::fence`) that wrote the file, absent for 0
//! (an unfenced writer): two leaders never write one name, and recovery
//! knows whose frames supersede whose (`recovery.rs`).
//!
//! A manifest is written only after all its segments are durable, and files
//! it replaces are deleted only after it is durable, so at every instant the
//! newest valid manifest describes a complete image.

use super::frame::{file_fits, read_u32, valid_page_size, MAX_COUNTER};

const MAGIC: &[u8; 4] = b"FDBM";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 40;
const ENTRY_LEN: usize = 20;

/// A file name the frame log owns, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileName {
    Log { first: u64, epoch: u64 },
    Segment { gen: u64, index: u32 },
    Manifest { gen: u64, epoch: u64 },
}

impl FileName {
    /// `None` for names that are not ours (the host may keep other files).
    pub fn parse(name: &str) -> Option<Self> {
        let hex64 = |s: &str| {
            (s.len() == 16)
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
                .filter(|n| *n <= MAX_COUNTER)
        };
        let hex32 = |s: &str| {
            (s.len() == 8)
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
        };
        // `<n>` or `<n>.<epoch>`, the epoch never written as 0.
        let numbered = |s: &str| match s.split_once('.') {
            None => Some((hex64(s)?, 0)),
            Some((n, epoch)) => Some((hex64(n)?, hex64(epoch).filter(|&e| e > 0)?)),
        };
        if let Some(rest) = name.strip_prefix("log.") {
            return numbered(rest).map(|(first, epoch)| FileName::Log { first, epoch });
        }
        if let Some(rest) = name.strip_prefix("manifest.") {
            return numbered(rest).map(|(gen, epoch)| FileName::Manifest { gen, epoch });
        }
        let (gen, index) = name.strip_prefix("seg.")?.split_once('.')?;
        Some(FileName::Segment {
            gen: hex64(gen)?,
            index: hex32(index)?,
        })
    }
}

impl std::fmt::Display for FileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, n, epoch) = match *self {
            FileName::Log { first, epoch } => ("log", first, epoch),
            FileName::Segment { gen, index } => return write!(f, "seg.{gen:016x}.{index:08x}"),
            FileName::Manifest { gen, epoch } => ("manifest", gen, epoch),
        };
        write!(f, "{kind}.{n:016x}")?;
        if epoch > 0 {
            write!(f, ".{epoch:016x}")?;
        }
        Ok(())
    }
}

/// Where one segment's pages are stored and how to check them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    /// The generation that wrote the file (unchanged segments are shared).
    pub gen: u64,
    pub len: u32,
    pub crc: u32,
}

/// A checkpoint: the database image after frame `seq`, stored as segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub gen: u64,
    /// The fencing epoch of its writer: carried in the file name, not the bytes.
    pub epoch: u64,
    /// Frames up to and including `seq` are folded in.
    pub seq: u64,
    pub page_size: u32,
    pub db_pages: u32,
    pub pages_per_segment: u32,
    /// One entry per segment, by index.
    pub segments: Vec<SegmentRef>,
}

impl Manifest {
    pub fn segment_count(db_pages: u32, pages_per_segment: u32) -> u32 {
        db_pages.div_ceil(pages_per_segment.max(1))
    }

    /// Pages `first..=last` (1-based) of segment `index` (which is below
    /// [`Manifest::segment_count`]).
    pub fn segment_pages(&self, index: u32) -> std::ops::RangeInclusive<u32> {
        let first = index * self.pages_per_segment + 1;
        // Saturating: a decoded manifest may have more pages per segment
        // than the file has pages.
        first
            ..=first
                .saturating_add(self.pages_per_segment - 1)
                .min(self.db_pages)
    }

    pub fn segment_name(&self, index: u32) -> String {
        let gen = self.segments[index as usize].gen;
        FileName::Segment { gen, index }.to_string()
    }

    pub fn name(&self) -> String {
        FileName::Manifest {
            gen: self.gen,
            epoch: self.epoch,
        }
        .to_string()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.segments.len() * ENTRY_LEN + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.gen.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&self.pages_per_segment.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for (index, segment) in self.segments.iter().enumerate() {
            out.extend_from_slice(&(index as u32).to_le_bytes());
            out.extend_from_slice(&segment.gen.to_le_bytes());
            out.extend_from_slice(&segment.len.to_le_bytes());
            out.extend_from_slice(&segment.crc.to_le_bytes());
        }
        let crc = crate::storage::crc32::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// `None` for torn, damaged or inconsistent bytes.
    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        if bytes.len() < HEADER_LEN + 4
            || &bytes[0..4] != MAGIC
            || bytes[4..8] != [VERSION, 0, 0, 0]
        {
            return None;
        }
        let count = read_u32(&bytes[36..40]) as usize;
        let total = HEADER_LEN.checked_add(count.checked_mul(ENTRY_LEN)?)? + 4;
        if bytes.len() != total
            || crate::storage::crc32::hash(&bytes[..total - 4]) != read_u32(&bytes[total - 4..])
        {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let mut manifest = Manifest {
            gen: u64_at(8),
            epoch: 0,
            seq: u64_at(16),
            page_size: read_u32(&bytes[24..28]),
            db_pages: read_u32(&bytes[28..32]),
            pages_per_segment: read_u32(&bytes[32..36]),
            segments: Vec::with_capacity(count),
        };
        if !valid_page_size(manifest.page_size)
            || !file_fits(manifest.page_size, manifest.db_pages)
            || manifest.gen > MAX_COUNTER
            || manifest.seq > MAX_COUNTER
            || manifest.pages_per_segment == 0
            || Manifest::segment_count(manifest.db_pages, manifest.pages_per_segment) as usize
                != count
        {
            return None;
        }
        for (index, entry) in bytes[HEADER_LEN..total - 4]
            .chunks_exact(ENTRY_LEN)
            .enumerate()
        {
            let segment = SegmentRef {
                gen: u64::from_le_bytes(entry[4..12].try_into().expect("8")),
                len: read_u32(&entry[12..16]),
                crc: read_u32(&entry[16..20]),
            };
            if read_u32(&entry[0..4]) as usize != index || segment.gen > MAX_COUNTER {
                return None;
            }
            manifest.segments.push(segment);
        }
        for index in 0..count as u32 {
            let pages = manifest.segment_pages(index);
            let expected =
                u64::from(pages.end() - pages.start() + 1) * u64::from(manifest.page_size);
            if u64::from(manifest.segments[index as usize].len) != expected {
                return None;
            }
        }
        Some(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        for name in [
            FileName::Log {
                first: 255,
                epoch: 0,
            },
            FileName::Log {
                first: 255,
                epoch: 3,
            },
            FileName::Segment { gen: 3, index: 17 },
            FileName::Manifest {
                gen: 1 << 40,
                epoch: 0,
            },
            FileName::Manifest { gen: 2, epoch: 7 },
        ] {
            assert_eq!(FileName::parse(&name.to_string()), Some(name));
        }
        let log = |first| FileName::Log { first, epoch: 0 }.to_string();
        assert!(log(9) < log(10));
        assert_eq!(log(9), "log.0000000000000009");
        assert_eq!(FileName::parse("log.12"), None);
        // Epoch 0 has one spelling: without the suffix.
        assert_eq!(
            FileName::parse("log.0000000000000009.0000000000000000"),
            None
        );
        assert_eq!(FileName::parse("other"), None);
        // Found by the fuzz tests: recovery computed the generation after the
        // largest on disk, and `manifest.ffffffffffffffff` overflowed it.
        assert_eq!(FileName::parse("manifest.ffffffffffffffff"), None);
        assert_eq!(FileName::parse("seg.8000000000000000.00000000"), None);
        assert_eq!(
            FileName::parse("log.7fffffffffffffff"),
            Some(FileName::Log {
                first: MAX_COUNTER,
                epoch: 0
            })
        );
    }

    /// Found by the fuzz tests: more pages per segment than the file has
    /// overflowed the computation of a segment's last page.
    #[test]
    fn a_segment_may_be_larger_than_the_file() {
        let manifest = Manifest {
            gen: 1,
            epoch: 0,
            seq: 1,
            page_size: 512,
            db_pages: 5,
            pages_per_segment: u32::MAX,
            segments: vec![SegmentRef {
                gen: 1,
                len: 5 * 512,
                crc: 0,
            }],
        };
        assert_eq!(manifest.segment_pages(0), 1..=5);
        assert_eq!(Manifest::decode(&manifest.encode()), Some(manifest));
    }

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let manifest = Manifest {
            gen: 2,
            epoch: 0,
            seq: 77,
            page_size: 4096,
            db_pages: 5,
            pages_per_segment: 2,
            segments: vec![
                SegmentRef {
                    gen: 1,
                    len: 8192,
                    crc: 1,
                },
                SegmentRef {
                    gen: 2,
                    len: 8192,
                    crc: 2,
                },
                SegmentRef {
                    gen: 2,
                    len: 4096,
                    crc: 3,
                },
            ],
        };
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes), Some(manifest.clone()));
        assert_eq!(manifest.segment_name(0), "seg.0000000000000001.00000000");
        for len in 0..bytes.len() {
            assert_eq!(Manifest::decode(&bytes[..len]), None);
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1;
            assert_eq!(Manifest::decode(&damaged), None, "flip at {i}");
        }
    }
}
