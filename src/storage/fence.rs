//! The fencing epoch of the leader-tab topology. Each new leader's worker
//! stores the epoch after the one it finds; before a file it writes becomes
//! visible, a worker checks that the stored epoch is still its own. So an
//! old leader that was frozen while writing and wakes after another took
//! over publishes nothing: the new leader's files are never overwritten
//! with frames it did not make.

/// The file the epoch is kept in, beside the log's (not a name the log owns).
pub const FILE: &str = "epoch";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A new leader's epoch: the one after `stored` (the file's bytes; none before the first leader).
    pub fn after(stored: &[u8]) -> Epoch {
        Epoch(read(stored) + 1)
    }

    /// How it is stored.
    pub fn bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// Whether this leader may still publish a file, `stored` being the epoch file now.
    pub fn admits(self, stored: &[u8]) -> bool {
        read(stored) == self.0
    }

    /// Whether a newer leader has claimed the files. Not the same as not
    /// being admitted: files the browser cleared (no epoch file) fence out
    /// every write, but the worker still leads, serving from memory.
    pub fn superseded(self, stored: &[u8]) -> bool {
        read(stored) > self.0
    }
}

/// An epoch's bytes; anything else (a missing file) is epoch 0.
fn read(stored: &[u8]) -> u64 {
    stored.try_into().map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_leader_takes_the_next_epoch_and_only_the_newest_may_write() {
        let first = Epoch::after(&[]);
        assert_eq!(first, Epoch(1));
        assert!(first.admits(&first.bytes()));
        let second = Epoch::after(&first.bytes());
        assert_eq!(second, Epoch(2));
        assert!(
            !first.admits(&second.bytes()),
            "the old leader is fenced out"
        );
        assert!(second.admits(&second.bytes()));
        // A third takes over from the second; neither older one may write.
        let third = Epoch::after(&second.bytes());
        assert!(!first.admits(&third.bytes()) && !second.admits(&third.bytes()));
    }

    #[test]
    fn an_unreadable_epoch_file_fences_out_every_leader_but_starts_the_count_again() {
        assert!(!Epoch(1).admits(b"torn"));
        assert_eq!(Epoch::after(b"torn"), Epoch(1));
    }

    #[test]
    fn only_a_newer_epoch_supersedes_a_leader() {
        assert!(Epoch(2).superseded(&Epoch(3).bytes()));
        assert!(!Epoch(2).superseded(&Epoch(2).bytes()));
        // The site's data cleared: no file, yet nobody else leads.
        assert!(!Epoch(2).superseded(&[]));
        assert!(!Epoch(2).admits(&[]));
    }
}
