//! Hearing about appends made by other processes: LISTEN on the log head's
//! channel.
//!
//! Every write transaction that moves the head runs
//! `pg_notify('<schema>_log_head', <new head position>)`; PostgreSQL delivers
//! it to every listening session when, and only when, that transaction
//! commits. This task keeps one connection listening and moves the store's
//! head watch, so subscriptions in this process wake up at once, whoever
//! appended. If the connection drops it reconnects with back-off; after each
//! (re)connect it reads the head once, so nothing that happened in between
//! is missed (and subscriptions poll as well).

use crate::connect::{describe, pg_error, Connector};
use crate::sql::Sql;
use seatledger_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// The first wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Start listening. The returned receiver answers once the first LISTEN is
/// in place (or with why it is not).
pub(crate) fn spawn(
    connector: Arc<Connector>,
    sql: Arc<Sql>,
    watch: Arc<watch::Sender<u64>>,
) -> (JoinHandle<()>, oneshot::Receiver<Result<(), StoreError>>) {
    let (ready, first) = oneshot::channel();
    let task = tokio::spawn(run(connector, sql, watch, ready));
    (task, first)
}

async fn run(
    connector: Arc<Connector>,
    sql: Arc<Sql>,
    watch: Arc<watch::Sender<u64>>,
    ready: oneshot::Sender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (listening_tx, listening) = oneshot::channel();
        let session = listen(&connector, &sql, &watch, listening_tx);
        tokio::pin!(session);
        // Wait until the LISTEN is in place (or the attempt fails), then for
        // the session to end.
        let outcome = tokio::select! {
            result = &mut session => Some(result),
            up = listening => {
                if up.is_ok() {
                    backoff = FIRST_BACKOFF;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                None
            }
        };
        let result = match outcome {
            Some(result) => result,
            None => session.await,
        };
        match result {
            Ok(()) => tracing::debug!(target = %connector.target, "the listening connection closed; reconnecting"),
            Err(e) => {
                tracing::warn!(target = %connector.target, error = %e, "listening for appends failed; reconnecting");
                if let Some(ready) = ready.take() {
                    // connect() reports this and gives up; nobody retries.
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening session: connect, LISTEN, catch up on the head, and follow
/// notifications until the connection ends.
async fn listen(
    connector: &Connector,
    sql: &Sql,
    watch: &Arc<watch::Sender<u64>>,
    listening: oneshot::Sender<()>,
) -> Result<(), StoreError> {
    let config = connector.config("listener");
    let (client, mut connection) = match tokio::time::timeout(connector.connect_timeout, config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(connector.connect_error(&e)),
        Err(_) => return Err(connector.connect_timed_out()),
    };
    // The connection is driven here rather than on its own task, because
    // notifications only come out of `poll_message`.
    let head_watch = Arc::clone(watch);
    let mut driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => match n.payload().parse::<u64>() {
                    Ok(position) => crate::bump(&head_watch, position),
                    Err(_) => tracing::warn!(payload = n.payload(), "a log head notification that is not a position"),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let setup = async {
        client
            .batch_execute(&format!("LISTEN \"{}\"", sql.channel))
            .await
            .map_err(|e| pg_error(format!("listening on channel {} at {}", sql.channel, connector.target), &e))?;
        // Anything committed before the LISTEN took effect is caught here.
        let row = client
            .query_one(&sql.head, &[])
            .await
            .map_err(|e| pg_error(format!("reading the log head at {}", connector.target), &e))?;
        let head: i64 = row.try_get(0).map_err(|e| pg_error("reading the log head", &e))?;
        crate::bump(watch, u64::try_from(head).unwrap_or(0));
        Ok::<(), StoreError>(())
    };
    let setup = tokio::select! {
        result = setup => result,
        ended = &mut driver => Err(ended_early(connector, ended)),
    };
    if let Err(e) = setup {
        driver.abort();
        return Err(e);
    }
    let _ = listening.send(());
    // `client` stays alive until here: dropping it would close the connection.
    let ended = (&mut driver).await;
    drop(client);
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %describe(&e), "the listening connection broke");
            Ok(())
        }
        Err(e) => Err(StoreError::Backend(format!("the listener's connection task failed: {e}"))),
    }
}

fn ended_early(
    connector: &Connector,
    ended: Result<Result<(), tokio_postgres::Error>, tokio::task::JoinError>,
) -> StoreError {
    let why = match ended {
        Ok(Ok(())) => "the server closed it".to_owned(),
        Ok(Err(e)) => describe(&e),
        Err(e) => e.to_string(),
    };
    StoreError::Unavailable(format!("the listening connection to {} ended while starting: {why}", connector.target))
}
