//! The one writer: a thread that owns the read-write connection and commits
//! whatever is waiting as a group.
//!
//! With `synchronous=FULL` every COMMIT costs an fsync, and fsyncs, not SQL,
//! bound the write rate. So the writer drains every request queued while it
//! was busy (up to [`MAX_GROUP_REQUESTS`] or [`MAX_GROUP_EVENTS`]), runs them
//! in one transaction and commits once: a request that is refused (a
//! conflict, a duplicate) is answered with its own error, the rest share one
//! fsync. Nobody is answered before the COMMIT is durable. WAL checkpoints
//! run on another thread ([`crate::checkpointer`]), never inside a commit.
//!
//! A request that appends to one stream checks everything (command id, event
//! ids, expected version) before it writes, so a refusal leaves nothing to
//! undo and needs no SAVEPOINT; SQL that fails once it has begun writing
//! (a full disk, a damaged file) fails the whole group, unanswered until the
//! group is rolled back. Requests that write several streams, or import,
//! can be refused after writing and run inside a SAVEPOINT of their own.
//!
//! The head of the log (last position, hash and recorded time, and the
//! greatest uuid v7 event and command ids) lives in this thread's memory, so
//! appends never read it back, and a v7 id above the greatest is known to be
//! new without a lookup; `PRAGMA data_version` tells when another process has
//! written to the file, and only then is it reloaded. So do the numbers the
//! file keeps for the streams it has seen committed ([`StreamNumbers`]):
//! an append to a known stream names it by number without looking it up.

use crate::checkpointer::Checkpointer;
use crate::rows::{micros, parse_link, stream_name, to_sql_int, uuid_blob, Context};
use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, Connection, OptionalExtension};
use seatledger_store::{
    chain, check_import_fits, dedup_by_event_ids, truncate_to_micros, validate_imported, AppendOutcome, Checkpoint,
    Clock, EventLocation, ImportOutcome, StoreError, StoredEvent, StreamAppend,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// The most requests one group commit takes.
pub(crate) const MAX_GROUP_REQUESTS: usize = 256;
/// A group stops taking requests once it holds this many events.
pub(crate) const MAX_GROUP_EVENTS: usize = 10_000;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread, with where to send its result.
#[derive(Debug)]
pub(crate) enum Request {
    Append { appends: Vec<StreamAppend>, reply: Reply<Vec<AppendOutcome>> },
    Import { events: Vec<StoredEvent>, reply: Reply<ImportOutcome> },
    SaveCheckpoint { name: String, checkpoint: Checkpoint, reply: Reply<()> },
    DeleteCheckpoint { name: String, reply: Reply<()> },
}

impl Request {
    /// How much of a group this request takes, in events.
    fn weight(&self) -> usize {
        match self {
            Request::Append { appends, .. } => appends.iter().map(|a| a.events.len()).sum(),
            Request::Import { events, .. } => events.len(),
            Request::SaveCheckpoint { .. } | Request::DeleteCheckpoint { .. } => 1,
        }
    }

    /// Whether every way this request can be refused is found before it
    /// writes anything, so that it needs no savepoint in a group. An append
    /// to one stream checks its command id, event ids and expected version
    /// first; a checkpoint is one statement, which SQLite undoes by itself
    /// when it fails. Several streams (the second may conflict after the
    /// first is written) and imports are checked event by event as they go.
    fn refused_before_writing(&self) -> bool {
        match self {
            Request::Append { appends, .. } => appends.len() == 1,
            Request::Import { .. } => false,
            Request::SaveCheckpoint { .. } | Request::DeleteCheckpoint { .. } => true,
        }
    }

    fn fail(self, message: &str) -> Done {
        let err = || StoreError::Backend(message.to_owned());
        match self {
            Request::Append { reply, .. } => Done::Append(reply, Err(err())),
            Request::Import { reply, .. } => Done::Import(reply, Err(err())),
            Request::SaveCheckpoint { reply, .. } | Request::DeleteCheckpoint { reply, .. } => {
                Done::Unit(reply, Err(err()))
            }
        }
    }
}

/// A request that has run, holding its result until the group commits.
enum Done {
    Append(Reply<Vec<AppendOutcome>>, Result<Vec<AppendOutcome>, StoreError>),
    Import(Reply<ImportOutcome>, Result<ImportOutcome, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
}

impl Done {
    fn is_ok(&self) -> bool {
        self.error().is_none()
    }

    fn error(&self) -> Option<&StoreError> {
        match self {
            Done::Append(_, r) => r.as_ref().err(),
            Done::Import(_, r) => r.as_ref().err(),
            Done::Unit(_, r) => r.as_ref().err(),
        }
    }

    fn send(self) {
        // A caller that stopped waiting (its future was dropped) has nobody
        // to tell; what it asked for is committed all the same, and a retry
        // is deduplicated.
        match self {
            Done::Append(reply, result) => drop(reply.send(result)),
            Done::Import(reply, result) => drop(reply.send(result)),
            Done::Unit(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(self, message: &str) {
        let err = || StoreError::Backend(message.to_owned());
        match self {
            Done::Append(reply, _) => drop(reply.send(Err(err()))),
            Done::Import(reply, _) => drop(reply.send(Err(err()))),
            Done::Unit(reply, _) => drop(reply.send(Err(err()))),
        }
    }
}

/// Counts of what the writer did, shared with the store for [`crate::WriteStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) requests: AtomicU64,
}

/// The head of the global log: what the next event links to, and the
/// greatest uuid v7 ids the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) position: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) recorded_at: Option<DateTime<Utc>>,
    /// The greatest uuid v7 event id and command id stored, or a bound above
    /// them (`None`: no v7 id is stored). The application draws v7 ids, which
    /// grow with time, so a new one is nearly always above these and then
    /// needs no lookup: a stored id equal to it would be a v7 id too, and no
    /// greater (lever 18 in docs/benchmarks.md). Ids of other versions (the
    /// hashed ids of automatic top-ups, imported v4 ids) are always looked
    /// up, and never move these bounds.
    pub(crate) newest_v7_event_id: Option<Uuid>,
    pub(crate) newest_v7_command_id: Option<Uuid>,
}

/// Whether `id` may be stored already, given the greatest v7 id stored.
fn may_hold(newest_v7: Option<Uuid>, id: Uuid) -> bool {
    id.get_version_num() != 7 || newest_v7.is_some_and(|newest| id <= newest)
}

/// `newest` moved on to `id` if `id` is a greater v7 id.
fn newest_v7(newest: Option<Uuid>, id: Option<Uuid>) -> Option<Uuid> {
    match id {
        Some(id) if id.get_version_num() == 7 => newest.max(Some(id)),
        _ => newest,
    }
}

/// Read the head from the file, at open.
pub(crate) fn load_head(conn: &Connection) -> Result<Head, StoreError> {
    let mut head = last_event(conn)?;
    if head.position > 0 {
        head.newest_v7_event_id = greatest_v7(conn, "SELECT id FROM events ORDER BY id DESC", "event ids")?;
        head.newest_v7_command_id = greatest_v7(conn, GREATEST_COMMAND_IDS, "command ids")?;
    }
    Ok(head)
}

/// Read the head again after another connection wrote. Events are never
/// changed, so the greatest v7 ids need only the events after the head we
/// knew: the other writer's, however many ids of other versions the file
/// holds. A file whose log is shorter than we knew is not the one we had
/// open, and is read whole.
fn reload_head(conn: &Connection, known: Head) -> Result<Head, StoreError> {
    let mut head = last_event(conn)?;
    if head.position < known.position {
        return load_head(conn);
    }
    head.newest_v7_event_id = known.newest_v7_event_id;
    head.newest_v7_command_id = known.newest_v7_command_id;
    let doing = || format!("reading the ids written after position {}", known.position);
    let mut stmt = conn.prepare_cached("SELECT id, command_id FROM events WHERE position > ?1").context(doing)?;
    let mut rows = stmt.query([to_sql_int(known.position, "position")?]).context(doing)?;
    while let Some(row) = rows.next().context(doing)? {
        let as_written = |column: usize| -> Result<Option<Uuid>, StoreError> {
            Ok(row.get_ref(column).context(doing)?.as_blob().ok().and_then(written_v7))
        };
        head.newest_v7_event_id = newest_v7(head.newest_v7_event_id, as_written(0)?);
        head.newest_v7_command_id = newest_v7(head.newest_v7_command_id, as_written(1)?);
    }
    Ok(head)
}

/// The last event's position, link and recorded time; no greatest ids yet.
fn last_event(conn: &Connection) -> Result<Head, StoreError> {
    let last = conn
        .query_row("SELECT position, hash, recorded_at_us FROM events ORDER BY position DESC LIMIT 1", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, i64>(2)?))
        })
        .optional()
        .context(|| "reading the last event".to_owned())?;
    let mut head = Head {
        position: 0,
        hash: chain::GENESIS,
        recorded_at: None,
        newest_v7_event_id: None,
        newest_v7_command_id: None,
    };
    let Some((position, hash, recorded_at_us)) = last else { return Ok(head) };
    head.position = crate::rows::from_sql_int(position, "the last position")?;
    // Appending after a link that cannot be parsed would extend a chain from
    // garbage; refuse to open instead, naming the event.
    head.hash = parse_link(&hash, format_args!("the hash of the last event (position {})", head.position))?;
    head.recorded_at = Some(crate::rows::from_micros(recorded_at_us, "recorded_at of the last event")?);
    Ok(head)
}

/// Index entries [`greatest_v7`] reads at most before it settles for "look
/// every id up".
const GREATEST_V7_SCAN: usize = 100_000;

/// The greatest uuid v7 id among those `sql` lists in descending order (an
/// index, read from its end): the first that is a v7 id written as the store
/// writes ids. Entries above it (ids of other versions, which sort above
/// today's v7 ids nearly always, or values the store did not write) are
/// skipped; after [`GREATEST_V7_SCAN`] of them the bound is the greatest
/// uuid, so every id is looked up, as before lever 18. Read at open only.
fn greatest_v7(conn: &Connection, sql: &str, what: &str) -> Result<Option<Uuid>, StoreError> {
    let doing = || format!("reading the greatest {what}");
    let mut stmt = conn.prepare(sql).context(doing)?;
    let mut rows = stmt.query([]).context(doing)?;
    for _ in 0..GREATEST_V7_SCAN {
        let Some(row) = rows.next().context(doing)? else { return Ok(None) };
        let Ok(bytes) = row.get_ref(0).context(doing)?.as_blob() else { continue };
        if let Some(id) = written_v7(bytes) {
            return Ok(Some(id));
        }
    }
    Ok(Some(Uuid::max()))
}

/// `bytes` as a uuid v7 id, if they are one as the store writes ids (16 bytes).
fn written_v7(bytes: &[u8]) -> Option<Uuid> {
    let id = Uuid::from_slice(bytes).ok()?;
    (id.get_version_num() == 7).then_some(id)
}

fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .context(|| "reading the data version".to_owned())
}

/// Run a statement without parameters, through the statement cache.
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut stmt| stmt.execute([])).map(drop).context(|| format!("running {sql}"))
}

/// The writer thread's state.
pub(crate) struct Writer {
    // Declared first so that it drops first: the checkpointer's connection
    // closes before the writer's, which is then the last one open.
    checkpointer: Checkpointer,
    conn: Connection,
    clock: Arc<dyn Clock>,
    head: Head,
    streams: StreamNumbers,
    data_version: i64,
    watch: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
}

/// The most stream numbers the writer remembers; past it, it starts over
/// (a lookup by name costs one index seek). A name and its number take
/// about 80 bytes, so at most about 80 MB.
const MAX_KNOWN_STREAMS: usize = 1_000_000;

/// The numbers `events` keeps for stream names (schema version 3): the
/// writer remembers each it has seen committed, so that an append to a
/// stream it knows costs no lookup of the name. What it learns inside the
/// open transaction (a stream it creates, or one it looks up, which may be
/// one the transaction created) is kept apart until the COMMIT and
/// forgotten when the transaction, or the savepoint it was learnt in,
/// rolls back. Numbers are never reused once committed (streams are never
/// deleted), so what was committed stays true until the file is changed by
/// another process, when everything is forgotten.
#[derive(Debug, Default)]
struct StreamNumbers {
    committed: HashMap<String, i64>,
    /// Learnt in the open transaction, and the order it was learnt in (for
    /// a savepoint's rollback).
    fresh: HashMap<String, i64>,
    learnt: Vec<String>,
    /// Streams created, ever: a request that created one has written.
    created: u64,
}

impl StreamNumbers {
    /// The stream's number, if it has one (in the file, or in the open
    /// transaction).
    fn find(&mut self, conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
        if let Some(number) = self.committed.get(name).or_else(|| self.fresh.get(name)) {
            return Ok(Some(*number));
        }
        let found = stream_number(conn, name)?;
        if let Some(number) = found {
            self.learn(name, number);
        }
        Ok(found)
    }

    /// The number of a stream [`Self::find`] did not find, given to it now.
    fn create(&mut self, conn: &Connection, name: &str) -> Result<i64, StoreError> {
        let doing = || format!("adding stream `{name}`");
        let mut stmt = conn.prepare_cached("INSERT INTO streams (name) VALUES (?1)").context(doing)?;
        stmt.execute([name]).context(doing)?;
        let number = conn.last_insert_rowid();
        self.learn(name, number);
        self.created += 1;
        Ok(number)
    }

    fn learn(&mut self, name: &str, number: i64) {
        self.fresh.insert(name.to_owned(), number);
        self.learnt.push(name.to_owned());
    }

    /// How much has been learnt in the open transaction: a mark for
    /// [`Self::rolled_back_to`].
    fn mark(&self) -> usize {
        self.learnt.len()
    }

    /// The transaction committed: what it learnt is true from now on.
    fn committed(&mut self) {
        if self.committed.len() + self.fresh.len() > MAX_KNOWN_STREAMS {
            self.committed.clear();
        }
        self.committed.extend(self.fresh.drain());
        self.learnt.clear();
    }

    /// What was learnt since `mark` was rolled back.
    fn rolled_back_to(&mut self, mark: usize) {
        for name in self.learnt.drain(mark.min(self.learnt.len())..) {
            self.fresh.remove(&name);
        }
    }
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        checkpointer: Checkpointer,
        clock: Arc<dyn Clock>,
        watch: Arc<watch::Sender<u64>>,
        counters: Arc<Counters>,
    ) -> Result<Self, StoreError> {
        // The version first: a commit by another process between the two
        // reads then shows as a new version at the first BEGIN, and the head
        // is read again.
        let data_version = data_version(&conn)?;
        // A newer build may have migrated the file between the schema check
        // at open and the read above; that would not show as a new version.
        crate::schema::check_still_known(&conn)?;
        let head = load_head(&conn)?;
        let streams = StreamNumbers::default();
        Ok(Self { checkpointer, conn, clock, head, streams, data_version, watch, counters })
    }

    pub(crate) fn head_position(&self) -> u64 {
        self.head.position
    }

    /// Serve requests until every sender is gone (the store was dropped).
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        while let Some(first) = requests.blocking_recv() {
            let mut weight = first.weight();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_REQUESTS && weight < MAX_GROUP_EVENTS {
                match requests.try_recv() {
                    Ok(request) => {
                        weight += request.weight();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            tracing::trace!(requests = group.len(), events = weight, "sqlite group commit");
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Err(e) = self.begin() {
            let message = format!("starting a write transaction: {e}");
            tracing::warn!(error = %message, "sqlite group commit failed");
            group.into_iter().for_each(|r| r.fail(&message).send());
            return;
        }
        // Taken after BEGIN, which may have reloaded the head: a rollback
        // must return to the head as it is in the file, not as it was cached.
        let before = self.head;
        if group.len() == 1 {
            // Alone in its transaction, a request needs no savepoint: if it
            // fails, rolling the transaction back undoes exactly it. Two
            // statements fewer on the path of every lone append.
            let request = group.into_iter().next().expect("a group of one holds one request");
            let done = self.execute(request);
            if !done.is_ok() {
                // A refusal (a conflict, say) is the request's answer, not a
                // failure of the store: no warning.
                self.roll_back(before);
                return done.send();
            }
            return self.commit(before, vec![done]);
        }
        let mut done = Vec::with_capacity(group.len());
        let mut requests = group.into_iter();
        while let Some(request) = requests.next() {
            let (result, doomed) = if request.refused_before_writing() {
                self.run_unguarded(request)
            } else {
                self.run_in_savepoint(request)
            };
            done.push(result);
            if let Some(message) = doomed {
                // The transaction is in an unknown state, or holds a request's
                // partial writes: none of the group may commit.
                self.abandon(before, &message);
                done.into_iter().for_each(|d| d.fail(&message));
                requests.for_each(|r| r.fail(&message).send());
                return;
            }
        }
        self.commit(before, done);
    }

    /// COMMIT what the requests in `done` wrote, then answer them.
    fn commit(&mut self, before: Head, done: Vec<Done>) {
        if let Err(e) = exec(&self.conn, "COMMIT") {
            let message = format!("committing: {e}");
            self.abandon(before, &message);
            done.into_iter().for_each(|d| d.fail(&message));
            return;
        }
        self.streams.committed();
        self.checkpointer.committed(self.head.position - before.position);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.requests.fetch_add(done.len() as u64, Ordering::Relaxed);
        if self.head.position != before.position {
            self.watch.send_replace(self.head.position);
        }
        done.into_iter().for_each(Done::send);
        // After the answers: the appenders need not wait for it.
        self.checkpointer.restart_if_due(&self.conn);
    }

    /// BEGIN IMMEDIATE, and notice whether someone else wrote since our last commit.
    fn begin(&mut self) -> Result<(), StoreError> {
        exec(&self.conn, "BEGIN IMMEDIATE")?;
        let reloaded = data_version(&self.conn).and_then(|version| {
            if version != self.data_version {
                // Another process appended (or saved a checkpoint): our
                // cached head may be stale, and we hold the lock now. It
                // may also have been a newer build migrating the file, whose
                // tables this build no longer knows.
                crate::schema::check_still_known(&self.conn)?;
                self.head = reload_head(&self.conn, self.head)?;
                // Stream numbers committed by us stay true, but the file may
                // not be the one we had open.
                self.streams.committed.clear();
                self.data_version = version;
                tracing::debug!(head = self.head.position, "sqlite file changed by another connection; head reloaded");
            }
            Ok(())
        });
        if let Err(e) = reloaded {
            // Best effort: the error being reported is the one above.
            let _ = exec(&self.conn, "ROLLBACK");
            return Err(e);
        }
        Ok(())
    }

    /// Roll the whole group back and forget what it did to the head.
    fn abandon(&mut self, before: Head, why: &str) {
        tracing::warn!(error = %why, "sqlite group commit failed; rolling back the group");
        self.roll_back(before);
    }

    /// Roll the transaction back and return to the head as it was before it.
    fn roll_back(&mut self, before: Head) {
        if let Err(e) = exec(&self.conn, "ROLLBACK") {
            // SQLite may have rolled back by itself (e.g. on SQLITE_FULL),
            // leaving no transaction to end; anything else is logged.
            if self.conn.is_autocommit() {
                tracing::debug!(error = %e, "no transaction left to roll back");
            } else {
                tracing::error!(error = %e, "rolling back a failed group commit failed");
            }
        }
        self.head = before;
        self.streams.rolled_back_to(0);
    }

    /// Run one request that is refused, if at all, before it writes (see
    /// [`Request::refused_before_writing`]). The second half says why the
    /// whole group must be rolled back, when it must: the request failed
    /// after it had begun writing (it moved the head), or SQLite itself
    /// ended the transaction.
    fn run_unguarded(&mut self, request: Request) -> (Done, Option<String>) {
        let (snapshot, created) = (self.head, self.streams.created);
        let done = self.execute(request);
        let doomed = match done.error() {
            // A new stream's row is written just before its first event.
            Some(e) if self.head != snapshot || self.streams.created != created => {
                Some(format!("a request of the group failed after it had begun writing: {e}"))
            }
            Some(e) if self.conn.is_autocommit() => {
                Some(format!("a request of the group failed and SQLite ended the transaction: {e}"))
            }
            _ => None,
        };
        (done, doomed)
    }

    /// Run one request inside its own savepoint. The second half says why
    /// the whole group must be rolled back, when the savepoint could not be
    /// opened, released or rolled back.
    fn run_in_savepoint(&mut self, request: Request) -> (Done, Option<String>) {
        if let Err(e) = exec(&self.conn, "SAVEPOINT request") {
            let message = e.to_string();
            return (request.fail(&message), Some(format!("opening the savepoint of a request: {message}")));
        }
        let snapshot = self.head;
        let learnt = self.streams.mark();
        let done = self.execute(request);
        let ended = if done.is_ok() {
            exec(&self.conn, "RELEASE request")
        } else {
            self.head = snapshot;
            self.streams.rolled_back_to(learnt);
            exec(&self.conn, "ROLLBACK TO request").and_then(|()| exec(&self.conn, "RELEASE request"))
        };
        (done, ended.err().map(|e| format!("ending the savepoint of a request: {e}")))
    }

    fn execute(&mut self, request: Request) -> Done {
        match request {
            Request::Append { appends, reply } => Done::Append(reply, self.append_many(appends)),
            Request::Import { events, reply } => Done::Import(reply, self.import(events)),
            Request::SaveCheckpoint { name, checkpoint, reply } => {
                Done::Unit(reply, save_checkpoint(&self.conn, &name, &checkpoint))
            }
            Request::DeleteCheckpoint { name, reply } => Done::Unit(reply, delete_checkpoint(&self.conn, &name)),
        }
    }

    /// Append every stream in order; the caller's savepoint makes it atomic.
    /// The appends were validated before they were queued.
    fn append_many(&mut self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        // One reading of the clock per request: every event of an atomic
        // append shares its recorded time, clamped so the log never goes back.
        let now = truncate_to_micros(self.clock.now());
        let recorded_at = self.head.recorded_at.map_or(now, |last| last.max(now));
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            if let Some(outcome) = self.deduplicate(&append)? {
                outcomes.push(outcome);
                continue;
            }
            let number = self.streams.find(&self.conn, &append.stream)?;
            let actual = number_version(&self.conn, number, &append.stream)?;
            if !append.expected.matches(actual) {
                return Err(StoreError::Conflict { stream: append.stream, expected: append.expected, actual });
            }
            let number = match number {
                Some(number) => number,
                None => self.streams.create(&self.conn, &append.stream)?,
            };
            let first_version = append.expected.next_version();
            let count = append.events.len() as u64;
            let first_position = self.head.position + 1;
            // Prepared once per append, not once per event: the statement
            // cache's lookup hashes the whole SQL text (4 % of the writer on
            // batches of 10,000).
            let mut insert = prepare_insert(&self.conn)?;
            // The events of one stream append share one command id
            // (`validate_appends`): one run, its length on the first event.
            let run = if append.events.first().is_some_and(|e| e.metadata.command_id.is_some()) {
                to_sql_int(count, "an append's length")?
            } else {
                NOT_A_RUN_START
            };
            for (offset, event) in append.events.into_iter().enumerate() {
                let mut stored =
                    StoredEvent::unplaced(&append.stream, first_version + offset as u64, recorded_at, event);
                let run = if offset == 0 { run } else { NOT_A_RUN_START };
                insert_event(&mut insert, &mut self.head, number, &mut stored, run)?;
            }
            let last_version = first_version + count - 1;
            outcomes.push(AppendOutcome {
                stream: append.stream,
                first_version,
                last_version,
                first_position,
                last_position: self.head.position,
                deduplicated: false,
            });
        }
        Ok(outcomes)
    }

    /// Where the event with this id is stored, if it is; no lookup for a v7
    /// id above the greatest stored ([`Head`]).
    fn stored_location(&self, id: Uuid) -> Result<Option<EventLocation>, StoreError> {
        if !may_hold(self.head.newest_v7_event_id, id) {
            return Ok(None);
        }
        locate(&self.conn, id)
    }

    /// What this command id appended, if it is stored; no lookup for a v7
    /// id above the greatest stored ([`Head`]).
    fn stored_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        if !may_hold(self.head.newest_v7_command_id, command_id) {
            return Ok(None);
        }
        command_outcome(&self.conn, command_id)
    }

    /// Idempotency, in the contract's order: command id, then event ids.
    fn deduplicate(&self, append: &StreamAppend) -> Result<Option<AppendOutcome>, StoreError> {
        if let Some(command_id) = append.events.first().and_then(|e| e.metadata.command_id) {
            if let Some(recorded) = self.stored_outcome(command_id)? {
                if recorded.stream != append.stream {
                    return Err(StoreError::CommandIdReused { command_id, stream: recorded.stream });
                }
                return Ok(Some(AppendOutcome { deduplicated: true, ..recorded }));
            }
        }
        let mut found = Vec::with_capacity(append.events.len());
        for event in &append.events {
            found.push((event.id, self.stored_location(event.id)?));
        }
        dedup_by_event_ids(&append.stream, &found)
    }

    fn import(&mut self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        let mut outcome = ImportOutcome::default();
        let mut insert = prepare_insert(&self.conn)?;
        // Imported events carry command ids too: consecutive ones of one
        // command on one stream make a run, whose first event gets its
        // length once the run has ended.
        let mut run: Option<CommandRun> = None;
        for mut event in events {
            // Whole microseconds are what this file keeps; truncating before
            // the hash is computed keeps the chain true to what is stored.
            event.recorded_at = truncate_to_micros(event.recorded_at);
            event.metadata.effective_at = truncate_to_micros(event.metadata.effective_at);
            validate_imported(&event)?;
            if let Some(found) = self.stored_location(event.id)? {
                if found.stream == event.stream && found.stream_version == event.stream_version {
                    outcome.skipped += 1;
                    continue;
                }
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "the id is already stored as version {} of stream `{}`",
                        found.stream_version, found.stream
                    ),
                });
            }
            let number = self.streams.find(&self.conn, &event.stream)?;
            let current = number_version(&self.conn, number, &event.stream)?;
            check_import_fits(&event, current, self.head.recorded_at)?;
            let number = match number {
                Some(number) => number,
                None => self.streams.create(&self.conn, &event.stream)?,
            };
            let continues = match (&mut run, event.metadata.command_id) {
                (Some(r), Some(command_id)) => r.extend_with(command_id, number, &event, self.head.position + 1),
                _ => false,
            };
            if !continues {
                if let Some(ended) = run.take() {
                    ended.record(&self.conn)?;
                }
                run = event.metadata.command_id.map(|command_id| CommandRun {
                    command_id,
                    stream: number,
                    first_version: event.stream_version,
                    first_position: self.head.position + 1,
                    length: 1,
                });
            }
            let starts_run = !continues && run.is_some();
            insert_event(
                &mut insert,
                &mut self.head,
                number,
                &mut event,
                if starts_run { 1 } else { NOT_A_RUN_START },
            )?;
            outcome.imported += 1;
        }
        if let Some(ended) = run {
            ended.record(&self.conn)?;
        }
        Ok(outcome)
    }
}

/// `command_run` of an event that does not start a run of its command's
/// events (or has no command id): not in the command-id index.
const NOT_A_RUN_START: i64 = 0;

/// Consecutive imported events of one command on one stream, being
/// inserted: consecutive positions and versions.
struct CommandRun {
    command_id: Uuid,
    stream: i64,
    first_version: u64,
    first_position: u64,
    length: u64,
}

impl CommandRun {
    /// Count `event`, of `command_id` on the stream numbered `stream`, to be
    /// stored at `position`, into this run if it is the run's next event;
    /// whether it was. Within one import, the next event of the same command
    /// on the same stream is the next version (`check_import_fits`) and
    /// takes the next position (a skipped event takes none); the two checks
    /// keep a run's length true should that ever change.
    fn extend_with(&mut self, command_id: Uuid, stream: i64, event: &StoredEvent, position: u64) -> bool {
        let next = command_id == self.command_id
            && stream == self.stream
            && event.stream_version == self.first_version + self.length
            && position == self.first_position + self.length;
        if next {
            self.length += 1;
        }
        next
    }

    /// Write the run's length on its first event, which was inserted with 1.
    fn record(self, conn: &Connection) -> Result<(), StoreError> {
        if self.length == 1 {
            return Ok(());
        }
        let doing = || format!("recording the run of command {} at position {}", self.command_id, self.first_position);
        let values = [to_sql_int(self.first_position, "a position")?, to_sql_int(self.length, "a run's length")?];
        conn.prepare_cached("UPDATE events SET command_run = ?2 WHERE position = ?1")
            .and_then(|mut stmt| stmt.execute(values))
            .context(doing)?;
        Ok(())
    }
}

/// The statement that inserts one event, from the connection's cache.
fn prepare_insert(conn: &Connection) -> Result<CachedStatement<'_>, StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (position, id, stream, stream_version, type, schema_version, recorded_at_us, \
         effective_at_us, actor, channel, correlation_id, causation_id, command_id, payload, hash, command_run) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )
    .context(|| "preparing the insert of an event".to_owned())
}

/// Give `event` the next position after `head`, insert it and its link with
/// `stmt` (from [`prepare_insert`]) into the stream numbered `stream`, and
/// move `head` on to it. The link is stored as its 32 bytes; `event.hash`
/// is left as it was (the caller drops the event). `command_run` is the
/// length of the run of its command's events it starts, or
/// [`NOT_A_RUN_START`].
fn insert_event(
    stmt: &mut CachedStatement<'_>,
    head: &mut Head,
    stream: i64,
    event: &mut StoredEvent,
    command_run: i64,
) -> Result<(), StoreError> {
    if let Some(last) = head.recorded_at {
        assert!(event.recorded_at >= last, "recorded_at would go backwards after position {}", head.position);
    }
    event.position = head.position + 1;
    let link = chain::link(&head.hash, event);
    let doing = || format!("inserting version {} of stream `{}`", event.stream_version, event.stream);
    let inserted = stmt.execute(rusqlite::params![
        to_sql_int(event.position, "position")?,
        uuid_blob(&event.id),
        stream,
        to_sql_int(event.stream_version, "stream version")?,
        event.event_type.as_str(),
        i64::from(event.schema_version),
        micros(event.recorded_at),
        micros(event.metadata.effective_at),
        event.metadata.actor.as_str(),
        event.metadata.channel.as_str(),
        uuid_blob(&event.metadata.correlation_id),
        event.metadata.causation_id.as_ref().map(uuid_blob),
        event.metadata.command_id.as_ref().map(uuid_blob),
        event.payload,
        &link[..],
        command_run,
    ]);
    match inserted {
        Ok(1) => {}
        // Every uniqueness the table enforces was checked before: a
        // violation here means the checks and the file disagree.
        Err(rusqlite::Error::SqliteFailure(e, message)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            return Err(StoreError::Corrupt(format!(
                "{}: a uniqueness the store had checked does not hold ({})",
                doing(),
                message.unwrap_or_default()
            )));
        }
        other => {
            other.context(doing)?;
            return Err(StoreError::Backend(format!("{}: the insert did not write one row", doing())));
        }
    }
    *head = Head {
        position: event.position,
        hash: link,
        recorded_at: Some(event.recorded_at),
        newest_v7_event_id: newest_v7(head.newest_v7_event_id, Some(event.id)),
        newest_v7_command_id: newest_v7(head.newest_v7_command_id, event.metadata.command_id),
    };
    Ok(())
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("head", &self.head.position).finish_non_exhaustive()
    }
}

fn locate(conn: &Connection, id: Uuid) -> Result<Option<EventLocation>, StoreError> {
    let doing = || format!("looking up event id {id}");
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.name, e.stream_version, e.position FROM events AS e \
             LEFT JOIN streams AS s ON s.number = e.stream WHERE e.id = ?1",
        )
        .context(doing)?;
    let row = stmt
        .query_row([uuid_blob(&id)], |row| {
            Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })
        .optional()
        .context(doing)?;
    row.map(|(stream, version, position)| {
        Ok(EventLocation {
            stream_version: crate::rows::from_sql_int(version, format_args!("the version of event {id}"))?,
            position: crate::rows::from_sql_int(position, format_args!("the position of event {id}"))?,
            stream: stream_name(stream, format_args!("event {id}"))?,
        })
    })
    .transpose()
}

// The command-id lookups. Each spells the condition of the partial index
// `events_by_command_run` (schema version 4) as it is, which is how SQLite
// knows it may use it (tested below).

/// Command ids from the greatest down, for [`greatest_v7`].
const GREATEST_COMMAND_IDS: &str =
    "SELECT command_id FROM events WHERE command_id IS NOT NULL AND command_run IS NOT 0 ORDER BY command_id DESC";

/// Whether a command id is stored: one index probe.
const COMMAND_PROBE: &str = "SELECT 1 FROM events WHERE command_id = ?1 AND command_run IS NOT 0 LIMIT 1";

/// A stored command's outcome from its runs (see [`command_outcome`]).
const COMMAND_OUTCOME: &str =
    "SELECT s.name, MIN(e.stream_version), MAX(e.stream_version + ifnull(e.command_run, 1) - 1), \
     MIN(e.position), MAX(e.position + ifnull(e.command_run, 1) - 1) \
     FROM events AS e LEFT JOIN streams AS s ON s.number = e.stream \
     WHERE e.command_id = ?1 AND e.command_run IS NOT 0 \
     GROUP BY e.stream ORDER BY MIN(e.position) LIMIT 1";

/// The outcome a command id produced, derived from the runs of events that
/// carry it (schema version 4: the first event of each run holds the run's
/// length, a NULL one left by an earlier version being a run of one): the
/// first stream it wrote to owns it, with the versions and positions of all
/// its events there. Deriving it (rather than keeping a table of outcomes)
/// makes imported events deduplicate retries as well.
pub(crate) fn command_outcome(conn: &Connection, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
    let doing = || format!("looking up command id {command_id}");
    let id = uuid_blob(&command_id);
    // Nearly every command id is new. One index probe answers that; the
    // grouped query below sets up two sorters even when nothing matches
    // (it was 8.6 % of the writer thread under 64 appenders).
    let mut probe = conn.prepare_cached(COMMAND_PROBE).context(doing)?;
    if !probe.exists([id]).context(doing)? {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(COMMAND_OUTCOME).context(doing)?;
    let row = stmt
        .query_row([id], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()
        .context(doing)?;
    let Some((stream, first_version, last_version, first_position, last_position)) = row else {
        return Ok(None);
    };
    let number =
        |value: i64, what: &str| crate::rows::from_sql_int(value, format_args!("{what} of command {command_id}"));
    Ok(Some(AppendOutcome {
        stream: stream_name(stream, format_args!("the events of command {command_id}"))?,
        first_version: number(first_version, "the first version")?,
        last_version: number(last_version, "the last version")?,
        first_position: number(first_position, "the first position")?,
        last_position: number(last_position, "the last position")?,
        deduplicated: false,
    }))
}

/// The stream's last version: its number, then the end of its range in the
/// `(stream, stream_version)` index, one seek each.
pub(crate) fn stream_version(conn: &Connection, stream: &str) -> Result<Option<u64>, StoreError> {
    number_version(conn, stream_number(conn, stream)?, stream)
}

/// The number the file keeps for the stream named `name`, if it has one: one
/// seek in the `streams` table's index of names.
fn stream_number(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    let doing = || format!("looking up stream `{name}`");
    let mut stmt = conn.prepare_cached("SELECT number FROM streams WHERE name = ?1").context(doing)?;
    stmt.query_row([name], |row| row.get(0)).optional().context(doing)
}

/// The last version of the stream numbered `number` (`None`: it has no
/// number, so no events), one seek in the `(stream, stream_version)` index.
/// `name` is for messages.
fn number_version(conn: &Connection, number: Option<i64>, name: &str) -> Result<Option<u64>, StoreError> {
    let Some(number) = number else { return Ok(None) };
    let doing = || format!("reading the version of stream `{name}`");
    let mut stmt = conn
        .prepare_cached("SELECT stream_version FROM events WHERE stream = ?1 ORDER BY stream_version DESC LIMIT 1")
        .context(doing)?;
    let version: Option<i64> = stmt.query_row([number], |row| row.get(0)).optional().context(doing)?;
    version.map(|v| crate::rows::from_sql_int(v, format_args!("the version of stream `{name}`"))).transpose()
}

fn save_checkpoint(conn: &Connection, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
    let doing = || format!("saving checkpoint `{name}`");
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO checkpoints (name, position, state) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, state = excluded.state",
        )
        .context(doing)?;
    stmt.execute((name, to_sql_int(checkpoint.position, "checkpoint position")?, checkpoint.state.as_deref()))
        .context(doing)?;
    Ok(())
}

fn delete_checkpoint(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let doing = || format!("deleting checkpoint `{name}`");
    let mut stmt = conn.prepare_cached("DELETE FROM checkpoints WHERE name = ?1").context(doing)?;
    stmt.execute([name]).context(doing)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each command-id lookup reads the partial index, not the table: a
    /// condition spelled differently from the index's would make SQLite scan
    /// every event for each lookup, with the same answers.
    #[test]
    fn the_command_lookups_read_the_index_of_runs() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let conn = crate::schema::open_writer(&dir.path().join("events.db")).expect("opening the writer connection");
        for sql in [GREATEST_COMMAND_IDS, COMMAND_PROBE, COMMAND_OUTCOME] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explaining a lookup");
            // A command id for those that take one.
            let id = vec![0u8; 16];
            let params: Vec<&dyn rusqlite::ToSql> = if stmt.parameter_count() == 1 { vec![&id] } else { vec![] };
            let plan: Vec<String> = stmt
                .query_map(params.as_slice(), |row| row.get(3))
                .and_then(|rows| rows.collect())
                .expect("reading the plan");
            let events: Vec<&String> =
                plan.iter().filter(|step| step.contains(" e ") || step.contains("events")).collect();
            assert!(
                !events.is_empty() && events.iter().all(|step| step.contains("INDEX events_by_command_run")),
                "{sql}\n{plan:#?}"
            );
        }
    }
}
