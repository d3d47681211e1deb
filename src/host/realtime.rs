//! The realtime channel: `GET {base}/events` kept open while sync runs,
//! read as Server-Sent Events (a stream, since `EventSource` cannot send the
//! bearer header); each poke goes to the sync client. It opens after the
//! first successful exchange (`connected`), reconnects with the shared
//! [`Backoff`] (0.5 s doubling to 10 s, jittered, reset by a delivered
//! message), reconnects at once when the network comes back, and is closed
//! while sync is paused.

use super::interface::{FetchId, HttpRequest, Output, Timer};
use super::Host;
use crate::engine::sync::{Backoff, Event, SplitMix64};
use ferrydb_protocol::ServerEvent;

/// Reconnect delays: from the first to the last, before jitter.
pub const RECONNECT_MS: (u64, u64) = (500, 10_000);

pub struct Realtime {
    state: State,
    backoff: Backoff,
    rng: SplitMix64,
}

#[derive(Debug, PartialEq)]
enum State {
    /// Not connected and not waiting: sync is paused, or never connected.
    Idle,
    /// A stream is open (or being opened).
    Open {
        stream: FetchId,
        /// Bytes of a message not yet complete.
        pending: Vec<u8>,
        delivered: bool,
    },
    /// Waiting out the backoff before reconnecting.
    Waiting,
}

impl Realtime {
    pub fn new(seed: u64) -> Realtime {
        Realtime {
            state: State::Idle,
            backoff: Backoff::new(RECONNECT_MS.0, RECONNECT_MS.1),
            rng: SplitMix64::new(seed),
        }
    }
}

impl Host {
    /// Sync is connected: the channel should be open or on its way.
    pub(super) fn realtime_ensure(&mut self) {
        if self
            .sync
            .as_ref()
            .is_some_and(|l| l.realtime.state == State::Idle)
        {
            self.realtime_connect();
        }
    }

    fn realtime_connect(&mut self) {
        let stream = self.fetch_id();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        link.realtime.state = State::Open {
            stream,
            pending: Vec::new(),
            delivered: false,
        };
        let request = HttpRequest {
            method: "GET",
            url: format!("{}/events", link.base),
            bearer: link.bearer.clone(),
            body: None,
            sends_writes: false,
        };
        self.out.push(Output::Stream { stream, request });
    }

    /// Sync was paused: close the channel, or stop waiting to reopen it.
    pub(super) fn realtime_close(&mut self) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        match std::mem::replace(&mut link.realtime.state, State::Idle) {
            State::Open { stream, .. } => self.out.push(Output::CloseStream { stream }),
            State::Waiting => self.out.push(Output::ClearTimer(Timer::Realtime)),
            State::Idle => {}
        }
    }

    /// The network is back: a reconnect waiting out its backoff goes now.
    pub(super) fn realtime_wake(&mut self) {
        if self
            .sync
            .as_ref()
            .is_some_and(|l| l.realtime.state == State::Waiting)
        {
            self.out.push(Output::ClearTimer(Timer::Realtime));
            self.realtime_connect();
        }
    }

    pub(super) fn realtime_reconnect(&mut self) {
        let paused = self.engine.sync_status().is_some_and(|s| s.paused);
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        if link.realtime.state != State::Waiting {
            return;
        }
        if paused {
            link.realtime.state = State::Idle;
        } else {
            self.realtime_connect();
        }
    }

    pub(super) fn stream_data(&mut self, from: FetchId, bytes: &[u8]) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let State::Open {
            stream,
            pending,
            delivered,
        } = &mut link.realtime.state
        else {
            return;
        };
        if *stream != from {
            return;
        }
        pending.extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let message: Vec<u8> = pending.drain(..end + 2).collect();
            *delivered = true;
            events.extend(server_events(&message));
        }
        for event in events {
            self.sync_event(Event::Server(event));
        }
    }

    /// The stream ended: wait out the backoff (afresh if it delivered),
    /// then reconnect.
    pub(super) fn stream_ended(&mut self, ended: FetchId) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let realtime = &mut link.realtime;
        let delivered = match &realtime.state {
            State::Open {
                stream, delivered, ..
            } if *stream == ended => *delivered,
            _ => return,
        };
        if delivered {
            realtime.backoff.reset();
        }
        let delay = realtime.backoff.next_delay(&mut realtime.rng);
        realtime.state = State::Waiting;
        let at = self.at(delay);
        self.out.push(Output::SetTimer {
            timer: Timer::Realtime,
            at,
        });
    }
}

/// The `data:` lines of one SSE message that parse as server events
/// (comments such as `: keepalive` and unknown events are skipped).
fn server_events(message: &[u8]) -> Vec<ServerEvent> {
    String::from_utf8_lossy(message)
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim_start()).ok())
        .filter_map(|json| ServerEvent::decode(json, "").ok())
        .collect()
}
