//! The PostgreSQL backend of the seatledger event store: several processes,
//! one ordered log.
//!
//! - Connecting: [`PostgresStore::connect`] takes a `postgres://` (or
//!   `postgresql://`) URL; [`PostgresStore::connect_with`] takes
//!   [`PostgresOptions`] too (timeouts, pool size, schema name). A server
//!   that cannot be reached, refuses the credentials, or has no such
//!   database is [`StoreError::Unavailable`] within the connect timeout,
//!   naming `user@host:port/database` and never the password.
//! - Layout: one schema (`seatledger`), versioned by
//!   `seatledger.schema_migrations` and migrated at start-up under an
//!   advisory lock: `events` (the global log), `streams` (each stream's last
//!   version, the compare-and-set of an append), `commands` (each command
//!   id's outcome), `checkpoints`, and `log_head` (one row: the last
//!   position, hash and recorded time). A trigger refuses UPDATE, DELETE
//!   and TRUNCATE on `events`.
//! - Writes: one writer task per store owns one connection and commits
//!   whatever queued up meanwhile as one transaction, each request in its own
//!   SAVEPOINT (see `src/writer.rs`). Each transaction locks the
//!   `log_head` row first, so the tail of the log is serialised across
//!   processes: positions are gapless, every event is linked to the one
//!   before it, and commits become visible in position order, so a reader of
//!   `position > last` never skips an event. `docs/postgres.md` says why that
//!   holds.
//! - Reads: a deadpool-postgres pool of connections; reads never wait for
//!   the writer.
//! - Live appends: every commit that moves the head sends a NOTIFY; a
//!   listener task per store moves [`EventStore::head_watch`], so
//!   subscriptions wake up for appends by any process.
//!
//! [`testing`] finds or starts a PostgreSQL server for tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connect;
mod listener;
mod rows;
mod schema;
mod sql;
pub mod testing;
mod writer;

use async_trait::async_trait;
use connect::{is_unavailable, pg_error, Connector};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use rows::{column, event_from_row, from_sql_int, outcome_from_row, to_sql_int};
use seatledger_store::chain::Verifier;
use seatledger_store::{
    validate_appends, AppendOutcome, BrokenLink, Checkpoint, Clock, Direction, EventStore, ImportOutcome, StoreError,
    StoredEvent, StreamAppend, VerifyReport, MAX_READ_COUNT,
};
use sql::Sql;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;
use writer::{Counters, Request, Writer};

pub use connect::{
    PostgresOptions, DEFAULT_APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_READ_POOL_SIZE, DEFAULT_SCHEMA,
};
pub use schema::SCHEMA_VERSION;

/// How many write requests may wait for the writer before callers wait to
/// queue: a bound on memory, and backpressure on a flood of appends.
const WRITE_QUEUE: usize = 1_024;

/// An [`EventStore`] in a PostgreSQL database, shared safely by any number
/// of processes.
pub struct PostgresStore {
    connector: Arc<Connector>,
    sql: Arc<Sql>,
    schema: String,
    pool: Pool,
    head: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
    requests: mpsc::Sender<Request>,
    operation_timeout: Duration,
    listener: JoinHandle<()>,
}

/// What this store's writer has done since it connected: how many group
/// commits, serving how many write requests, over how many connections.
/// `requests / commits` is the average group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Append and import requests those transactions served.
    pub requests: u64,
    /// Connections the writer opened (1 unless one broke).
    pub connects: u64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.connector.target)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writer stops by itself once its queue closes with the store.
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connect to the database the URL names (`postgres://user@host:port/db`
    /// or `postgresql://…`, with an optional password), with the default
    /// [`PostgresOptions`]; create or migrate the store's schema; and start
    /// the writer and the listener. See [`PostgresStore::connect_with`].
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<PostgresStore, StoreError> {
        Self::connect_with(url, clock, PostgresOptions::default()).await
    }

    /// Connect with explicit options. Fails with [`StoreError::Unavailable`]
    /// when the server cannot be reached within the connect timeout, refuses
    /// the credentials, or has no such database; with
    /// [`StoreError::Backend`] when the schema belongs to something else or
    /// is newer than this build, or the database is not UTF-8.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        options.validate()?;
        let connector = Arc::new(Connector::new(url, &options)?);
        let sql = Arc::new(Sql::new(&options.schema));
        let target = connector.target.clone();

        // Migrate on a connection of its own, closed afterwards.
        let (mut setup, setup_driver) = connector.connect("setup").await?;
        let checked = async {
            check_server(&setup, &target).await?;
            schema::migrate(&mut setup, &options.schema, &target).await?;
            let row = setup.query_one(&sql.head, &[]).await.map_err(|e| pg_error("reading the log head", &e))?;
            let head: i64 = column(&row, 0, &|| "reading the log head".to_owned())?;
            from_sql_int(head, "the log head position")
        };
        let checked = tokio::time::timeout(options.operation_timeout, checked).await;
        drop(setup);
        setup_driver.abort();
        let head_position = match checked {
            Ok(result) => result?,
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL at {target} did not finish setting up the store within {:?}",
                    options.operation_timeout
                )))
            }
        };

        let (head, _) = watch::channel(head_position);
        let head = Arc::new(head);
        let counters = Arc::new(Counters::default());
        let mut writer = Writer::new(
            Arc::clone(&connector),
            Arc::clone(&sql),
            clock,
            Arc::clone(&head),
            Arc::clone(&counters),
            options.operation_timeout,
        );
        writer.connect().await?;

        let manager = Manager::from_config(
            connector.config("reader"),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.read_pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.operation_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("building the read pool for {target}: {e}")))?;

        let (listener, listening) = listener::spawn(Arc::clone(&connector), Arc::clone(&sql), Arc::clone(&head));
        let started = tokio::time::timeout(options.connect_timeout + options.operation_timeout, listening).await;
        match started {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                listener.abort();
                return Err(e);
            }
            Ok(Err(_)) | Err(_) => {
                listener.abort();
                return Err(StoreError::Unavailable(format!("could not start listening for appends at {target}")));
            }
        }

        let (requests, queue) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(writer.run(queue));
        let store = PostgresStore {
            connector,
            sql,
            schema: options.schema,
            pool,
            head,
            counters,
            requests,
            operation_timeout: options.operation_timeout,
            listener,
        };
        // One read connection now, so that a server refusing more
        // connections fails here rather than at the first read.
        drop(store.reader().await?);
        Ok(store)
    }

    /// How the writer has grouped writes so far.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            connects: self.counters.connects.load(Ordering::Relaxed),
        }
    }

    /// The server this store talks to, as `user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.connector.target
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The NOTIFY channel every commit that moves the log head signals, with
    /// the new head position as its payload.
    pub fn notify_channel(&self) -> &str {
        &self.sql.channel
    }

    /// Hand a request to the writer and wait for its answer, which comes only
    /// after the group it joined has committed.
    async fn write<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Backend(format!("the writer for {} has stopped", self.connector.target));
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn reader(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => self.connector.connect_error(&e),
            PoolError::Timeout(kind) => StoreError::Unavailable(format!(
                "no read connection to PostgreSQL at {} ({kind:?} timed out)",
                self.connector.target
            )),
            other => StoreError::Backend(format!("the read pool for {} failed: {other}", self.connector.target)),
        })
    }

    /// Run one read statement on a pooled connection. Reads change nothing,
    /// so one that meets a broken connection (the server restarted, say) is
    /// tried once more on a fresh one.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)], doing: &str) -> Result<Vec<Row>, StoreError> {
        let mut retried = false;
        loop {
            let attempt = async {
                let client = self.reader().await?;
                let result = match client.prepare_cached(sql).await {
                    Ok(statement) => client.query(&statement, params).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(rows) => Ok(Ok(rows)),
                    Err(e) if is_unavailable(&e) => Ok(Err(pg_error(doing, &e))),
                    Err(e) => Err(pg_error(doing, &e)),
                }
            };
            match tokio::time::timeout(self.operation_timeout, attempt).await {
                Ok(Ok(Ok(rows))) => return Ok(rows),
                Ok(Ok(Err(lost))) if !retried => {
                    tracing::debug!(error = %lost, "a read met a broken connection; trying once more");
                    retried = true;
                }
                Ok(Ok(Err(lost))) => return Err(lost),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "{doing}: PostgreSQL at {} did not answer within {:?}",
                        self.connector.target, self.operation_timeout
                    )))
                }
            }
        }
    }

    /// The head row: the last position and its hash.
    async fn head_row(&self) -> Result<(u64, String), StoreError> {
        let rows = self.query(&self.sql.head, &[], "reading the log head").await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt("the log head row is missing".to_owned()))?;
        let what = || "reading the log head".to_owned();
        let position: i64 = column(row, 0, &what)?;
        Ok((from_sql_int(position, "the log head position")?, column(row, 1, &what)?))
    }
}

/// Refuse servers the store cannot keep its promises on: payloads must
/// round-trip byte for byte, so the database must be UTF-8.
async fn check_server(client: &tokio_postgres::Client, target: &str) -> Result<(), StoreError> {
    let row = client
        .query_one("SELECT current_setting('server_encoding'), current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| pg_error(format!("checking the server at {target}"), &e))?;
    let what = || format!("checking the server at {target}");
    let encoding: String = column(&row, 0, &what)?;
    let version: i32 = column(&row, 1, &what)?;
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(StoreError::Backend(format!(
            "the database at {target} is encoded in {encoding}; seatledger needs a UTF8 database \
             (CREATE DATABASE … ENCODING 'UTF8')"
        )));
    }
    if version < 110_000 {
        return Err(StoreError::Backend(format!(
            "PostgreSQL at {target} is version {version}; seatledger needs PostgreSQL 11 or newer"
        )));
    }
    Ok(())
}

/// Move a head watch forward to `position`, never back: notifications and
/// this process's own commits may arrive in any order.
pub(crate) fn bump(watch: &watch::Sender<u64>, position: u64) {
    watch.send_if_modified(|head| {
        if position > *head {
            *head = position;
            true
        } else {
            false
        }
    });
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        // Checked here, before the writer, so that malformed requests never
        // take a place in a group.
        validate_appends(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Request::Append { appends, reply }).await
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        let doing = format!("looking up command id {command_id}");
        let rows = self.query(&self.sql.command_outcome, &[&command_id], &doing).await?;
        rows.first().map(|row| outcome_from_row(row, command_id)).transpose()
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let count = max_count.min(MAX_READ_COUNT);
        if count == 0 {
            return Ok(Vec::new());
        }
        let (sql, from) = match direction {
            Direction::Forwards => match i64::try_from(from) {
                Ok(from) => (&self.sql.read_stream_forwards, from),
                // No version is that large.
                Err(_) => return Ok(Vec::new()),
            },
            // u64::MAX (or anything past the end) reads from the end.
            Direction::Backwards => (&self.sql.read_stream_backwards, i64::try_from(from).unwrap_or(i64::MAX)),
        };
        let limit = to_sql_int(count as u64, "read count")?;
        let rows = self.query(sql, &[&stream, &from, &limit], &format!("reading stream `{stream}`")).await?;
        let mut events: Vec<StoredEvent> = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            if let Some(previous) = events.last() {
                check_stream_order(previous, &event, direction)?;
            }
            events.push(event);
        }
        Ok(events)
    }

    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let count = max_count.min(MAX_READ_COUNT);
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let limit = to_sql_int(count as u64, "read count")?;
        let doing = format!("reading the log after position {after}");
        let rows = self.query(&self.sql.read_all, &[&after, &limit], &doing).await?;
        let mut events: Vec<StoredEvent> = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            let previous = events.last().map_or(after as u64, |e| e.position);
            if event.position <= previous {
                return Err(StoreError::Corrupt(format!(
                    "the log goes backwards: position {} follows position {previous}",
                    event.position
                )));
            }
            events.push(event);
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let doing = format!("reading the version of stream `{stream}`");
        let rows = self.query(&self.sql.stream_version, &[&stream], &doing).await?;
        rows.first()
            .map(|row| {
                let version: i64 = column(row, 0, &|| doing.clone())?;
                from_sql_int(version, &format!("the version of stream `{stream}`"))
            })
            .transpose()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        // From the database rather than the watch, so that appends by other
        // processes count at once.
        Ok(self.head_row().await?.0)
    }

    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        if events.is_empty() {
            return Ok(ImportOutcome::default());
        }
        self.write(|reply| Request::Import { events, reply }).await
    }

    /// Walk the hash chain up to the head as it stood when the walk began,
    /// then check that the head row agrees with the last event: a chain
    /// whose tail was removed is reported too, not only one that was changed.
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let (head, head_hash) = self.head_row().await?;
        let mut verifier = Verifier::default();
        let mut after = 0;
        let mut last: Option<StoredEvent> = None;
        'pages: while after < head {
            let page = self.read_all(after, MAX_READ_COUNT).await?;
            if page.is_empty() {
                break;
            }
            for event in page {
                if event.position > head {
                    break 'pages;
                }
                after = event.position;
                if !verifier.check(&event) {
                    return Ok(verifier.report());
                }
                last = Some(event);
            }
        }
        let report = verifier.report();
        let broken = match &last {
            Some(event) if event.position == head && event.hash == head_hash => return Ok(report),
            Some(event) if event.position == head => BrokenLink {
                position: event.position,
                event_id: event.id,
                stream: event.stream.to_string(),
                stream_version: event.stream_version,
                reason: format!("the log head records hash {head_hash} for this position, not the event's own"),
            },
            None if head == 0 => return Ok(report),
            _ => BrokenLink {
                position: head,
                event_id: Uuid::nil(),
                stream: String::new(),
                stream_version: 0,
                reason: format!(
                    "the log head records position {head}, but the log ends at position {}: events were removed",
                    last.as_ref().map_or(0, |e| e.position)
                ),
            },
        };
        Ok(VerifyReport { checked: report.checked, first_broken: Some(broken) })
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let doing = format!("loading checkpoint `{name}`");
        let rows = self.query(&self.sql.load_checkpoint, &[&name], &doing).await?;
        rows.first()
            .map(|row| {
                let position: i64 = column(row, 0, &|| doing.clone())?;
                Ok(Checkpoint {
                    position: from_sql_int(position, &format!("the position of checkpoint `{name}`"))?,
                    state: column(row, 1, &|| doing.clone())?,
                })
            })
            .transpose()
    }

    /// One statement, on its own: a checkpoint is one row, and saving it
    /// needs neither the writer nor the log head lock.
    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let position = to_sql_int(checkpoint.position, "checkpoint position")?;
        let doing = format!("saving checkpoint `{name}`");
        self.execute(&self.sql.save_checkpoint, &[&name, &position, &checkpoint.state], &doing).await
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        let doing = format!("deleting checkpoint `{name}`");
        self.execute(&self.sql.delete_checkpoint, &[&name], &doing).await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

impl PostgresStore {
    /// Run one autocommit write statement on a pooled connection. Not
    /// retried: a broken connection leaves unknown whether it ran.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)], doing: &str) -> Result<(), StoreError> {
        let attempt = async {
            let client = self.reader().await?;
            let statement = client.prepare_cached(sql).await.map_err(|e| pg_error(doing, &e))?;
            client.execute(&statement, params).await.map_err(|e| pg_error(doing, &e))?;
            Ok(())
        };
        tokio::time::timeout(self.operation_timeout, attempt).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "{doing}: PostgreSQL at {} did not answer within {:?}",
                self.connector.target, self.operation_timeout
            )))
        })
    }
}

/// Versions read from one stream follow each other without gaps or repeats;
/// anything else is damaged data, reported rather than handed on.
fn check_stream_order(previous: &StoredEvent, event: &StoredEvent, direction: Direction) -> Result<(), StoreError> {
    let expected = match direction {
        Direction::Forwards => previous.stream_version.checked_add(1),
        Direction::Backwards => previous.stream_version.checked_sub(1),
    };
    if Some(event.stream_version) == expected {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "stream `{}` has version {} right after version {}",
        event.stream, event.stream_version, previous.stream_version
    )))
}
