//! Which tab the worker asks for a token, and what to do when it does not
//! answer. Sans-IO like the [`SyncClient`](super::SyncClient): the host posts
//! the asks, runs one deadline timer per ask and reports answers, deadlines
//! and departed tabs; this decides.
//!
//! - One tab is asked at a time: an auth provider may rotate a refresh token,
//!   and several tabs refreshing at once can sign the user out.
//! - A tab that lets an ask pass its deadline (frozen, hung, busy) is
//!   *unresponsive*: the ask moves on at once to a tab that is not, and
//!   unresponsive tabs are asked only when no other tab can be. Any answer,
//!   even one too late to use, makes a tab responsive again.
//! - With no tab left to ask, the client is told `TokenFailed`
//!   (`auth_required`) and asks again after its backoff.

use super::events::Event;
use crate::engine::live::TabId;

/// How long a tab has to answer an ask.
pub const TOKEN_TIMEOUT_MS: u64 = 10_000;

/// A connected tab as the token asks see it: `None` if it does not sync,
/// else whether it has an auth provider.
pub type TokenTab = (TabId, Option<bool>);

/// What the host must do about a token.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenAsk {
    /// Post `needToken {ask}` to `tab`; if no answer comes within
    /// [`TOKEN_TIMEOUT_MS`], report [`TokenAsks::timed_out`]`(tab, ask)`.
    Ask { tab: TabId, ask: u32 },
    /// Feed this event to the sync client now (`Token(None)` or `TokenFailed`).
    Answer(Event),
}

#[derive(Debug)]
pub struct TokenAsks {
    /// The ask waiting for an answer.
    asked: Option<(TabId, u32)>,
    next_ask: u32,
    /// Tabs that let an ask time out and have not answered since, in the
    /// order they did.
    unresponsive: Vec<TabId>,
}

impl Default for TokenAsks {
    fn default() -> Self {
        TokenAsks {
            asked: None,
            next_ask: 1,
            unresponsive: Vec::new(),
        }
    }
}

impl TokenAsks {
    /// The sync client wants a token (`Effect::NeedToken`). `tabs` are the
    /// connected tabs in connection order.
    pub fn need(&mut self, tabs: &[TokenTab]) -> TokenAsk {
        let with_auth = || tabs.iter().filter(|(_, auth)| *auth == Some(true));
        let responsive = with_auth()
            .map(|&(tab, _)| tab)
            .find(|tab| !self.unresponsive.contains(tab));
        // Else the tab that went quiet longest ago: it has had the most time to come back.
        let longest_quiet = || {
            self.unresponsive
                .iter()
                .copied()
                .find(|tab| with_auth().any(|&(t, _)| t == *tab))
        };
        match responsive.or_else(longest_quiet) {
            Some(tab) => {
                let ask = self.next_ask;
                self.next_ask += 1;
                self.asked = Some((tab, ask));
                TokenAsk::Ask { tab, ask }
            }
            None => {
                self.asked = None;
                if tabs.iter().any(|(_, auth)| *auth == Some(false)) {
                    // A tab syncs without auth: send no token.
                    TokenAsk::Answer(Event::Token(None))
                } else {
                    TokenAsk::Answer(Event::TokenFailed("no open tab can provide a token".into()))
                }
            }
        }
    }

    /// `tab` answered ask `ask` (`Ok(None)`: no auth). Returns the event for
    /// the sync client, or `None` for an answer that is no longer wanted
    /// (answered already, timed out, or the replica was replaced).
    pub fn answered(
        &mut self,
        tab: TabId,
        ask: u32,
        answer: Result<Option<String>, String>,
    ) -> Option<Event> {
        self.unresponsive.retain(|&t| t != tab);
        if self.asked != Some((tab, ask)) {
            return None;
        }
        self.asked = None;
        Some(match answer {
            Ok(token) => Event::Token(token),
            Err(why) => Event::TokenFailed(why),
        })
    }

    /// The deadline of ask `ask` to `tab` passed. If that ask is still
    /// waiting, the tab is marked unresponsive and the ask moves on: to a
    /// responsive tab if there is one, else the client is told it failed.
    pub fn timed_out(&mut self, tab: TabId, ask: u32, tabs: &[TokenTab]) -> Option<TokenAsk> {
        if self.asked != Some((tab, ask)) {
            return None;
        }
        self.asked = None;
        self.unresponsive.retain(|&t| t != tab);
        self.unresponsive.push(tab);
        let others_responsive = tabs
            .iter()
            .any(|&(t, auth)| auth == Some(true) && !self.unresponsive.contains(&t));
        Some(if others_responsive {
            self.need(tabs)
        } else {
            TokenAsk::Answer(Event::TokenFailed(
                "the token provider did not answer".into(),
            ))
        })
    }

    /// `tab` went away (`tabs` no longer holds it). If it was asked, ask again.
    pub fn tab_gone(&mut self, tab: TabId, tabs: &[TokenTab]) -> Option<TokenAsk> {
        self.unresponsive.retain(|&t| t != tab);
        match self.asked {
            Some((asked, _)) if asked == tab => Some(self.need(tabs)),
            _ => None,
        }
    }

    /// The sync client was replaced: an answer to its ask is not wanted.
    pub fn forget_ask(&mut self) {
        self.asked = None;
    }
}
