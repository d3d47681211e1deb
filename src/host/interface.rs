//! The worker host's inputs and outputs: everything that crosses between the
//! [`Host`](super::Host) core and the platform that runs it (a SharedWorker
//! today; a leader tab's dedicated worker later). The platform turns
//! browser events into [`Input`]s and performs each [`Output`]; every
//! decision is the core's.

use super::tab_message::TabMessage;
use super::worker_message::WorkerMessage;
use crate::engine::live::TabId;
use crate::engine::Now;
use crate::storage::{self, IoRequest};

/// Something the platform tells the host.
#[derive(Debug)]
pub enum Input {
    /// A message from a tab, read (or not) by [`TabMessage::read`].
    Tab {
        tab: TabId,
        message: Result<TabMessage, super::tab_message::Undecodable>,
    },
    /// A tab is gone (its Web Lock was granted to the worker, or it said `bye`).
    TabGone { tab: TabId },
    /// A `Fetch` ended: its response, or `None` when no response came.
    Fetched {
        fetch: FetchId,
        response: Option<HttpResponse>,
    },
    /// Bytes of an open `Stream`'s body.
    StreamData { stream: FetchId, bytes: Vec<u8> },
    /// A `Stream` ended (closed by the server, failed, or never opened).
    StreamEnded { stream: FetchId },
    /// A timer set with `SetTimer` fired.
    TimerFired(Timer),
    /// The host asked to go on (`Output::Continue`).
    Continue,
    /// A `StorageIo` finished.
    StorageDone {
        id: u64,
        result: storage::Result<()>,
    },
    /// The browser deleted the replica's files under the worker.
    StorageCleared { why: String },
    /// `DeleteFiles` finished: the files are gone and `backend` is open
    /// afresh, its log to be written as `log` says.
    FilesDeleted {
        result: storage::Result<()>,
        backend: String,
        log: storage::LogConfig,
    },
    /// The network came back or went away.
    Network { online: bool },
}

/// Something the platform must do.
#[derive(Debug, PartialEq)]
pub enum Output {
    Post {
        tab: TabId,
        message: WorkerMessage,
    },
    /// Post to every connected tab.
    Broadcast(WorkerMessage),
    /// Request the tab's Web Lock: the grant means the tab is gone (`TabGone`).
    WatchTab {
        tab: TabId,
        lock: String,
    },
    /// Stop listening to the tab and close its port.
    CloseTab {
        tab: TabId,
    },
    /// An HTTP request; answer with `Fetched`.
    Fetch {
        fetch: FetchId,
        request: HttpRequest,
    },
    /// A streamed GET (the realtime channel); answer with `StreamData` and
    /// `StreamEnded`.
    Stream {
        stream: FetchId,
        request: HttpRequest,
    },
    /// Abort the stream; no `StreamEnded` is wanted.
    CloseStream {
        stream: FetchId,
    },
    /// Fire `TimerFired(timer)` at this monotonic time (`Now::monotonic`),
    /// replacing that timer if it is set.
    SetTimer {
        timer: Timer,
        at: u64,
    },
    ClearTimer(Timer),
    /// Perform one storage request; answer with `StorageDone`.
    StorageIo(IoRequest),
    /// Delete every file of the database and open the backend afresh;
    /// answer with `FilesDeleted`.
    DeleteFiles,
    /// Something went wrong that no tab is waiting to hear: for the console.
    Warn(String),
    /// Feed `Input::Continue` once the outputs before this one are under
    /// way (a fetch sent, a message posted): the host splits long work so
    /// that what it asked for first is not held back by it.
    Continue,
}

/// The host's timers: one of each at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The sync client's (`Effect::SetTimer`).
    Sync,
    /// The deadline of the token ask in flight.
    TokenDeadline,
    /// Writing to stalled storage again.
    StorageRetry,
    /// Reconnecting the realtime channel.
    Realtime,
    /// Folding the frame log into segments, once storage has been idle a while.
    Checkpoint,
    /// The earliest TTL of a sync subscription nothing holds.
    SyncSubscriptions,
}

impl Timer {
    pub const ALL: [Timer; 6] = [
        Timer::Sync,
        Timer::TokenDeadline,
        Timer::StorageRetry,
        Timer::Realtime,
        Timer::Checkpoint,
        Timer::SyncSubscriptions,
    ];

    /// A small index, for platforms that keep one handle per timer.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Names a fetch or stream; never reused, so a reply to a request of a
/// replaced sync client cannot be taken for a new one's.
pub type FetchId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `POST` with a JSON `body`, or `GET` without.
    pub method: &'static str,
    pub url: String,
    pub bearer: Option<String>,
    pub body: Option<String>,
    /// A push: it carries the replica's mutations, so a worker that
    /// another leader tab has taken over from must not send it.
    pub sends_writes: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// A pull page's `ferry-next-cookie` header
    /// ([`ferrydb_protocol::NEXT_COOKIE_HEADER`]), if it had one.
    pub next_cookie: Option<String>,
}

/// What the host reads from its platform: the time and randomness.
pub trait Env {
    fn now(&self) -> Now;
    /// A random seed (backoff jitter).
    fn seed(&self) -> u64;
    /// A client ID no other device has (`crypto.randomUUID()`).
    fn client_id(&self) -> String;
}
