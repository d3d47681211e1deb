//! Pokes across server instances: each store holds one connection that
//! `LISTEN`s on the poke channel, and every push that processed something
//! notifies it in its own transaction (so the poke is sent exactly when the
//! change commits, and only then). Every instance, the pushing one included,
//! hears the notification and pokes its realtime clients.
//!
//! Each notification carries the version its push reached; the listener
//! pokes it with the version of the notification it heard before, so
//! protocol v2 channels route the poke by what was written between the two
//! (`sync::route`, run by each instance for its own channels). The payload
//! stays a bare version, so instances of the previous release still read it.
//!
//! The connection is checked with a heartbeat and reopened with backoff when
//! it drops; after reconnecting the listener pokes once with the current
//! version, since notifications sent while it was away are lost (pokes are
//! hints: a client that missed one still pulls on its interval).

use super::error::{connect_error, describe};
use super::schema::POKE_CHANNEL;
use crate::store::{Pokes, Result};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How often the listener checks that its connection still answers.
const HEARTBEAT: Duration = Duration::from_secs(15);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// The `application_name` of the listening connection (visible in
/// `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "ferrydb-listen";

/// The listening task; stopped when the store is dropped.
pub struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Listener {
    /// Connects and starts listening; returns once `LISTEN` took effect, so
    /// every notification after `start` returns reaches `pokes`.
    pub async fn start(
        mut config: Config,
        tls: MakeRustlsConnect,
        pokes: Pokes,
    ) -> Result<Listener> {
        config.application_name(APPLICATION_NAME);
        let (ready, started) = oneshot::channel();
        let task = tokio::spawn(run(config, tls, pokes, ready));
        match started.await {
            Ok(Ok(())) => Ok(Listener(task)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(crate::store::StoreError::Internal(
                "the poke listener stopped while starting".into(),
            )),
        }
    }
}

async fn run(
    config: Config,
    tls: MakeRustlsConnect,
    pokes: Pokes,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready);
    let mut retry = FIRST_RETRY;
    loop {
        match listen_once(&config, &tls, &pokes, &mut ready).await {
            // Served for a while before it dropped: reconnect at once.
            Ok(()) => retry = FIRST_RETRY,
            Err(message) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(message));
                    return;
                }
                tracing::warn!(error = %message, "poke listener: reconnecting");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// One connection's life. `Ok` when it ends after having listened.
async fn listen_once(
    config: &Config,
    tls: &MakeRustlsConnect,
    pokes: &Pokes,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    let (client, mut connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| connect_error(&e))?;
    let (notifications, mut inbox) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if notifications.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "poke listener: connection failed");
                    break;
                }
            }
        }
    });
    let result = serve(&client, pokes, ready, &mut inbox).await;
    drop(client);
    driver.abort();
    result
}

async fn serve(
    client: &Client,
    pokes: &Pokes,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
    inbox: &mut mpsc::UnboundedReceiver<String>,
) -> Result<()> {
    client
        .batch_execute(&format!("LISTEN {POKE_CHANNEL}"))
        .await
        .map_err(|e| connect_error(&e))?;
    // The version every notification from now on is after: where the first
    // one's commits are counted from.
    let mut heard: Option<i64> = client
        .query_one("SELECT value FROM _ferry_version", &[])
        .await
        .ok()
        .map(|row| row.get(0));
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Ok(()));
        }
        // A reconnect: pokes sent while we were away are lost, so poke once
        // (touching anything).
        None => {
            if let Some(version) = heard {
                pokes.send(version);
            }
        }
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            payload = inbox.recv() => match payload {
                Some(payload) => match payload.parse::<i64>() {
                    Ok(version) => {
                        let since = heard.filter(|since| *since < version);
                        heard = heard.max(Some(version));
                        match since {
                            Some(since) => pokes.send_after(version, since),
                            None => pokes.send(version),
                        }
                    }
                    Err(_) => tracing::warn!("poke listener: ignoring a notification that is not a version"),
                },
                None => return Ok(()),
            },
            _ = heartbeat.tick() => {
                let alive = tokio::time::timeout(HEARTBEAT, client.simple_query("SELECT 1")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return Ok(());
                }
            }
        }
    }
}
