//! The one writer of a process: a task that owns one dedicated connection
//! and commits whatever is waiting as a group.
//!
//! Every write transaction first locks the single row of `log_head`. That
//! lock serialises the tail of the log across every process using the
//! database: positions are handed out gaplessly, each event is linked to the
//! one before it, and commits become visible in position order (see
//! `docs/postgres.md`). The price is one write transaction at a time per
//! database, so the writer amortises it: it takes every request queued while
//! it was busy (up to [`MAX_GROUP_REQUESTS`] or [`MAX_GROUP_EVENTS`]), runs
//! each inside its own SAVEPOINT, and commits once. A request that fails (a
//! conflict, a duplicate) is rolled back to its savepoint and answered with
//! its own error; nobody is answered before the COMMIT.
//!
//! If the connection breaks, the group fails with
//! [`StoreError::Unavailable`]: it was one transaction, so nothing of it is
//! half-written, and a retry with the same command id is safe. The writer
//! drops the connection and opens a new one for the next group.

use crate::connect::{pg_error, Connector};
use crate::rows::{column, from_sql_int, outcome_from_row, to_sql_int};
use crate::schema::hex32;
use crate::sql::Sql;
use chrono::{DateTime, Utc};
use seatledger_store::{
    chain, check_import_fits, dedup_by_event_ids, truncate_to_micros, validate_imported, AppendOutcome, Clock,
    EventLocation, ExpectedVersion, ImportOutcome, StoreError, StoredEvent, StreamAppend,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

/// The most requests one group commit takes.
pub(crate) const MAX_GROUP_REQUESTS: usize = 256;
/// A group stops taking requests once it holds this many events.
pub(crate) const MAX_GROUP_EVENTS: usize = 10_000;
/// One INSERT carries at most this many events…
const INSERT_CHUNK_EVENTS: usize = 2_000;
/// …and at most about this many payload bytes.
const INSERT_CHUNK_BYTES: usize = 16 * 1024 * 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer task, with where to send its result.
#[derive(Debug)]
pub(crate) enum Request {
    Append { appends: Vec<StreamAppend>, reply: Reply<Vec<AppendOutcome>> },
    Import { events: Vec<StoredEvent>, reply: Reply<ImportOutcome> },
}

/// What a request asks for, apart from where its answer goes.
enum Job {
    Append(Vec<StreamAppend>),
    Import(Vec<StoredEvent>),
}

impl Job {
    fn weight(&self) -> usize {
        match self {
            Job::Append(appends) => appends.iter().map(|a| a.events.len()).sum(),
            Job::Import(events) => events.len(),
        }
    }
}

/// Where a request's answer goes.
enum ReplyTo {
    Append(Reply<Vec<AppendOutcome>>),
    Import(Reply<ImportOutcome>),
}

/// A request's result, held until its group commits.
enum Answer {
    Append(Result<Vec<AppendOutcome>, StoreError>),
    Import(Result<ImportOutcome, StoreError>),
}

impl Answer {
    /// The message of a request that failed because the server went away.
    fn unavailable(self) -> Option<String> {
        match self {
            Answer::Append(Err(StoreError::Unavailable(m))) | Answer::Import(Err(StoreError::Unavailable(m))) => {
                Some(m)
            }
            _ => None,
        }
    }

    fn is_ok(&self) -> bool {
        match self {
            Answer::Append(r) => r.is_ok(),
            Answer::Import(r) => r.is_ok(),
        }
    }
}

impl ReplyTo {
    fn send(self, answer: Answer) {
        // A caller that stopped waiting has nobody to tell; what it asked for
        // is committed all the same, and a retry is deduplicated.
        match (self, answer) {
            (ReplyTo::Append(reply), Answer::Append(result)) => drop(reply.send(result)),
            (ReplyTo::Import(reply), Answer::Import(result)) => drop(reply.send(result)),
            (reply, _) => reply.fail(StoreError::Backend("the writer mixed up the answers of a group".to_owned())),
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            ReplyTo::Append(reply) => drop(reply.send(Err(error))),
            ReplyTo::Import(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// Why a whole group failed. Kept as words so that each request of the
/// group gets its own copy of the error.
#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    message: String,
    /// Whether the failure came while COMMIT was under way, when whether
    /// the group was committed is unknown.
    at_commit: bool,
}

#[derive(Debug, Clone, Copy)]
enum FailureKind {
    Unavailable,
    Backend,
    Corrupt,
}

impl Failure {
    fn new(kind: FailureKind, message: String) -> Self {
        Self { kind, message, at_commit: false }
    }

    fn from_error(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(message) => Failure::new(FailureKind::Unavailable, message),
            StoreError::Corrupt(message) => Failure::new(FailureKind::Corrupt, message),
            other => Failure::new(FailureKind::Backend, other.to_string()),
        }
    }

    fn pg(doing: impl std::fmt::Display, e: &tokio_postgres::Error) -> Self {
        Self::from_error(pg_error(doing, e))
    }

    fn is_unavailable(&self) -> bool {
        matches!(self.kind, FailureKind::Unavailable)
    }

    fn error(&self) -> StoreError {
        match self.kind {
            FailureKind::Unavailable => StoreError::Unavailable(self.message.clone()),
            FailureKind::Backend => StoreError::Backend(self.message.clone()),
            FailureKind::Corrupt => StoreError::Corrupt(self.message.clone()),
        }
    }
}

/// Counts of what the writer did, shared with the store for [`crate::WriteStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) connects: AtomicU64,
}

/// The head of the global log, as the locked `log_head` row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    position: u64,
    hash: [u8; 32],
    recorded_at: Option<DateTime<Utc>>,
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    driver: JoinHandle<()>,
    st: Statements,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client closes the connection; the server rolls back
        // whatever transaction was open on it.
        self.driver.abort();
    }
}

struct Statements {
    lock_head: Statement,
    move_head: Statement,
    command: Statement,
    locate: Statement,
    stream_version: Statement,
    create_stream: Statement,
    advance_stream: Statement,
    stream_versions: Statement,
    import_streams: Statement,
    insert_events: Statement,
    insert_command: Statement,
    import_commands: Statement,
}

impl Statements {
    async fn prepare(client: &Client, sql: &Sql) -> Result<Self, StoreError> {
        let prepare = |text: &str| {
            let text = text.to_owned();
            async move { client.prepare(&text).await.map_err(|e| pg_error(format!("preparing `{text}`"), &e)) }
        };
        let (lock_head, move_head, command, locate, stream_version, create_stream) = tokio::try_join!(
            prepare(&sql.lock_head),
            prepare(&sql.move_head),
            prepare(&sql.command_outcome),
            prepare(&sql.locate),
            prepare(&sql.stream_version),
            prepare(&sql.create_stream),
        )?;
        let (advance_stream, stream_versions, import_streams, insert_events, insert_command, import_commands) = tokio::try_join!(
            prepare(&sql.advance_stream),
            prepare(&sql.stream_versions),
            prepare(&sql.import_streams),
            prepare(&sql.insert_events),
            prepare(&sql.insert_command),
            prepare(&sql.import_commands),
        )?;
        Ok(Self {
            lock_head,
            move_head,
            command,
            locate,
            stream_version,
            create_stream,
            advance_stream,
            stream_versions,
            import_streams,
            insert_events,
            insert_command,
            import_commands,
        })
    }
}

/// The writer task's state.
pub(crate) struct Writer {
    connector: Arc<Connector>,
    sql: Arc<Sql>,
    clock: Arc<dyn Clock>,
    watch: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("target", &self.connector.target).finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer for the store; it connects when the first group arrives
    /// unless [`Writer::connect`] was called first.
    pub(crate) fn new(
        connector: Arc<Connector>,
        sql: Arc<Sql>,
        clock: Arc<dyn Clock>,
        watch: Arc<watch::Sender<u64>>,
        counters: Arc<Counters>,
        timeout: Duration,
    ) -> Self {
        Self { connector, sql, clock, watch, counters, timeout, conn: None }
    }

    /// Open the writer's connection now, so that start-up fails on a server
    /// that cannot be written to.
    pub(crate) async fn connect(&mut self) -> Result<(), StoreError> {
        self.conn = Some(self.open().await?);
        Ok(())
    }

    async fn open(&self) -> Result<Conn, StoreError> {
        let (client, driver) = self.connector.connect("writer").await?;
        let st = match Statements::prepare(&client, &self.sql).await {
            Ok(st) => st,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Conn { client, driver, st })
    }

    /// Serve requests until every sender is gone (the store was dropped).
    pub(crate) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        while let Some(first) = requests.recv().await {
            let mut group = vec![first];
            let mut weight = 0;
            let (mut jobs, mut replies) = (Vec::new(), Vec::new());
            loop {
                for request in group.drain(..) {
                    let (job, reply) = match request {
                        Request::Append { appends, reply } => (Job::Append(appends), ReplyTo::Append(reply)),
                        Request::Import { events, reply } => (Job::Import(events), ReplyTo::Import(reply)),
                    };
                    weight += job.weight();
                    jobs.push(job);
                    replies.push(reply);
                }
                if jobs.len() >= MAX_GROUP_REQUESTS || weight >= MAX_GROUP_EVENTS {
                    break;
                }
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            tracing::trace!(requests = jobs.len(), events = weight, "postgres group commit");
            self.commit_group(jobs, replies).await;
        }
    }

    async fn commit_group(&mut self, jobs: Vec<Job>, replies: Vec<ReplyTo>) {
        let count = jobs.len() as u64;
        let result = tokio::time::timeout(self.timeout, self.run_group(jobs)).await;
        match result {
            Ok(Ok((answers, moved))) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters.requests.fetch_add(count, Ordering::Relaxed);
                if let Some(position) = moved {
                    crate::bump(&self.watch, position);
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    reply.send(answer);
                }
            }
            Ok(Err(mut failure)) => {
                tracing::warn!(target = %self.connector.target, error = %failure.message, "postgres group commit failed");
                // Whatever state the transaction is in, closing the
                // connection ends it; the next group connects anew.
                self.conn = None;
                if failure.is_unavailable() {
                    let target = &self.connector.target;
                    if !failure.message.contains(target.as_str()) {
                        failure.message = format!("PostgreSQL at {target}: {}", failure.message);
                    }
                    failure.message = if failure.at_commit {
                        format!(
                            "{}; the connection broke during COMMIT, so whether the write \
                             was committed is unknown: retrying with the same command id is safe",
                            failure.message
                        )
                    } else {
                        format!(
                            "{}; nothing of this write was committed, and retrying it is \
                             safe",
                            failure.message
                        )
                    };
                }
                for reply in replies {
                    reply.fail(failure.error());
                }
            }
            Err(_) => {
                self.conn = None;
                let message = format!(
                    "PostgreSQL at {} did not finish a write within {:?}: whether it was committed is unknown; \
                     retrying with the same command id is safe",
                    self.connector.target, self.timeout
                );
                tracing::warn!(error = %message, "postgres group commit timed out");
                for reply in replies {
                    reply.fail(StoreError::Unavailable(message.clone()));
                }
            }
        }
    }

    /// Run a group in one transaction. Returns each request's answer and,
    /// when the log grew, its new head position.
    async fn run_group(&mut self, jobs: Vec<Job>) -> Result<(Vec<Answer>, Option<u64>), Failure> {
        let before = self.begin().await?;
        let conn = self.conn.as_ref().ok_or_else(|| {
            Failure::new(
                FailureKind::Backend,
                "the writer lost its connection between BEGIN and its first request".to_owned(),
            )
        })?;
        let clock = &*self.clock;
        let mut head = before;
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            exec(conn, "SAVEPOINT request").await?;
            let snapshot = head;
            let answer = match job {
                Job::Append(appends) => Answer::Append(append_many(conn, clock, &mut head, appends).await),
                Job::Import(events) => Answer::Import(import(conn, &mut head, events).await),
            };
            if answer.is_ok() {
                exec(conn, "RELEASE SAVEPOINT request").await?;
            } else {
                head = snapshot;
                let rolled_back = match exec(conn, "ROLLBACK TO SAVEPOINT request").await {
                    Ok(()) => exec(conn, "RELEASE SAVEPOINT request").await,
                    Err(failure) => Err(failure),
                };
                if let Err(failure) = rolled_back {
                    // When the request failed because the connection broke,
                    // its own error says best what happened.
                    return Err(match answer.unavailable() {
                        Some(message) => Failure::new(FailureKind::Unavailable, message),
                        None => failure,
                    });
                }
            }
            answers.push(answer);
        }
        let moved = head.position != before.position;
        if moved {
            let rows = conn
                .client
                .query(
                    &conn.st.move_head,
                    &[
                        &to_sql_int(head.position, "the head position").map_err(Failure::from_error)?,
                        &hex32(&head.hash),
                        &head.recorded_at,
                        &self.sql.channel,
                    ],
                )
                .await
                .map_err(|e| Failure::pg("moving the log head", &e))?;
            if rows.len() != 1 {
                return Err(Failure::new(
                    FailureKind::Corrupt,
                    format!("the log head row is missing ({} rows updated)", rows.len()),
                ));
            }
        }
        if let Err(e) = conn.client.batch_execute("COMMIT").await {
            let mut failure = Failure::pg("committing", &e);
            failure.at_commit = true;
            return Err(failure);
        }
        Ok((answers, moved.then_some(head.position)))
    }

    /// Make sure there is a connection, BEGIN, and lock the log head. A
    /// connection that turns out to have died while idle is replaced once:
    /// nothing had been sent on it for this group, so nothing is lost.
    async fn begin(&mut self) -> Result<Head, Failure> {
        let mut retried = false;
        loop {
            if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                self.conn = None;
            }
            let reused = self.conn.is_some();
            if !reused {
                self.conn = Some(self.open().await.map_err(Failure::from_error)?);
            }
            let conn = self
                .conn
                .as_ref()
                .ok_or_else(|| Failure::new(FailureKind::Backend, "the writer has no connection".to_owned()))?;
            match start(conn).await {
                Ok(head) => return Ok(head),
                Err(failure) if failure.is_unavailable() && reused && !retried => {
                    tracing::debug!(error = %failure.message, "the writer's idle connection had died; reconnecting");
                    self.conn = None;
                    retried = true;
                }
                Err(failure) => return Err(failure),
            }
        }
    }
}

/// BEGIN, then wait for and take the log head's row lock.
async fn start(conn: &Conn) -> Result<Head, Failure> {
    exec(conn, "BEGIN").await?;
    let row =
        conn.client.query_one(&conn.st.lock_head, &[]).await.map_err(|e| Failure::pg("locking the log head", &e))?;
    let what = || "reading the log head".to_owned();
    let position: i64 = column(&row, 0, &what).map_err(Failure::from_error)?;
    let hash: String = column(&row, 1, &what).map_err(Failure::from_error)?;
    let recorded_at: Option<DateTime<Utc>> = column(&row, 2, &what).map_err(Failure::from_error)?;
    let position = from_sql_int(position, "the log head position").map_err(Failure::from_error)?;
    // Appending after a link that cannot be parsed would extend the chain
    // from garbage: refuse instead.
    let hash = chain::parse_link(&hash).ok_or_else(|| {
        Failure::new(
            FailureKind::Corrupt,
            format!("the log head's hash (position {position}) is not 64 hex digits: {hash:?}"),
        )
    })?;
    Ok(Head { position, hash, recorded_at })
}

async fn exec(conn: &Conn, sql: &str) -> Result<(), Failure> {
    conn.client.batch_execute(sql).await.map_err(|e| Failure::pg(format!("running {sql}"), &e))
}

/// Give `event` the next position and its link, and move the head past it.
fn place(head: &mut Head, event: &mut StoredEvent) {
    event.position = head.position + 1;
    let link = chain::link(&head.hash, event);
    event.hash = hex32(&link);
    *head = Head { position: event.position, hash: link, recorded_at: Some(event.recorded_at) };
}

/// Append every stream in order; the caller's savepoint makes it atomic.
/// The appends were validated before they were queued.
async fn append_many(
    conn: &Conn,
    clock: &dyn Clock,
    head: &mut Head,
    appends: Vec<StreamAppend>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    // One reading of the clock per request: every event of an atomic append
    // shares its recorded time, clamped so that the log never goes back.
    let now = truncate_to_micros(clock.now());
    let recorded_at = head.recorded_at.map_or(now, |last| last.max(now));
    let mut outcomes = Vec::with_capacity(appends.len());
    for append in appends {
        if let Some(outcome) = deduplicate(conn, &append).await? {
            outcomes.push(outcome);
            continue;
        }
        let count = append.events.len() as u64;
        let first_version = append.expected.next_version();
        let last_version = first_version + count - 1;
        compare_and_set(conn, &append.stream, append.expected, last_version).await?;
        let first_position = head.position + 1;
        let command_id = append.events.first().and_then(|e| e.metadata.command_id);
        let mut stored = Vec::with_capacity(append.events.len());
        for (offset, event) in append.events.into_iter().enumerate() {
            let mut event = StoredEvent::unplaced(&append.stream, first_version + offset as u64, recorded_at, event);
            place(head, &mut event);
            stored.push(event);
        }
        insert_events(conn, &stored).await?;
        let outcome = AppendOutcome {
            stream: append.stream,
            first_version,
            last_version,
            first_position,
            last_position: head.position,
            deduplicated: false,
        };
        if let Some(command_id) = command_id {
            record_command(conn, command_id, &outcome).await?;
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Idempotency, in the contract's order: command id, then event ids.
async fn deduplicate(conn: &Conn, append: &StreamAppend) -> Result<Option<AppendOutcome>, StoreError> {
    if let Some(command_id) = append.events.first().and_then(|e| e.metadata.command_id) {
        let row = conn
            .client
            .query_opt(&conn.st.command, &[&command_id])
            .await
            .map_err(|e| pg_error(format!("looking up command id {command_id}"), &e))?;
        if let Some(row) = row {
            let recorded = outcome_from_row(&row, command_id)?;
            if recorded.stream != append.stream {
                return Err(StoreError::CommandIdReused { command_id, stream: recorded.stream });
            }
            return Ok(Some(AppendOutcome { deduplicated: true, ..recorded }));
        }
    }
    let ids: Vec<Uuid> = append.events.iter().map(|e| e.id).collect();
    let mut located = locate(conn, &ids).await?;
    let found: Vec<(Uuid, Option<EventLocation>)> = ids.iter().map(|id| (*id, located.remove(id))).collect();
    dedup_by_event_ids(&append.stream, &found)
}

/// Where each of these event ids is stored, for those that are.
async fn locate(conn: &Conn, ids: &[Uuid]) -> Result<HashMap<Uuid, EventLocation>, StoreError> {
    let rows = conn
        .client
        .query(&conn.st.locate, &[&ids])
        .await
        .map_err(|e| pg_error(format!("looking up {} event ids", ids.len()), &e))?;
    let mut located = HashMap::with_capacity(rows.len());
    for row in rows {
        let what = || "reading where an event id is stored".to_owned();
        let id: Uuid = column(&row, 0, &what)?;
        let version: i64 = column(&row, 2, &what)?;
        let position: i64 = column(&row, 3, &what)?;
        located.insert(
            id,
            EventLocation {
                stream: column(&row, 1, &what)?,
                stream_version: from_sql_int(version, &format!("the version of event {id}"))?,
                position: from_sql_int(position, &format!("the position of event {id}"))?,
            },
        );
    }
    Ok(located)
}

/// The stream version check, done by the database in the statement that
/// moves the version: zero rows changed means the stream is not where the
/// writer expected it.
async fn compare_and_set(
    conn: &Conn,
    stream: &str,
    expected: ExpectedVersion,
    last_version: u64,
) -> Result<(), StoreError> {
    let doing = || format!("moving stream `{stream}` from {expected} to version {last_version}");
    let new = to_sql_int(last_version, "stream version")?;
    let changed = match expected {
        ExpectedVersion::NoStream => {
            conn.client.execute(&conn.st.create_stream, &[&stream, &new]).await.map_err(|e| pg_error(doing(), &e))?
        }
        // No stream can be at a version beyond a bigint.
        ExpectedVersion::Exact(version) => match i64::try_from(version) {
            Ok(old) => conn
                .client
                .execute(&conn.st.advance_stream, &[&stream, &old, &new])
                .await
                .map_err(|e| pg_error(doing(), &e))?,
            Err(_) => 0,
        },
    };
    if changed == 1 {
        return Ok(());
    }
    let actual = stream_version(conn, stream).await?;
    Err(StoreError::Conflict { stream: stream.to_owned(), expected, actual })
}

async fn stream_version(conn: &Conn, stream: &str) -> Result<Option<u64>, StoreError> {
    let row = conn
        .client
        .query_opt(&conn.st.stream_version, &[&stream])
        .await
        .map_err(|e| pg_error(format!("reading the version of stream `{stream}`"), &e))?;
    row.map(|row| {
        let version: i64 = column(&row, 0, &|| format!("reading the version of stream `{stream}`"))?;
        from_sql_int(version, &format!("the version of stream `{stream}`"))
    })
    .transpose()
}

async fn record_command(conn: &Conn, command_id: Uuid, outcome: &AppendOutcome) -> Result<(), StoreError> {
    conn.client
        .execute(
            &conn.st.insert_command,
            &[
                &command_id,
                &outcome.stream,
                &to_sql_int(outcome.first_version, "version")?,
                &to_sql_int(outcome.last_version, "version")?,
                &to_sql_int(outcome.first_position, "position")?,
                &to_sql_int(outcome.last_position, "position")?,
            ],
        )
        .await
        .map_err(|e| pg_error(format!("recording the outcome of command {command_id}"), &e))?;
    Ok(())
}

/// Insert placed events, a few thousand per statement.
async fn insert_events(conn: &Conn, events: &[StoredEvent]) -> Result<(), StoreError> {
    let mut start = 0;
    while start < events.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < events.len() && end - start < INSERT_CHUNK_EVENTS && (end == start || bytes < INSERT_CHUNK_BYTES) {
            bytes += events[end].payload.len();
            end += 1;
        }
        insert_chunk(conn, &events[start..end]).await?;
        start = end;
    }
    Ok(())
}

async fn insert_chunk(conn: &Conn, events: &[StoredEvent]) -> Result<(), StoreError> {
    let n = events.len();
    let (mut position, mut id, mut stream, mut stream_version) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut event_type, mut schema_version, mut recorded_at, mut effective_at) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut actor, mut channel, mut correlation_id, mut causation_id) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut command_id, mut payload, mut hash) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in events {
        position.push(to_sql_int(e.position, "position")?);
        id.push(e.id);
        stream.push(e.stream.as_str());
        stream_version.push(to_sql_int(e.stream_version, "stream version")?);
        event_type.push(e.event_type.as_str());
        schema_version.push(i64::from(e.schema_version));
        recorded_at.push(e.recorded_at);
        effective_at.push(e.metadata.effective_at);
        actor.push(e.metadata.actor.as_str());
        channel.push(e.metadata.channel.as_str());
        correlation_id.push(e.metadata.correlation_id);
        causation_id.push(e.metadata.causation_id);
        command_id.push(e.metadata.command_id);
        payload.push(e.payload.as_str());
        hash.push(e.hash.as_str());
    }
    let (first, last) = (events.first().map_or(0, |e| e.position), events.last().map_or(0, |e| e.position));
    let inserted = conn
        .client
        .execute(
            &conn.st.insert_events,
            &[
                &position,
                &id,
                &stream,
                &stream_version,
                &event_type,
                &schema_version,
                &recorded_at,
                &effective_at,
                &actor,
                &channel,
                &correlation_id,
                &causation_id,
                &command_id,
                &payload,
                &hash,
            ],
        )
        .await
        .map_err(|e| {
            // Every uniqueness the table enforces was checked before: a
            // violation means the checks and the data disagree.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                StoreError::Corrupt(format!(
                    "inserting positions {first}..={last}: a uniqueness the store had checked does not hold: {}",
                    crate::connect::describe(&e)
                ))
            } else {
                pg_error(format!("inserting positions {first}..={last}"), &e)
            }
        })?;
    if inserted != n as u64 {
        return Err(StoreError::Backend(format!("inserting {n} events wrote {inserted} rows")));
    }
    Ok(())
}

/// A command id's outcome as an import builds it up.
struct ImportedCommand {
    stream: String,
    first_version: u64,
    last_version: u64,
    first_position: u64,
    last_position: u64,
}

async fn import(conn: &Conn, head: &mut Head, mut events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
    let mut outcome = ImportOutcome::default();
    for event in &mut events {
        // Whole microseconds are what the database keeps; truncating before
        // the hash is computed keeps the chain true to what is stored.
        event.recorded_at = truncate_to_micros(event.recorded_at);
        event.metadata.effective_at = truncate_to_micros(event.metadata.effective_at);
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let mut located: HashMap<Uuid, (String, u64)> =
        locate(conn, &ids).await?.into_iter().map(|(id, l)| (id, (l.stream, l.stream_version))).collect();
    let mut names: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut current = stream_versions(conn, &names).await?;
    let mut to_insert = Vec::new();
    let mut commands: Vec<(Uuid, ImportedCommand)> = Vec::new();
    let mut command_index: HashMap<Uuid, usize> = HashMap::new();
    for mut event in events {
        validate_imported(&event)?;
        if let Some((stream, version)) = located.get(&event.id) {
            if *stream == event.stream && *version == event.stream_version {
                outcome.skipped += 1;
                continue;
            }
            return Err(StoreError::InvalidImport {
                id: event.id,
                reason: format!("the id is already stored as version {version} of stream `{stream}`"),
            });
        }
        check_import_fits(&event, current.get(event.stream.as_str()).copied(), head.recorded_at)?;
        place(head, &mut event);
        located.insert(event.id, (event.stream.to_string(), event.stream_version));
        current.insert(event.stream.to_string(), event.stream_version);
        if let Some(command_id) = event.metadata.command_id {
            match command_index.get(&command_id) {
                Some(&index) => {
                    let command = &mut commands[index].1;
                    if command.stream == event.stream {
                        command.last_version = command.last_version.max(event.stream_version);
                        command.last_position = event.position;
                    }
                }
                None => {
                    command_index.insert(command_id, commands.len());
                    commands.push((
                        command_id,
                        ImportedCommand {
                            stream: event.stream.to_string(),
                            first_version: event.stream_version,
                            last_version: event.stream_version,
                            first_position: event.position,
                            last_position: event.position,
                        },
                    ));
                }
            }
        }
        to_insert.push(event);
        outcome.imported += 1;
    }
    if to_insert.is_empty() {
        return Ok(outcome);
    }
    insert_events(conn, &to_insert).await?;
    let mut moved: Vec<(&str, u64)> = Vec::new();
    for event in &to_insert {
        match moved.iter_mut().find(|(stream, _)| *stream == event.stream) {
            Some(entry) => entry.1 = entry.1.max(event.stream_version),
            None => moved.push((&event.stream, event.stream_version)),
        }
    }
    let streams: Vec<&str> = moved.iter().map(|(s, _)| *s).collect();
    let versions = moved.iter().map(|(_, v)| to_sql_int(*v, "stream version")).collect::<Result<Vec<_>, _>>()?;
    let changed = conn
        .client
        .execute(&conn.st.import_streams, &[&streams, &versions])
        .await
        .map_err(|e| pg_error(format!("moving the versions of {} imported streams", streams.len()), &e))?;
    if changed != streams.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "moving the versions of {} imported streams changed {changed}: the streams table disagrees with \
             what was read under the log head lock",
            streams.len()
        )));
    }
    if !commands.is_empty() {
        record_imported_commands(conn, &commands).await?;
    }
    Ok(outcome)
}

async fn record_imported_commands(conn: &Conn, commands: &[(Uuid, ImportedCommand)]) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = commands.iter().map(|(id, _)| *id).collect();
    let streams: Vec<&str> = commands.iter().map(|(_, c)| c.stream.as_str()).collect();
    let number = |f: fn(&ImportedCommand) -> u64, what: &str| {
        commands.iter().map(|(_, c)| to_sql_int(f(c), what)).collect::<Result<Vec<i64>, _>>()
    };
    let first_versions = number(|c| c.first_version, "version")?;
    let last_versions = number(|c| c.last_version, "version")?;
    let first_positions = number(|c| c.first_position, "position")?;
    let last_positions = number(|c| c.last_position, "position")?;
    conn.client
        .execute(
            &conn.st.import_commands,
            &[&ids, &streams, &first_versions, &last_versions, &first_positions, &last_positions],
        )
        .await
        .map_err(|e| pg_error(format!("recording {} imported command ids", ids.len()), &e))?;
    Ok(())
}

async fn stream_versions(conn: &Conn, streams: &[&str]) -> Result<HashMap<String, u64>, StoreError> {
    let rows = conn
        .client
        .query(&conn.st.stream_versions, &[&streams])
        .await
        .map_err(|e| pg_error(format!("reading the versions of {} streams", streams.len()), &e))?;
    let mut versions = HashMap::with_capacity(rows.len());
    for row in rows {
        let what = || "reading a stream version".to_owned();
        let stream: String = column(&row, 0, &what)?;
        let version: i64 = column(&row, 1, &what)?;
        let version = from_sql_int(version, &format!("the version of stream `{stream}`"))?;
        versions.insert(stream, version);
    }
    Ok(versions)
}
