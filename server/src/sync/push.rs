//! `POST push`: each mutation of a client runs once, in the order of its IDs,
//! inside the store's transaction. What was processed before is answered
//! from the record (a remembered rejection, else `alreadyProcessed`); a gap
//! stops the batch (the client resends); a mutation the server cannot run is
//! rejected with a code, and its `lastMutationID` still moves, so a client
//! never waits on it.

use super::{Result, StoreError};
use ferrydb_protocol::values::bind_args;
use ferrydb_protocol::{
    AppDefinition, Mutation, MutationResult, Mutator, PushRequest, RejectionCode, Value,
};
use std::future::Future;

/// Who is asking: the authenticated user and the client the request names.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub group_id: &'a str,
}

/// A client's record as the store holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientState {
    /// 0 for a client never seen.
    pub last_mutation_id: u64,
    /// The client, or its group, was first used by another user.
    pub foreign: bool,
}

/// Why a mutation was rejected: an answer to the client, not an error of the
/// server. Each message is worded here once, for every store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub code: RejectionCode,
    pub message: String,
}

impl Rejected {
    pub fn failed(mutator: &str, message: impl std::fmt::Display) -> Rejected {
        Rejected {
            code: RejectionCode::MutatorFailed,
            message: format!("mutator `{mutator}` failed: {message}"),
        }
    }

    pub fn forbidden(table: &str, user_id: &str) -> Rejected {
        Rejected {
            code: RejectionCode::Forbidden,
            message: format!(
                "the write rule of `{table}` does not allow this change for user {user_id}"
            ),
        }
    }
}

/// One processed mutation, for the store to record with it: the client's
/// new `lastMutationID` (and owner, on first use), the log entry, and the
/// rejection a retry must be answered with.
#[derive(Clone, Copy, Debug)]
pub struct Processed<'a> {
    pub who: Who<'a>,
    pub mutation_id: u64,
    pub name: &'a str,
    /// The version the mutation was processed at.
    pub version: i64,
    pub rejected: Option<&'a Rejected>,
}

/// A mutator to run: the one named in the app definition of the client's
/// schema version (a store keeps each served version's statements), with
/// its arguments in declaration order.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub schema_version: u32,
    pub mutator: &'a Mutator,
    pub args: &'a [Value],
}

/// What the core asks of a store inside one push transaction.
pub trait PushTx {
    /// The client's record, read without taking the lock that orders
    /// mutations (what is already processed can be answered without it).
    fn client_state(&self, who: Who<'_>) -> impl Future<Output = Result<ClientState>>;

    /// Takes the lock that orders all mutations (held until the transaction
    /// ends), then reads the client's record again: it may have moved while
    /// the lock was waited for.
    fn lock(&self, who: Who<'_>) -> impl Future<Output = Result<ClientState>>;

    /// The rejection remembered for a processed mutation, if it was rejected.
    fn rejection(
        &self,
        client_id: &str,
        mutation_id: u64,
    ) -> impl Future<Output = Result<Option<Rejected>>>;

    /// Moves the version by one for the next mutation and returns it. With a
    /// mutator, runs its statements on `args` (bound in declaration order)
    /// and checks every table's write rule on the first image and the
    /// current state of each row they touched; a failing statement or a
    /// broken rule is `Err(Rejected)` and none of the run's effects may
    /// survive [`PushTx::finish`]. Without one (it could not be bound),
    /// only the version moves.
    fn run(
        &self,
        user_id: &str,
        call: Option<Call<'_>>,
    ) -> impl Future<Output = Result<(i64, Result<(), Rejected>)>>;

    /// Ends what `run` left open (keeping or dropping its effects as the
    /// outcome says) and records the mutation.
    fn finish(&self, processed: Processed<'_>) -> impl Future<Output = Result<()>>;
}

/// A push's progress through one transaction.
#[derive(Debug, Default)]
pub struct Chunk {
    pub results: Vec<MutationResult>,
    /// The limit was reached with mutations left to process: the store
    /// commits and calls again from where this ended.
    pub more: bool,
    /// The version of the last mutation processed: the store pokes with it
    /// once the transaction commits.
    pub version: Option<i64>,
}

/// Processes `request.mutations[from..]` in `tx` with the mutators of `app`
/// (the definition serving the client's version: `Versions::serve`), at
/// most `limit` of them new (a store may bound its transactions), stopping
/// at a gap.
pub async fn push_mutations<T: PushTx>(
    tx: &T,
    app: &AppDefinition,
    user_id: &str,
    request: &PushRequest,
    from: usize,
    limit: usize,
) -> Result<Chunk> {
    let who = Who {
        user_id,
        client_id: &request.client_id,
        group_id: &request.client_group_id,
    };
    let mut last = owned(tx.client_state(who).await?, who)?;
    let mut locked = false;
    let mut processed = 0;
    let mut chunk = Chunk::default();
    for mutation in &request.mutations[from..] {
        if mutation.id > last && !locked {
            last = owned(tx.lock(who).await?, who)?;
            locked = true;
        }
        if mutation.id <= last {
            chunk
                .results
                .push(match tx.rejection(who.client_id, mutation.id).await? {
                    Some(r) => rejected(mutation.id, r),
                    None => MutationResult::AlreadyProcessed { id: mutation.id },
                });
            continue;
        }
        if mutation.id > last + 1 {
            // A gap: an earlier mutation has not arrived. Stop; the client resends.
            break;
        }
        if processed == limit {
            chunk.more = true;
            break;
        }
        let (version, outcome) = process(tx, app, who, mutation).await?;
        chunk.results.push(match outcome {
            Ok(()) => MutationResult::Ok { id: mutation.id },
            Err(r) => rejected(mutation.id, r),
        });
        last = mutation.id;
        processed += 1;
        chunk.version = Some(version);
    }
    Ok(chunk)
}

async fn process<T: PushTx>(
    tx: &T,
    app: &AppDefinition,
    who: Who<'_>,
    mutation: &Mutation,
) -> Result<(i64, Result<(), Rejected>)> {
    let (version, outcome) = match bind(app, mutation) {
        Ok((mutator, args)) => {
            let call = Call {
                schema_version: app.version,
                mutator,
                args: &args,
            };
            tx.run(who.user_id, Some(call)).await?
        }
        Err(rejected) => (tx.run(who.user_id, None).await?.0, Err(rejected)),
    };
    tx.finish(Processed {
        who,
        mutation_id: mutation.id,
        name: &mutation.name,
        version,
        rejected: outcome.as_ref().err(),
    })
    .await?;
    Ok((version, outcome))
}

/// The server's own mutator of that name with the arguments checked and
/// converted, or why not.
fn bind<'a>(
    app: &'a AppDefinition,
    mutation: &Mutation,
) -> Result<(&'a Mutator, Vec<Value>), Rejected> {
    let mutator = app.mutator(&mutation.name).ok_or_else(|| Rejected {
        code: RejectionCode::UnknownMutator,
        message: format!("no mutator named `{}` in the app definition", mutation.name),
    })?;
    let args = bind_args(mutator, &mutation.args).map_err(|e| Rejected {
        code: RejectionCode::BadArguments,
        message: e.to_string(),
    })?;
    Ok((mutator, args))
}

fn rejected(id: u64, r: Rejected) -> MutationResult {
    MutationResult::Rejected {
        id,
        code: r.code,
        message: r.message,
    }
}

/// The `lastMutationID`, or `Forbidden` for a client of another user.
fn owned(state: ClientState, who: Who<'_>) -> Result<u64> {
    if state.foreign {
        return Err(foreign(who));
    }
    Ok(state.last_mutation_id)
}

/// A request that names a client, or a client group, that another user's
/// requests created.
pub(super) fn foreign(who: Who<'_>) -> StoreError {
    StoreError::Forbidden(format!(
        "client `{}` (group `{}`) belongs to another user",
        who.client_id, who.group_id
    ))
}
