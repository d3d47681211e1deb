//! The realtime channel: pokes become pulls; reconnects back off with
//! jitter, start over after a delivery, and go at once when back online.

use super::*;

/// A syncing host whose realtime channel is open: (harness, tab, stream).
fn connected() -> (Harness, TabId, FetchId) {
    let (mut h, tab, pull) = syncing();
    h.reply(pull, pull_ok(1, false));
    let stream = h
        .out
        .iter()
        .find_map(|o| match o {
            Output::Stream { stream, .. } => Some(*stream),
            _ => None,
        })
        .expect("the channel opens once connected");
    h.take();
    (h, tab, stream)
}

fn reconnect_delay(h: &mut Harness, stream: FetchId) -> u64 {
    let now = h.env.now.get();
    h.input(Input::StreamEnded { stream });
    h.timer(Timer::Realtime).expect("a reconnect") - now
}

fn reopened(h: &mut Harness) -> FetchId {
    h.out
        .iter()
        .find_map(|o| match o {
            Output::Stream { stream, .. } => Some(*stream),
            _ => None,
        })
        .expect("reconnected")
}

#[test]
fn a_poke_split_across_chunks_becomes_one_pull() {
    let (mut h, _tab, stream) = connected();
    h.input(Input::StreamData {
        stream,
        bytes: b": keepalive\r\n\r\ndata: {\"type\":\"po".to_vec(),
    });
    assert!(h.take_fetches().is_empty(), "nothing complete yet");
    h.input(Input::StreamData {
        stream,
        bytes: b"ke\",\"cookie\":9}\n\n".to_vec(),
    });
    // Pokes are debounced by the client into one pull.
    let at = h.timer(Timer::Sync).unwrap();
    h.fire(Timer::Sync, at);
    assert_eq!(to("pull", &h.take_fetches()).len(), 1);
}

#[test]
fn reconnects_back_off_with_jitter_and_start_over_after_a_delivery() {
    let (mut h, _tab, mut stream) = connected();
    let mut delays = Vec::new();
    for _ in 0..6 {
        let delay = reconnect_delay(&mut h, stream);
        delays.push(delay);
        let at = h.timer(Timer::Realtime).unwrap();
        h.take();
        h.fire(Timer::Realtime, at);
        stream = reopened(&mut h);
        h.take();
    }
    for (delay, cap) in delays.iter().zip([500, 1_000, 2_000, 4_000, 8_000, 10_000]) {
        assert!((cap / 2..=cap).contains(delay), "{delays:?}");
    }
    // A connection that delivered a message resets the backoff.
    h.input(Input::StreamData {
        stream,
        bytes: b": keepalive\n\n".to_vec(),
    });
    let delay = reconnect_delay(&mut h, stream);
    assert!((250..=500).contains(&delay), "{delay}");
}

#[test]
fn coming_back_online_reconnects_at_once() {
    let (mut h, _tab, stream) = connected();
    reconnect_delay(&mut h, stream);
    h.take();
    h.input(Input::Network { online: true });
    assert!(h.out.contains(&Output::ClearTimer(Timer::Realtime)));
    reopened(&mut h);
}

#[test]
fn a_stream_of_a_closed_channel_is_not_followed() {
    let (mut h, tab, stream) = connected();
    h.call(tab, json!({ "type": "pauseSync" }));
    h.take();
    // The platform reports the aborted stream's end anyway: nothing follows.
    h.input(Input::StreamEnded { stream });
    assert_eq!(h.timer(Timer::Realtime), None);
    assert!(!h.out.iter().any(|o| matches!(o, Output::Stream { .. })));
}
