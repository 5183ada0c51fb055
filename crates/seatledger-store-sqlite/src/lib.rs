//! The embedded SQLite backend of the seatledger event store: the default,
//! one file and no server.
//!
//! - Durability: WAL mode with `synchronous=FULL`; an append is answered
//!   only once its COMMIT is on disk.
//! - Writes: one writer thread owns the only read-write connection and
//!   commits everything that queued up meanwhile as one group; a refused
//!   request gets its own error, and only requests that can be refused
//!   after they began writing run in a SAVEPOINT of their own (see
//!   [`writer`](crate::writer) for why).
//! - Checkpoints: the writer's connection never checkpoints the WAL; a
//!   thread of its own does, at most every 50 ms, so no append waits for
//!   one (see [`checkpointer`](crate::checkpointer)).
//! - Reads: a small pool of read-only connections on tokio's blocking
//!   threads; they see committed data only and never wait for the writer.
//! - Layout: `events` (the global log, `position` is the rowid; a stream's
//!   last version is the end of its range in the `(stream, stream_version)`
//!   index, one seek), `streams` (each stream's name once, and the number
//!   `events` keeps instead), `checkpoints`, and `schema_migrations`; the
//!   view `event_log` shows the log with its streams' names. The schema
//!   version is `PRAGMA user_version`.
//!
//! Several processes may open the same file: SQLite serialises their
//! writers, and the writer notices foreign commits through
//! `PRAGMA data_version` before each group. Their appends reach this
//! process's subscriptions by polling only.

#![forbid(unsafe_code)]

mod checkpointer;
mod reader;
mod rows;
mod schema;
mod writer;

use async_trait::async_trait;
use checkpointer::{CheckpointCounters, Checkpointer};
use reader::ReadPool;
use rows::{event_from_row, from_sql_int, to_sql_int, Context, EVENT_COLUMNS};
use seatledger_store::{
    validate_appends, AppendOutcome, Checkpoint, Clock, Direction, EventStore, ImportOutcome, StoreError, StoredEvent,
    StreamAppend, MAX_READ_COUNT,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;
use writer::{Counters, Request, Writer};

pub use schema::SCHEMA_VERSION;

/// How many write requests may wait for the writer before callers wait to
/// queue: a bound on memory, and backpressure on a flood of appends.
const WRITE_QUEUE: usize = 1_024;

/// An [`EventStore`] in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    reads: Arc<ReadPool>,
    head: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
    checkpoints: Arc<CheckpointCounters>,
    // Declared last so that it drops last: the writer's connection is then
    // the last one to close, which lets SQLite fold the WAL back into the
    // file and delete it.
    writer: WriterThread,
}

/// What the writer has done since the store was opened: how many group
/// commits, serving how many write requests. `requests / commits` is the
/// average group size, the figure to watch when tuning write throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    pub commits: u64,
    pub requests: u64,
}

/// What the checkpointer thread has done since the store was opened: how
/// many `PASSIVE` checkpoints it ran, how many times the writer copied the
/// rest of a long WAL so that it could start over, and what the thread's
/// last checkpoint found — the frames (pages) in the WAL and how many of
/// them are back in the database file (`copied_frames < wal_frames` means
/// a reader still needed the rest, or commits came in meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointStats {
    pub runs: u64,
    pub restarts: u64,
    pub wal_frames: u64,
    pub copied_frames: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open the store in the file at `path`, creating the file and its schema
    /// when missing, and migrating an older schema. Fails on a file that is
    /// not a seatledger store or whose schema is newer than this build.
    ///
    /// Blocks while it opens the file: call it at start-up, not in a hot path.
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open_writer(&path)?;
        let (head, _) = watch::channel(0);
        let head = Arc::new(head);
        let counters = Arc::new(Counters::default());
        let checkpoints = Arc::new(CheckpointCounters::default());
        let checkpointer = Checkpointer::start(&path, Arc::clone(&checkpoints))?;
        let writer = Writer::new(conn, checkpointer, clock, Arc::clone(&head), Arc::clone(&counters))?;
        head.send_replace(writer.head_position());
        let reads = Arc::new(ReadPool::open(path.clone())?);
        let (requests, queue) = mpsc::channel(WRITE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("seatledger-sqlite-writer".to_owned())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread for `{}`: {e}", path.display())))?;
        Ok(SqliteStore {
            path,
            reads,
            head,
            counters,
            checkpoints,
            writer: WriterThread { requests: Some(requests), thread: Some(thread) },
        })
    }

    /// How the writer has grouped writes so far.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }

    /// What the checkpointer thread has done so far.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        CheckpointStats {
            runs: self.checkpoints.runs.load(Ordering::Relaxed),
            restarts: self.checkpoints.restarts.load(Ordering::Relaxed),
            wal_frames: self.checkpoints.wal_frames.load(Ordering::Relaxed),
            copied_frames: self.checkpoints.copied_frames.load(Ordering::Relaxed),
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hand a request to the writer and wait for its answer, which comes only
    /// after the group it joined has committed.
    async fn write<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Backend(format!("the writer of `{}` has stopped", self.path.display()));
        let (reply, answer) = oneshot::channel();
        let requests = self.writer.requests.as_ref().ok_or_else(stopped)?;
        requests.send(request(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer thread and the only way to reach it. Dropping it closes the
/// queue, lets the thread finish what was queued, and waits for it, so that
/// the file is closed once the store is gone.
struct WriterThread {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Closing the queue is what tells the thread to stop.
        drop(self.requests.take());
        join(self.thread.take(), "writer");
    }
}

/// Wait for one of the store's threads to end (its channel was closed), and
/// log a panic rather than raise it again inside a drop.
fn join(thread: Option<std::thread::JoinHandle<()>>, name: &str) {
    if let Some(thread) = thread {
        if thread.join().is_err() {
            tracing::error!("the sqlite {name} thread panicked");
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        // Checked here, off the writer thread, so that malformed requests
        // never take a place in a group.
        validate_appends(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Request::Append { appends, reply }).await
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        self.reads.run(move |conn| writer::command_outcome(conn, command_id)).await
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
                Ok(from) => ("e.stream_version >= ?2 ORDER BY e.stream_version ASC", from),
                // No version is that large.
                Err(_) => return Ok(Vec::new()),
            },
            // u64::MAX (or anything past the end) reads from the end.
            Direction::Backwards => {
                ("e.stream_version <= ?2 ORDER BY e.stream_version DESC", i64::try_from(from).unwrap_or(i64::MAX))
            }
        };
        let stream = stream.to_owned();
        self.reads
            .run(move |conn| {
                let doing = || format!("reading stream `{stream}`");
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM streams AS s CROSS JOIN events AS e \
                         WHERE s.name = ?1 AND e.stream = s.number AND {sql} LIMIT ?3"
                    ))
                    .context(doing)?;
                let limit = to_sql_int(count as u64, "read count")?;
                let mut rows = stmt.query((stream.as_str(), from, limit)).context(doing)?;
                let mut events = Vec::with_capacity(count.min(1_024));
                while let Some(row) = rows.next().context(doing)? {
                    let event = event_from_row(row)?;
                    if let Some(previous) = events.last() {
                        check_stream_order(previous, &event, direction)?;
                    }
                    events.push(event);
                }
                Ok(events)
            })
            .await
    }

    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let count = max_count.min(MAX_READ_COUNT);
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        self.reads
            .run(move |conn| {
                let doing = || format!("reading the log after position {after}");
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events AS e LEFT JOIN streams AS s ON s.number = e.stream \
                         WHERE e.position > ?1 ORDER BY e.position LIMIT ?2"
                    ))
                    .context(doing)?;
                let limit = to_sql_int(count as u64, "read count")?;
                let mut rows = stmt.query((after, limit)).context(doing)?;
                let mut events: Vec<StoredEvent> = Vec::with_capacity(count.min(1_024));
                while let Some(row) = rows.next().context(doing)? {
                    let event = event_from_row(row)?;
                    let previous = events.last().map_or(after, |e| e.position as i64);
                    if event.position as i64 <= previous {
                        return Err(StoreError::Corrupt(format!(
                            "the log goes backwards: position {} follows position {previous}",
                            event.position
                        )));
                    }
                    events.push(event);
                }
                Ok(events)
            })
            .await
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let stream = stream.to_owned();
        self.reads.run(move |conn| writer::stream_version(conn, &stream)).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        // Read from the file rather than the watch so that appends by other
        // processes count too.
        self.reads
            .run(|conn| {
                let doing = || "reading the head position".to_owned();
                let mut stmt = conn.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events").context(doing)?;
                let head: i64 = stmt.query_row([], |row| row.get(0)).context(doing)?;
                from_sql_int(head, "the head position")
            })
            .await
    }

    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        if events.is_empty() {
            return Ok(ImportOutcome::default());
        }
        self.write(|reply| Request::Import { events, reply }).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let name = name.to_owned();
        self.reads
            .run(move |conn| {
                let doing = || format!("loading checkpoint `{name}`");
                let mut stmt =
                    conn.prepare_cached("SELECT position, state FROM checkpoints WHERE name = ?1").context(doing)?;
                let row: Option<(i64, Option<String>)> = rusqlite::OptionalExtension::optional(
                    stmt.query_row([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?))),
                )
                .context(doing)?;
                row.map(|(position, state)| {
                    Ok(Checkpoint {
                        position: from_sql_int(position, format_args!("the position of checkpoint `{name}`"))?,
                        state,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let (name, checkpoint) = (name.to_owned(), checkpoint.clone());
        self.write(|reply| Request::SaveCheckpoint { name, checkpoint, reply }).await
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(|reply| Request::DeleteCheckpoint { name, reply }).await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// Versions read from one stream follow each other without gaps or repeats;
/// anything else is a damaged file, reported rather than handed on.
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
