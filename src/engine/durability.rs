//! The replica's durable side: the page store SQLite runs on, and the frame log
//! each commit goes to. The engine hands commits over as they happen; the host
//! performs the log's I/O and acknowledges it (see `crate::storage`).

use crate::storage::{self, FrameLog, IoRequest, PageStore, Recovered};

pub struct Durability {
    store: PageStore,
    log: FrameLog,
}

impl Durability {
    /// The page store over a recovered image, with the log that carries on from it,
    /// and a connection SQLite runs on.
    pub fn open(recovered: Recovered) -> storage::Result<(Self, rusqlite::Connection)> {
        let store = PageStore::new(recovered.image)?;
        let conn = store.open_connection()?;
        Ok((
            Durability {
                store,
                log: recovered.log,
            },
            conn,
        ))
    }

    /// Moves finished transactions into the log; returns the sequence number of
    /// the last one, if there was any.
    pub fn capture(&mut self) -> Option<u64> {
        let mut last = None;
        while let Some(commit) = self.store.take_commit() {
            last = Some(self.log.append(&commit));
        }
        last
    }

    /// Folds the log into segments if it has grown enough. Copying the pages
    /// takes a while on a large replica, so the host calls this when it is idle,
    /// not on the way to a reply. Returns whether a checkpoint started.
    pub fn checkpoint_if_due(&mut self) -> bool {
        self.log.checkpoint_due() && self.log.start_checkpoint(&self.store)
    }

    pub fn next_io(&mut self) -> Option<IoRequest> {
        self.log.next_io()
    }

    pub fn io_done(&mut self, id: u64, result: storage::Result<()>) {
        self.log.io_done(id, result);
    }

    pub fn durable_seq(&self) -> u64 {
        self.log.durable_seq()
    }

    pub fn appended_seq(&self) -> u64 {
        self.log.appended_seq()
    }

    /// The error that stopped log writes, if they are stopped.
    pub fn stalled(&self) -> Option<&storage::Error> {
        self.log.stalled()
    }

    pub fn resume(&mut self) {
        self.log.resume();
    }

    /// The files were deleted under the replica: the log stops for good.
    pub fn files_cleared(&mut self, why: String) {
        self.log.files_cleared(why);
    }
}
