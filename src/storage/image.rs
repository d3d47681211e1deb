//! The database file as pages in memory: what SQLite reads and writes through
//! the page store, what recovery rebuilds, and what a checkpoint copies out.

use super::error::{Error, Result};
use super::frame::{valid_page_size, FrameRef};

/// Page size used when the first write does not reveal one (it always does for
/// a SQLite main database: its first write is page 1, whole).
const FALLBACK_PAGE_SIZE: u32 = 4096;

/// A database file held as fixed-size pages. Page numbers are 1-based, as in
/// SQLite. The file may also be read and written at any byte range, because
/// SQLite reads the 100-byte header on its own and a `VACUUM` that changes the
/// page size writes with the new size before the image is re-paged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PageImage {
    /// 0 while the file is empty and has never been written.
    page_size: u32,
    pages: Vec<Box<[u8]>>,
    /// Logical file length in bytes; `pages` covers it exactly, rounded up.
    len: u64,
}

impl PageImage {
    /// An empty file: a database SQLite will create on first write.
    pub fn empty() -> Self {
        Self::default()
    }

    /// 0 for a file that has never been written.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The file size in pages (a partial last page counts as one).
    pub fn db_pages(&self) -> u32 {
        self.pages.len() as u32
    }

    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    pub fn page(&self, pgno: u32) -> Option<&[u8]> {
        let index = pgno.checked_sub(1)? as usize;
        self.pages.get(index).map(|page| &page[..])
    }

    /// The whole file as one buffer (tests and diagnostics).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.pages.iter().flat_map(|p| p.iter().copied()).collect();
        bytes.truncate(self.len as usize);
        bytes
    }

    /// Sets the page size of an empty image, or re-pages a non-empty one
    /// (after `PRAGMA page_size` + `VACUUM` rewrote the file with a new size).
    pub fn set_page_size(&mut self, page_size: u32) {
        debug_assert!(valid_page_size(page_size));
        if self.page_size == page_size {
            return;
        }
        let bytes = self.to_bytes();
        self.page_size = page_size;
        self.pages.clear();
        self.len = 0;
        if !bytes.is_empty() {
            self.write(&bytes, 0);
        }
    }

    /// Resizes the file to exactly `db_pages` pages, zero-filling new ones.
    pub fn resize_pages(&mut self, db_pages: u32) {
        let size = self.page_size as usize;
        self.pages
            .resize_with(db_pages as usize, || vec![0; size].into_boxed_slice());
        self.len = u64::from(db_pages) * u64::from(self.page_size);
    }

    /// Replaces page `pgno`, growing the file if needed.
    pub fn set_page(&mut self, pgno: u32, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), self.page_size as usize);
        if pgno > self.db_pages() {
            self.resize_pages(pgno);
        }
        self.pages[pgno as usize - 1].copy_from_slice(bytes);
    }

    /// Applies one frame: the file takes the frame's size and changed pages.
    pub fn apply_frame(&mut self, frame: &FrameRef<'_>) -> Result<()> {
        if self.page_size != frame.page_size {
            // Only a commit that rewrote every page can change the page size.
            if self.len != 0 && frame.page_count() != frame.db_pages as usize {
                return Err(Error::Corrupt(format!(
                    "frame {} changes the page size from {} to {} without rewriting every page",
                    frame.seq, self.page_size, frame.page_size
                )));
            }
            self.page_size = frame.page_size;
            self.pages.clear();
            self.len = 0;
        }
        self.resize_pages(frame.db_pages);
        frame.runs(&mut |pgno, at, bytes| {
            self.pages[pgno as usize - 1][at..at + bytes.len()].copy_from_slice(bytes);
        });
        Ok(())
    }

    /// Copies file bytes at `offset` into `buf`; returns how many exist there.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> usize {
        if offset >= self.len || buf.is_empty() {
            return 0;
        }
        let count = buf.len().min((self.len - offset) as usize);
        let size = self.page_size as u64;
        let mut done = 0;
        while done < count {
            let at = offset + done as u64;
            let page = &self.pages[(at / size) as usize];
            let within = (at % size) as usize;
            let n = (count - done).min(page.len() - within);
            buf[done..done + n].copy_from_slice(&page[within..within + n]);
            done += n;
        }
        count
    }

    /// Writes `buf` at `offset`, growing the file (zero-filled) as needed.
    pub fn write(&mut self, buf: &[u8], offset: u64) {
        if buf.is_empty() {
            return;
        }
        if self.page_size == 0 {
            let first = u32::try_from(buf.len()).unwrap_or(0);
            self.page_size = if offset == 0 && valid_page_size(first) {
                first
            } else {
                FALLBACK_PAGE_SIZE
            };
        }
        let size = self.page_size as u64;
        let end = offset + buf.len() as u64;
        let needed = end.div_ceil(size) as usize;
        if needed > self.pages.len() {
            self.pages
                .resize_with(needed, || vec![0; size as usize].into_boxed_slice());
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let page = &mut self.pages[(at / size) as usize];
            let within = (at % size) as usize;
            let n = (buf.len() - done).min(page.len() - within);
            page[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        self.len = self.len.max(end);
    }

    /// Sets the file length, dropping or zero-filling bytes at the end.
    pub fn truncate(&mut self, new_len: u64) {
        if new_len >= self.len {
            if new_len > self.len && self.page_size != 0 {
                let size = u64::from(self.page_size);
                let needed = new_len.div_ceil(size) as usize;
                self.pages
                    .resize_with(needed, || vec![0; size as usize].into_boxed_slice());
                self.len = new_len;
            }
            return;
        }
        let size = u64::from(self.page_size.max(1));
        self.pages.truncate(new_len.div_ceil(size) as usize);
        let tail = (new_len % size) as usize;
        if tail != 0 {
            // Keep bytes past the end zero, so a later growth cannot resurrect them.
            if let Some(last) = self.pages.last_mut() {
                last[tail..].fill(0);
            }
        }
        self.len = new_len;
    }

    /// Pages (1-based) that bytes `offset..offset + len` fall in.
    pub fn pages_touched(&self, offset: u64, len: usize) -> std::ops::RangeInclusive<u32> {
        let size = u64::from(self.page_size.max(1));
        let first = offset / size;
        let last = (offset + len.max(1) as u64 - 1) / size;
        (first as u32 + 1)..=(last as u32 + 1)
    }
}

impl std::fmt::Debug for PageImage {
    /// A summary: the bytes of a whole database are no use in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageImage")
            .field("page_size", &self.page_size)
            .field("db_pages", &self.db_pages())
            .field("len", &self.len)
            .finish()
    }
}

/// Where a checkpoint copies pages from: the live page store (the state right
/// after the last commit handed to the frame log), or an image in tests.
pub trait PageSource {
    fn page_size(&self) -> u32;
    fn db_pages(&self) -> u32;
    /// Appends page `pgno`'s bytes to `out`.
    fn copy_page(&self, pgno: u32, out: &mut Vec<u8>);
    /// False while a write transaction is open, commits wait to be taken, or
    /// a rolled-back transaction's leftover pages wait for the next commit:
    /// the pages would not match the last appended frame then.
    fn at_commit_boundary(&self) -> bool {
        true
    }
}

impl PageSource for PageImage {
    fn page_size(&self) -> u32 {
        self.page_size
    }

    fn db_pages(&self) -> u32 {
        PageImage::db_pages(self)
    }

    fn copy_page(&self, pgno: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(self.page(pgno).expect("page within the image"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_writes_across_pages_read_back() {
        let mut image = PageImage::empty();
        image.write(&[1; 512], 0);
        assert_eq!(image.page_size(), 512);
        image.write(&[2; 700], 300);
        assert_eq!(image.db_pages(), 2);
        let mut buf = [0; 1000];
        assert_eq!(image.read(&mut buf, 0), 1000);
        assert_eq!(&buf[..300], &[1; 300][..]);
        assert_eq!(&buf[300..1000], &[2; 700][..]);
        image.truncate(600);
        assert_eq!(image.read(&mut buf, 0), 600);
        image.truncate(1024);
        assert_eq!(image.page(2).unwrap()[88..], [0; 424]);
    }

    #[test]
    fn re_paging_keeps_the_bytes() {
        let mut image = PageImage::empty();
        let bytes: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        image.write(&bytes[..1024], 0);
        image.write(&bytes[1024..], 1024);
        image.set_page_size(2048);
        assert_eq!(image.db_pages(), 2);
        assert_eq!(image.to_bytes(), bytes);
    }
}
