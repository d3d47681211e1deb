//! A set of page numbers: the pages a write transaction changed, or those the
//! log changed since the last checkpoint.
//!
//! A Vec, not a `BTreeSet<u32>`: each B-tree instantiation costs the wasm
//! ~5 KB. Insertions are appended unsorted, so a commit costs a push per page;
//! the Vec is sorted and deduplicated when read, and whenever it has grown to
//! twice its last deduplicated length, which keeps memory within twice the
//! set's size.

/// Appended entries tolerated before compacting a small set.
const SLACK: usize = 64;

#[derive(Debug, Default)]
pub(super) struct PageSet {
    pages: Vec<u32>,
    /// `pages[..sorted_len]` is sorted and free of duplicates.
    sorted_len: usize,
}

impl PageSet {
    pub(super) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// True if any page in `first..=last` is in the set.
    pub(super) fn any_in(&mut self, first: u32, last: u32) -> bool {
        self.compact();
        let sorted = &self.pages;
        let start = sorted.partition_point(|&pgno| pgno < first);
        sorted.get(start).is_some_and(|&pgno| pgno <= last)
    }

    /// The pages in ascending order, each once.
    pub(super) fn into_sorted(mut self) -> Vec<u32> {
        self.compact();
        self.pages
    }

    fn compact(&mut self) {
        if self.sorted_len == self.pages.len() {
            return;
        }
        self.pages.sort_unstable();
        self.pages.dedup();
        self.sorted_len = self.pages.len();
    }
}

impl Extend<u32> for PageSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, pages: I) {
        self.pages.extend(pages);
        if self.pages.len() > 2 * self.sorted_len + SLACK {
            self.compact();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PageSet;

    #[test]
    fn reads_sorted_and_deduplicated_whatever_the_insertion_order() {
        let mut set = PageSet::default();
        assert!(set.is_empty());
        for round in 0..100u32 {
            set.extend([round * 7 % 50 + 10, 12, 3]);
        }
        assert!(
            set.pages.len() < 2 * 50 + super::SLACK,
            "compacted as it grew"
        );
        assert!(!set.any_in(1, 2));
        assert!(set.any_in(1, 3));
        assert!(set.any_in(59, 100));
        assert!(!set.any_in(60, 100));
        let expected: Vec<u32> = [3].into_iter().chain(10..60).collect();
        assert_eq!(set.into_sorted(), expected);
    }
}
