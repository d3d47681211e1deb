//! The engine's synced side: the [`Replica`] of the app's tables over the
//! engine's database, the sans-IO [`SyncClient`] when the app syncs with a
//! server, and the mutations whose server outcome tabs are still waiting for.
//!
//! The engine stays the host contract of `docs/protocol.md` §9: sync events
//! in, effects out. `Changed` is consumed here (it refreshes live queries);
//! every other effect goes to the host, which does the I/O.

use super::database::{Database, TableSet};
use super::error::{Error, ErrorCode, Result};
use super::sync::{Effect, Replica, SyncClient, SyncConfig, SyncEvent, SyncStatus};
use super::value::Value;
use ferrydb_protocol::AppDefinition;
use serde::Serialize;

/// The server's final word on one mutation, for the tabs awaiting `server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub mutation_id: u64,
    /// `None`: the server committed it. Otherwise the server's rejection.
    pub rejection: Option<RejectionReason>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionReason {
    /// The server's rejection code (`forbidden`, `mutator_failed`, or an
    /// app-defined one): passed through unchanged.
    pub code: String,
    pub message: String,
}

pub struct Replication {
    pub replica: Replica,
    /// `None` when the app was opened without a server: mutations only queue.
    pub client: Option<SyncClient>,
    /// Mutations made since the worker started whose outcome no one has heard,
    /// ascending. A sorted `Vec`, not a `BTreeSet`: B-tree code is kilobytes of wasm.
    unsettled: Vec<u64>,
    /// Told to tabs that connect later, too: an `updateNeeded` is a state,
    /// not a moment.
    update_needed: Option<SyncEvent>,
    /// Mutations made since the worker started that are not on disk yet, as
    /// (mutation id, commit sequence number), ascending. See [`Self::saving`].
    unsaved: Vec<(u64, u64)>,
    /// The replica's files were deleted under it (`storage_cleared`): see
    /// [`Self::disk_gone`].
    disk_gone: bool,
}

/// What a sync event (or a mutation) asks of the host, besides live-query
/// updates: the effects to carry out and the outcomes to tell the tabs.
#[derive(Debug, Default)]
pub struct SyncWork {
    /// Every effect but `Changed`, in order.
    pub effects: Vec<Effect>,
    pub settled: Vec<Settled>,
    /// Tables whose contents changed (the engine refreshes live queries).
    pub changed: TableSet,
}

impl Replication {
    /// Opens the replica for `app_json`; `sync_seed` starts a sync client
    /// (its jitter seed) for an app that syncs with a server.
    pub fn open(
        db: &mut Database,
        app_json: &str,
        new_client_id: &str,
        sync_seed: Option<u64>,
    ) -> Result<Replication> {
        let (replica, _) = Replica::open(db, parse_app(app_json)?, new_client_id)?;
        Ok(Replication {
            replica,
            client: sync_seed.map(|seed| SyncClient::new(SyncConfig::default(), seed)),
            unsettled: Vec::new(),
            update_needed: None,
            unsaved: Vec::new(),
            disk_gone: false,
        })
    }

    /// This replica, just migrated for a newer build, replaces `older`: the
    /// outcomes tabs await and the mutations not yet on disk carry over,
    /// and a sync client starts afresh if one ran (or `sync_seed` asks for
    /// one). Afresh: the old one's requests carry the old schema version,
    /// and a server's `updateNeeded` to the old build is not this one's.
    pub fn take_over(&mut self, older: &mut Replication, sync_seed: Option<u64>) {
        self.unsettled = std::mem::take(&mut older.unsettled);
        self.unsaved = std::mem::take(&mut older.unsaved);
        self.disk_gone = older.disk_gone;
        let seed = older
            .client
            .as_mut()
            .map(SyncClient::next_seed)
            .or(sync_seed);
        if let Some(seed) = seed {
            self.start_client(seed);
        }
    }

    /// Starts a sync client for a replica opened without one.
    pub fn start_client(&mut self, seed: u64) {
        let mut client = SyncClient::new(SyncConfig::default(), seed);
        client.hold_from(self.unsaved.first().map(|&(id, _)| id));
        self.client = Some(client);
    }

    /// Mutation `mutation_id` committed as `seq`, which is not on disk yet.
    /// Until it is, it is not pushed: the server must never hold a mutation
    /// that a crash can take from the replica, or the replica, restarted
    /// from disk, would give its ID to a new mutation — which the server
    /// then skips as one it has already processed, and the new write is
    /// lost without a word.
    pub fn saving(&mut self, mutation_id: u64, seq: u64) {
        if self.disk_gone {
            return;
        }
        self.unsaved.push((mutation_id, seq));
        self.hold_pushes();
    }

    /// Commits up to `durable_seq` are on disk; returns whether that let
    /// mutations go to the server (the client should then be woken).
    pub fn saved_through(&mut self, durable_seq: u64) -> bool {
        let before = self.unsaved.len();
        self.unsaved.retain(|&(_, seq)| seq > durable_seq);
        let saved = self.unsaved.len() != before;
        if saved {
            self.hold_pushes();
        }
        saved
    }

    /// The replica's files were deleted: no restart comes back from them
    /// (the next life starts empty, under a new client ID), so no crash can
    /// hand a pushed mutation's ID to another, and mutations go to the
    /// server from memory, where they now live. Returns whether any were
    /// held (the client should then be woken).
    pub fn disk_gone(&mut self) -> bool {
        self.disk_gone = true;
        let held = !self.unsaved.is_empty();
        self.unsaved.clear();
        self.hold_pushes();
        held
    }

    fn hold_pushes(&mut self) {
        if let Some(client) = self.client.as_mut() {
            client.hold_from(self.unsaved.first().map(|&(id, _)| id));
        }
    }

    pub fn app(&self) -> &AppDefinition {
        self.replica.app()
    }

    /// Refuses a tab whose app is older than the one this worker runs: an
    /// older build must not write under a newer schema.
    pub fn check_not_older(&self, version: u32) -> Result<()> {
        let running = self.app().version;
        if version < running {
            return Err(outdated(running));
        }
        Ok(())
    }

    pub fn status(&self) -> Option<&SyncStatus> {
        self.client.as_ref().map(SyncClient::status)
    }

    /// The tables the replica is still waiting for (live queries reading
    /// one report `complete: false`). Syncing by subscription: the tables
    /// of every wanted subscription still `pending`. Syncing everything
    /// (v1): every synced table, until the first download has finished.
    /// Without a server nothing is awaited.
    pub fn incomplete_tables(&self) -> TableSet {
        let Some(client) = &self.client else {
            return TableSet::new();
        };
        if self.replica.by_subscription() {
            self.replica.pending_tables()
        } else if self.replica.cookie().is_none() || client.status().initial_sync.is_some() {
            self.replica.synced_tables().clone()
        } else {
            TableSet::new()
        }
    }

    /// Events a tab that connects now must hear (they describe a state).
    pub fn sticky_events(&self) -> impl Iterator<Item = &SyncEvent> {
        self.update_needed.iter()
    }

    /// A mutation was queued: its outcome is awaited.
    pub fn await_outcome(&mut self, mutation_id: u64) {
        if let Err(at) = self.unsettled.binary_search(&mutation_id) {
            self.unsettled.insert(at, mutation_id);
        }
    }

    /// Feeds one event to the sync client (if there is one) at time `now`.
    pub fn handle(
        &mut self,
        now: super::Now,
        event: super::sync::Event,
        db: &mut Database,
    ) -> Result<SyncWork> {
        let Some(client) = self.client.as_mut() else {
            return Ok(SyncWork::default());
        };
        let effects = client.handle(now, event, &mut self.replica, db)?;
        let mut work = SyncWork::default();
        for effect in effects {
            match effect {
                Effect::Changed(tables) => work.changed.extend(tables),
                Effect::Emit(event @ SyncEvent::UpdateNeeded { .. }) => {
                    self.update_needed = Some(event.clone());
                    work.effects.push(Effect::Emit(event));
                }
                other => work.effects.push(other),
            }
        }
        work.settled = self.settle(db)?;
        Ok(work)
    }

    /// Which awaited mutations the server has decided on, read from the
    /// replica's state rather than from replies, so a reply the client
    /// ignored (late, duplicated) cannot settle anything by mistake.
    fn settle(&mut self, db: &mut Database) -> Result<Vec<Settled>> {
        let mut settled = Vec::new();
        for &id in &self.unsettled {
            let key = [Value::Integer(id as i64)];
            let outbox = db.rows("SELECT confirmed FROM _ferry_outbox WHERE id = ?1", &key)?;
            if let Some(row) = outbox.rows.first() {
                if row[0] == Value::Integer(1) {
                    settled.push(Settled {
                        mutation_id: id,
                        rejection: None,
                    });
                }
                continue;
            }
            let rejected = db.rows(
                "SELECT code, message FROM _ferry_rejections WHERE mutation_id = ?1",
                &key,
            )?;
            let rejection = rejected.rows.first().map(|r| RejectionReason {
                code: r[0].text(),
                message: r[1].text(),
            });
            // Neither queued nor rejected: confirmed and acknowledged, gone.
            settled.push(Settled {
                mutation_id: id,
                rejection,
            });
        }
        // `settled` is ascending too, as `unsettled` was walked in order.
        self.unsettled
            .retain(|id| settled.binary_search_by_key(id, |s| s.mutation_id).is_err());
        Ok(settled)
    }
}

/// Parses an app definition a tab sent (`invalid_app` if it is not one).
pub fn parse_app(app_json: &str) -> Result<AppDefinition> {
    AppDefinition::from_json(app_json).map_err(|e| Error::Sync {
        code: ErrorCode::InvalidApp,
        message: e.to_string(),
    })
}

/// `app_outdated` for a tab of an app older than `running`, the schema
/// version the worker runs.
pub fn outdated(running: u32) -> Error {
    Error::Sync {
        code: ErrorCode::AppOutdated,
        message: format!(
            "a newer build of this app (schema version {running}) opened this database; \
             this tab runs an older one: reload"
        ),
    }
}

#[cfg(test)]
mod tests;
