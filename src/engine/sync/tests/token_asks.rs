//! Token asks: which tab is asked, and how an ask that gets no answer (a
//! frozen tab) moves on instead of holding sync up.

use super::*;
use crate::engine::live::TabId;

const A: TabId = 1;
const B: TabId = 2;
const C: TabId = 3;

/// Tabs `A`, `B` (auth providers) and `C` (does not sync), in connection order.
fn tabs() -> Vec<TokenTab> {
    vec![(A, Some(true)), (B, Some(true)), (C, None)]
}

fn ask(decision: TokenAsk) -> (TabId, u32) {
    match decision {
        TokenAsk::Ask { tab, ask } => (tab, ask),
        other => panic!("expected an ask, got {other:?}"),
    }
}

#[test]
fn the_first_tab_with_an_auth_provider_is_asked_and_its_answer_is_the_token() {
    let mut asks = TokenAsks::default();
    let (tab, n) = ask(asks.need(&tabs()));
    assert_eq!(tab, A);
    assert_eq!(
        asks.answered(A, n, Ok(Some("t".into()))),
        Some(Event::Token(Some("t".into())))
    );
    assert_eq!(asks.answered(A, n, Ok(Some("t".into()))), None, "once");
}

#[test]
fn a_tab_that_does_not_answer_in_time_is_passed_over_at_once_and_afterwards() {
    let mut asks = TokenAsks::default();
    let (tab, first) = ask(asks.need(&tabs()));
    assert_eq!(tab, A);
    // A is frozen: its deadline passes, B is asked without a failure in between.
    let (tab, second) = ask(asks.timed_out(A, first, &tabs()).unwrap());
    assert_eq!(tab, B);
    assert_eq!(
        asks.answered(B, second, Ok(Some("b".into()))),
        Some(Event::Token(Some("b".into())))
    );
    // The next ask skips A while it stays quiet...
    let (tab, third) = ask(asks.need(&tabs()));
    assert_eq!(tab, B);
    assert_eq!(
        asks.answered(B, third, Ok(Some("b".into()))),
        Some(Event::Token(Some("b".into())))
    );
    // ...and its late answer is not used, but shows it is back.
    assert_eq!(asks.answered(A, first, Ok(Some("late".into()))), None);
    assert_eq!(ask(asks.need(&tabs())).0, A);
}

#[test]
fn when_every_tab_is_quiet_the_client_is_told_and_the_quietest_longest_is_asked_next() {
    let mut asks = TokenAsks::default();
    let (_, first) = ask(asks.need(&tabs()));
    let (_, second) = ask(asks.timed_out(A, first, &tabs()).unwrap());
    assert!(matches!(
        asks.timed_out(B, second, &tabs()),
        Some(TokenAsk::Answer(Event::TokenFailed(_)))
    ));
    // After the client's backoff: A went quiet first, so it is tried first.
    let (tab, third) = ask(asks.need(&tabs()));
    assert_eq!(tab, A);
    assert_eq!(
        asks.answered(A, third, Ok(Some("a".into()))),
        Some(Event::Token(Some("a".into())))
    );
}

#[test]
fn a_deadline_after_the_answer_changes_nothing() {
    let mut asks = TokenAsks::default();
    let (_, n) = ask(asks.need(&tabs()));
    asks.answered(A, n, Ok(None));
    assert_eq!(asks.timed_out(A, n, &tabs()), None);
    assert_eq!(
        ask(asks.need(&tabs())).0,
        A,
        "A answered, so it is not quiet"
    );
}

#[test]
fn a_provider_that_throws_fails_the_ask() {
    let mut asks = TokenAsks::default();
    let (_, n) = ask(asks.need(&tabs()));
    assert_eq!(
        asks.answered(A, n, Err("signed out".into())),
        Some(Event::TokenFailed("signed out".into()))
    );
}

#[test]
fn an_asked_tab_that_closes_hands_the_ask_to_another() {
    let mut asks = TokenAsks::default();
    let (_, n) = ask(asks.need(&tabs()));
    let left = vec![(B, Some(true)), (C, None)];
    let (tab, m) = ask(asks.tab_gone(A, &left).unwrap());
    assert_eq!(tab, B);
    assert_eq!(asks.answered(A, n, Ok(None)), None);
    assert!(
        asks.tab_gone(C, &[(B, Some(true))]).is_none(),
        "C was not asked"
    );
    assert_eq!(asks.answered(B, m, Ok(None)), Some(Event::Token(None)));
}

#[test]
fn without_an_auth_provider_a_syncing_tab_means_no_token_and_no_tab_means_failure() {
    let mut asks = TokenAsks::default();
    assert_eq!(
        asks.need(&[(C, None), (B, Some(false))]),
        TokenAsk::Answer(Event::Token(None))
    );
    assert!(matches!(
        asks.need(&[(C, None)]),
        TokenAsk::Answer(Event::TokenFailed(_))
    ));
}

#[test]
fn an_answer_to_the_replaced_clients_ask_is_dropped() {
    let mut asks = TokenAsks::default();
    let (_, n) = ask(asks.need(&tabs()));
    asks.forget_ask();
    assert_eq!(asks.answered(A, n, Ok(None)), None);
    assert_eq!(asks.timed_out(A, n, &tabs()), None);
}
