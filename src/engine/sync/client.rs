//! The sync state machine: when to push, pull, retry, back off and ask for a
//! token. Sans-IO: [`SyncClient::handle`] takes the time and one [`Event`],
//! updates the replica through the given database, and returns [`Effect`]s
//! for the host to carry out.
//!
//! - Push whenever the outbox has unconfirmed mutations that are on disk
//!   and no push is in flight; pull when asked to (start, poke, after a
//!   push, `more`, interval).
//! - A download in pages (`more`) continues page by page; a poke that comes
//!   meanwhile is answered by a pull after the last page, since the pages
//!   end at the version the download started from.
//! - One push and one pull in flight at most. Replies carry the request's id;
//!   a reply to a request that timed out or was abandoned is ignored.
//! - Failures (network, 5xx, timeouts, bad responses) back off exponentially
//!   with jitter; any success resets the backoff.
//! - 401: drop the token, ask for a new one, retry once; a second 401 in a
//!   row is reported (`Unauthorized`) and retried after backoff.
//! - 403 on a whole request: retrying cannot help, so sync stops with
//!   `Forbidden` until the app resumes it.
//! - Paused (by the app): nothing is sent and no timer is set; resuming
//!   sends at once.

use super::backoff::{Backoff, SplitMix64};
use super::error::{Error, Result};
use super::events::{
    Effect, Event, InitialSync, StatusError, StatusErrorCode as Code, SyncConfig, SyncEvent,
    SyncStatus,
};
use super::replica::Replica;
use crate::engine::database::Database;
use crate::engine::Now;
use ferrydb_protocol::{
    MismatchAction, PatchOp, PullResponse, PushResponse, SchemaMismatch, ServerEvent,
};

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Unknown,
    Requested,
    Ready(Option<String>),
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: u64,
    deadline: u64,
    /// Mutations sent (push only): a reply that processed none of them is
    /// treated as a failure, so a stuck server is not hammered.
    sent: usize,
}

pub struct SyncClient {
    config: SyncConfig,
    rng: SplitMix64,
    backoff: Backoff,
    online: bool,
    /// The server runs a newer schema: no more requests from this build.
    blocked: bool,
    /// The app paused sync: no requests, no timers.
    paused: bool,
    /// The server refused a whole request with 403: no more requests until
    /// the app resumes (which it does after fixing what was refused, e.g.
    /// signing in as the right user).
    forbidden: bool,
    token: Token,
    /// A 401 already led to a token refresh since the last success.
    refreshed: bool,
    push: Option<InFlight>,
    pull: Option<InFlight>,
    next_request: u64,
    /// A pull is wanted at (or after) this time.
    pull_at: Option<u64>,
    /// The last pull answered `more`: the next one continues that download.
    /// A continuation does not answer a wish for a pull (`pull_at`): its
    /// pages end at the version the download started from, so a poke that
    /// came meanwhile still needs a pull after the last page.
    paging: bool,
    /// Protocol v2: the subscriptions of the last pull sent. The pages of
    /// a download carry them unchanged (the server computed the download
    /// for them); a change meanwhile is sent by the pull after the last page.
    sent_subscriptions: Option<Vec<ferrydb_protocol::Subscription>>,
    /// No request before this time (backing off).
    retry_at: Option<u64>,
    /// The periodic pull is due at this time.
    interval_at: Option<u64>,
    /// The timer the host holds, to avoid setting it again.
    timer_at: Option<u64>,
    status: SyncStatus,
    /// The status last sent out as an effect.
    reported: SyncStatus,
    /// The wall clock of the event being handled (for timestamps only).
    wall: u64,
    /// Mutations from this ID on are not on disk yet: not pushed (see
    /// `Replication::saving`). `None`: every queued mutation may go.
    held_from: Option<u64>,
}

impl SyncClient {
    /// `seed` drives the backoff jitter (and nothing else).
    pub fn new(config: SyncConfig, seed: u64) -> Self {
        SyncClient {
            backoff: Backoff::new(config.backoff_base_ms, config.backoff_max_ms),
            config,
            rng: SplitMix64::new(seed),
            online: false,
            blocked: false,
            paused: false,
            forbidden: false,
            token: Token::Unknown,
            refreshed: false,
            push: None,
            pull: None,
            next_request: 1,
            pull_at: None,
            paging: false,
            sent_subscriptions: None,
            retry_at: None,
            interval_at: None,
            timer_at: None,
            status: SyncStatus::default(),
            reported: SyncStatus::default(),
            wall: 0,
            held_from: None,
        }
    }

    pub fn status(&self) -> &SyncStatus {
        &self.status
    }

    /// A seed for the client that replaces this one (after an upgrade).
    pub fn next_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Holds back mutations from `first_unsaved` on (not on disk yet) until
    /// called again; the host sends `Mutated` once it lifts the hold.
    pub fn hold_from(&mut self, first_unsaved: Option<u64>) {
        self.held_from = first_unsaved;
    }

    /// Whether the client has nothing in flight and nothing scheduled soon
    /// (tests use it to detect quiescence).
    pub fn is_idle(&self) -> bool {
        self.push.is_none() && self.pull.is_none() && self.pull_at.is_none() && !self.paging
    }

    /// Whether a reply to request `id` would be taken now (it is the push or
    /// pull in flight), rather than ignored as late or abandoned: a host
    /// that traces replies, or a test that checks the replica after one,
    /// tells them apart with this.
    pub fn awaits(&self, id: u64) -> bool {
        [self.push, self.pull].iter().flatten().any(|r| r.id == id)
    }

    /// Handles one event at time `now` and returns what the host must do.
    /// Errors are SQLite failures of the replica itself; everything the
    /// network or the server can do wrong is handled here.
    ///
    /// All timing runs on `now.monotonic` (so do `SetTimer`'s times); the
    /// wall clock only stamps what people read (`last_synced_at`, rejection
    /// times), so setting the device's clock neither stalls nor rushes sync.
    pub fn handle(
        &mut self,
        now: Now,
        event: Event,
        replica: &mut Replica,
        db: &mut Database,
    ) -> Result<Vec<Effect>> {
        self.wall = now.wall;
        let now = now.monotonic;
        let mut out = Vec::new();
        match event {
            Event::Online => {
                self.online = true;
                self.backoff.reset();
                self.retry_at = None;
                self.want_pull(now);
            }
            Event::Offline => {
                self.online = false;
                // Their replies, if any still come, are ignored.
                self.push = None;
                self.pull = None;
                self.status.connected = false;
            }
            Event::Mutated => {}
            Event::Token(token) => self.token = Token::Ready(token),
            Event::TokenFailed(why) => {
                // Asked again once the backoff has passed.
                self.token = Token::Unknown;
                self.fail(now, StatusError::new(Code::AuthRequired, why));
            }
            Event::InvalidResponse { id, message } => {
                let was_pull = self.take_pull(id);
                if was_pull || self.take_push(id).is_some() {
                    if was_pull {
                        self.retry_pull(now);
                    }
                    self.fail(now, StatusError::new(Code::BadResponse, message));
                }
            }
            Event::PushResponse { id, response } => {
                if let Some(sent) = self.take_push(id) {
                    self.on_push(now, sent, response, replica, db, &mut out)?;
                }
            }
            Event::PullResponse { id, response } => {
                if self.take_pull(id) {
                    self.on_pull(now, response, replica, db, &mut out)?;
                }
            }
            Event::HttpError { id, status } => {
                let was_pull = self.take_pull(id);
                if was_pull || self.take_push(id).is_some() {
                    if was_pull {
                        self.retry_pull(now);
                    }
                    self.on_http_error(now, status, &mut out);
                }
            }
            Event::Server(ServerEvent::Poke { cookie }) => {
                if cookie.is_none() || cookie.as_ref() != replica.cookie() {
                    self.want_pull(now + self.config.poke_debounce_ms);
                }
            }
            Event::Timer => {
                self.timer_at = None;
                self.expire(now);
            }
            Event::Pause => {
                self.paused = true;
                self.status.paused = true;
                // Their replies, if any still come, are ignored; a push that
                // reached the server is pushed again later with the same
                // mutation IDs, which the server skips.
                self.push = None;
                self.pull = None;
                self.status.connected = false;
                // The host drops its timer when it sees `paused`; a new one
                // must be set on resume even for the same time.
                self.timer_at = None;
            }
            Event::SubscriptionsChanged => self.want_pull(now),
            Event::Resume => {
                self.paused = false;
                self.status.paused = false;
                if self.forbidden {
                    self.forbidden = false;
                    self.status.error = None;
                }
                self.backoff.reset();
                self.retry_at = None;
                self.want_pull(now);
            }
        }
        self.drive(now, replica, db, &mut out)?;
        self.update_status(replica, db, &mut out)?;
        Ok(out)
    }

    fn take_push(&mut self, id: u64) -> Option<usize> {
        match self.push {
            Some(p) if p.id == id => {
                self.push = None;
                Some(p.sent)
            }
            _ => None,
        }
    }

    fn take_pull(&mut self, id: u64) -> bool {
        let matched = self.pull.is_some_and(|p| p.id == id);
        if matched {
            self.pull = None;
        }
        matched
    }

    /// Wants a pull no later than `at` (an earlier wish stands: debouncing
    /// coalesces, it never postpones).
    fn want_pull(&mut self, at: u64) {
        self.pull_at = Some(self.pull_at.map_or(at, |t| t.min(at)));
    }

    /// A pull failed: send it again (after the backoff). A page of a
    /// download is retried as the continuation it was.
    fn retry_pull(&mut self, now: u64) {
        if !self.paging {
            self.want_pull(now);
        }
    }

    fn on_push(
        &mut self,
        now: u64,
        sent: usize,
        response: PushResponse,
        replica: &mut Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let results = match response {
            PushResponse::Ok { results } => results,
            PushResponse::SchemaMismatch(m) => return self.on_mismatch(now, m, replica, db, out),
        };
        let applied = replica.apply_push(db, &results, self.wall)?;
        if !applied.changed.is_empty() {
            out.push(Effect::Changed(applied.changed));
        }
        if !applied.rejected.is_empty() {
            out.push(Effect::Emit(SyncEvent::Rejected {
                rejections: applied.rejected,
            }));
        }
        if results.is_empty() && sent > 0 {
            self.fail(
                now,
                StatusError::new(
                    Code::BadResponse,
                    "the server processed none of the pushed mutations",
                ),
            );
        } else {
            self.succeed();
            // Acknowledgements (and the removal of rejected effects) come by pull.
            self.want_pull(now + self.config.poke_debounce_ms);
        }
        Ok(())
    }

    fn on_pull(
        &mut self,
        now: u64,
        response: PullResponse,
        replica: &mut Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let pull = match response {
            PullResponse::Ok(pull) => pull,
            PullResponse::SchemaMismatch(m) => return self.on_mismatch(now, m, replica, db, out),
        };
        match replica.apply_pull(db, &pull) {
            Ok(changed) => {
                if !changed.is_empty() {
                    out.push(Effect::Changed(changed));
                }
                self.succeed();
                if let Some(progress) = self.status.initial_sync.as_mut() {
                    let puts = pull
                        .patch
                        .iter()
                        .filter(|op| matches!(op, PatchOp::Put { .. }))
                        .count();
                    progress.received += puts as u64;
                    if !pull.subscriptions.is_empty() {
                        progress.total = Some(pull.subscriptions.iter().map(|s| s.total).sum());
                    }
                }
                self.paging = pull.more;
                if !pull.more {
                    self.status.initial_sync = None;
                    self.status.last_synced_at = Some(self.wall);
                    self.interval_at = self.config.pull_interval_ms.map(|i| now + i);
                }
            }
            Err(e @ Error::BadResponse(_)) => {
                self.retry_pull(now);
                self.fail(now, StatusError::new(Code::BadResponse, e.to_string()));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn on_mismatch(
        &mut self,
        now: u64,
        mismatch: SchemaMismatch,
        replica: &mut Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let server_schema_version = mismatch.server_schema_version;
        match mismatch.action {
            MismatchAction::UpdateApp => {
                self.blocked = true;
                self.status.error = Some(StatusError::new(
                    Code::UpdateNeeded,
                    format!(
                        "the server runs schema version {server_schema_version}; update the app"
                    ),
                ));
                out.push(Effect::Emit(SyncEvent::UpdateNeeded {
                    server_schema_version,
                }));
            }
            // A replica with no cookie is as fresh as it gets: a server that
            // still wants a reset is confused, so back off instead of looping.
            MismatchAction::ResetReplica if replica.cookie().is_some() => {
                out.push(Effect::Changed(replica.reset(db)?));
                // The download from empty starts over, and so does its count.
                self.status.initial_sync = None;
                self.paging = false;
                out.push(Effect::Emit(SyncEvent::SchemaReset {
                    server_schema_version,
                }));
                self.succeed();
                self.want_pull(now);
            }
            MismatchAction::ResetReplica | MismatchAction::RetryLater => {
                self.retry_pull(now);
                self.fail(
                    now,
                    StatusError::new(
                        Code::ServerBehind,
                        format!("the server (schema version {server_schema_version}) cannot serve this app yet"),
                    ),
                );
            }
        }
        Ok(())
    }

    fn on_http_error(&mut self, now: u64, status: u16, out: &mut Vec<Effect>) {
        if status == 403 {
            // The same request would be refused again: stop instead of
            // backing off forever.
            self.forbidden = true;
            self.retry_at = None;
            self.status.connected = false;
            self.status.error = Some(StatusError::new(
                Code::Forbidden,
                "the server refused this client's requests (HTTP 403); sync stopped until resumed",
            ));
            return;
        }
        if status == 401 {
            self.token = Token::Unknown;
            if !self.refreshed {
                self.refreshed = true;
                return;
            }
            out.push(Effect::Emit(SyncEvent::Unauthorized));
            self.fail(
                now,
                StatusError::new(Code::Unauthorized, "the server refused the token"),
            );
            return;
        }
        self.status.connected = false;
        let why = match status {
            0 => StatusError::new(Code::Network, "no response from the server"),
            s => StatusError::new(Code::ServerError, format!("the server answered HTTP {s}")),
        };
        self.fail(now, why);
    }

    fn succeed(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
        self.refreshed = false;
        self.status.connected = true;
        self.status.error = None;
    }

    fn fail(&mut self, now: u64, why: StatusError) {
        let delay = self.backoff.next_delay(&mut self.rng);
        self.retry_at = Some(now + delay);
        self.status.error = Some(why);
    }

    /// Requests past their deadline count as failed.
    fn expire(&mut self, now: u64) {
        let pull_late = self.pull.is_some_and(|p| p.deadline <= now);
        let push_late = self.push.is_some_and(|p| p.deadline <= now);
        if pull_late {
            self.pull = None;
            self.retry_pull(now);
        }
        if push_late {
            self.push = None;
        }
        if pull_late || push_late {
            self.status.connected = false;
            self.fail(
                now,
                StatusError::new(Code::Timeout, "the server did not answer in time"),
            );
        }
    }

    /// Sends what is due, asks for a token if one is needed, and sets the timer.
    fn drive(
        &mut self,
        now: u64,
        replica: &mut Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        if self.may_send() {
            if self.interval_at.is_some_and(|t| t <= now) {
                self.interval_at = None;
                self.want_pull(now);
            }
            if self.retry_at.is_some_and(|t| t <= now) {
                self.retry_at = None;
            }
            if self.retry_at.is_none() {
                self.send_due(now, replica, db, out)?;
            }
        }
        self.set_timer(now, out);
        Ok(())
    }

    fn send_due(
        &mut self,
        now: u64,
        replica: &mut Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let push = match self.push {
            None => replica.push_request(db, self.config.push_batch, self.held_from)?,
            Some(_) => None,
        };
        let pull_due =
            self.pull.is_none() && (self.paging || self.pull_at.is_some_and(|t| t <= now));
        if push.is_none() && !pull_due {
            return Ok(());
        }
        let token = match &self.token {
            Token::Ready(token) => token.clone(),
            Token::Requested => return Ok(()),
            Token::Unknown => {
                self.token = Token::Requested;
                out.push(Effect::NeedToken);
                return Ok(());
            }
        };
        let deadline = now + self.config.request_timeout_ms;
        if let Some(request) = push {
            let id = self.request_id();
            self.push = Some(InFlight {
                id,
                deadline,
                sent: request.mutations.len(),
            });
            out.push(Effect::SendPush {
                id,
                token: token.clone(),
                request,
            });
        }
        if pull_due {
            let id = self.request_id();
            self.pull = Some(InFlight {
                id,
                deadline,
                sent: 0,
            });
            if !self.paging {
                self.pull_at = None;
            }
            // A pull from no cookie downloads everything: report progress
            // until the last page (a retry of a page keeps the count).
            if replica.cookie().is_none() && self.status.initial_sync.is_none() {
                self.status.initial_sync = Some(InitialSync::default());
            }
            let mut request = replica.pull_request();
            if self.paging {
                request.subscriptions.clone_from(&self.sent_subscriptions);
            } else {
                self.sent_subscriptions.clone_from(&request.subscriptions);
            }
            out.push(Effect::SendPull { id, token, request });
        }
        Ok(())
    }

    /// Whether anything may be sent (or waited for) now.
    fn may_send(&self) -> bool {
        self.online && !self.blocked && !self.paused && !self.forbidden
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    fn set_timer(&mut self, now: u64, out: &mut Vec<Effect>) {
        let mut times = vec![self.push.map(|p| p.deadline), self.pull.map(|p| p.deadline)];
        if self.may_send() {
            match self.retry_at {
                Some(t) => times.push(Some(t)),
                None => times.push(self.pull_at.filter(|&t| t > now)),
            }
            times.push(self.interval_at);
        }
        let at = times.into_iter().flatten().min();
        if let Some(at) = at {
            if self.timer_at != Some(at) {
                self.timer_at = Some(at);
                out.push(Effect::SetTimer { at });
            }
        }
    }

    fn update_status(
        &mut self,
        replica: &Replica,
        db: &mut Database,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        self.status.uploading = self.push.is_some();
        self.status.downloading = self.pull.is_some();
        self.status.pending_mutations = replica.pending_count(db)?;
        if self.status != self.reported {
            self.reported = self.status.clone();
            out.push(Effect::Status(self.status.clone()));
        }
        Ok(())
    }
}
