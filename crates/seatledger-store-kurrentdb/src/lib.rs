//! The KurrentDB / EventStoreDB backend of the seatledger event store,
//! through the official `kurrentdb` gRPC client.
//!
//! [`KurrentDbStore`] keeps seatledger's streams on a KurrentDB node or
//! cluster, under a namespace ([`names`]). It meets the [`EventStore`]
//! contract with the weaker promises its [`Capabilities`] declare, because
//! KurrentDB appends to one stream atomically and assigns the global position
//! only when it writes:
//! - `append_many` naming more than one stream is refused with
//!   [`StoreError::Unsupported`] before anything is written; several appends
//!   to the same stream in one call go to the server as one atomic append;
//! - global positions are the server's commit positions: strictly
//!   increasing, not gapless;
//! - the hash chain is per stream ([`ChainScope::PerStream`]).
//!
//! Idempotency: a retried write is recognised by its event ids, where its
//! expected version puts them (the server's own rule), and by its command id
//! through a reservation written before the command's events. The protocol,
//! its crash points, the metadata mapping and the cluster behaviour are in
//! `docs/kurrentdb.md`.

#![forbid(unsafe_code)]

mod codec;
mod connection;
pub mod names;

use chrono::{DateTime, Utc};
use codec::{CommandReservation, Tail};
use connection::Connection;
use kurrentdb::{
    AppendToStreamOptions, CurrentRevision, EventData, ReadAllOptions, ReadStreamOptions, RecordedEvent,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionFilter,
};
use names::Names;
use seatledger_store::{
    chain, dedup_by_event_ids, truncate_to_micros, validate_appends, validate_event_fields, validate_stream_name,
    AppendOutcome, Capabilities, ChainScope, Checkpoint, Clock, Direction, EventLocation, EventStore, ExpectedVersion,
    ImportOutcome, StoreError, StoredEvent, StreamAppend, MAX_READ_COUNT,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The namespace seatledger's streams live under unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "seatledger";
/// How long one store operation may take, retries included, unless told
/// otherwise. An unreachable or silent server gives
/// [`StoreError::Unavailable`] after at most this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times an append is planned again after a race (a concurrent
/// writer got in between the plan and the write) before it gives up.
const PLAN_ATTEMPTS: usize = 3;
/// How many times a checkpoint save retries when another save got in first.
const CHECKPOINT_ATTEMPTS: usize = 5;
/// Events read per page when following a command's events.
const COMMAND_PAGE: usize = 256;
/// The most events, and bytes of payload and metadata, one imported run
/// sends in one server append: under the server's default maximum append
/// size (1 MiB), so that imports work on a node with default settings.
const IMPORT_RUN_EVENTS: usize = 500;
const IMPORT_RUN_BYTES: usize = 768 * 1024;
/// Backoff bounds of the background `$all` subscription that moves the
/// head watch.
const FOLLOW_BACKOFF_MIN: Duration = Duration::from_millis(250);
const FOLLOW_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How to connect.
#[derive(Debug, Clone)]
pub struct KurrentDbOptions {
    /// The namespace seatledger's streams live under (ASCII letters, digits,
    /// `_`; see [`names`]).
    pub namespace: String,
    /// How long one store operation may take, retries included.
    pub timeout: Duration,
}

impl Default for KurrentDbOptions {
    fn default() -> Self {
        Self { namespace: DEFAULT_NAMESPACE.to_owned(), timeout: DEFAULT_TIMEOUT }
    }
}

/// An [`EventStore`] on a KurrentDB node or cluster.
pub struct KurrentDbStore {
    names: Names,
    conn: Arc<Connection>,
    clock: Arc<dyn Clock>,
    /// The latest `recorded_at` this process knows of: appends never go
    /// below it.
    high_water: Mutex<Option<DateTime<Utc>>>,
    /// Serialises this process's writes, so that their `recorded_at` never
    /// goes backwards along the log.
    write_gate: tokio::sync::Mutex<()>,
    head: Arc<tokio::sync::watch::Sender<u64>>,
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KurrentDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentDbStore")
            .field("url", &self.conn.url())
            .field("namespace", &self.names.namespace())
            .finish_non_exhaustive()
    }
}

impl Drop for KurrentDbStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// What to do with one stream append of a call, decided before writing.
#[derive(Debug)]
enum Plan {
    /// Stored already (by command id or by event ids): the original outcome.
    Found(AppendOutcome),
    /// An earlier append of the same call carries the same command id.
    SameCommandAs(usize),
    /// New events from this version on.
    Write { first_version: u64, reservation: Reservation },
}

/// What the command id of a [`Plan::Write`] needs before its events go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reservation {
    /// No command id.
    None,
    /// No reservation yet: create it.
    Create,
    /// The reservation names the place this attempt writes to already.
    Kept,
    /// The reservation names a place an earlier attempt can no longer land
    /// on: move it here (the reservation stream is at `revision`).
    Move { revision: u64 },
}

/// What the server said to a conditional append.
enum Appended {
    Done,
    WrongExpectedVersion(Option<u64>),
}

impl KurrentDbStore {
    /// Connect to the node or cluster a connection string names
    /// (`kurrentdb://`, `esdb://`, their `+discover` forms; see
    /// `docs/kurrentdb.md`), under the namespace its `namespace=` parameter
    /// names (seatledger's own; the client never sees it), else the default.
    /// The node is asked for the namespace's last event before this returns,
    /// so a wrong address fails here, within [`DEFAULT_TIMEOUT`].
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let (url, namespace) = split_namespace(url);
        let options = KurrentDbOptions {
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            ..KurrentDbOptions::default()
        };
        Self::open(&url, options, clock).await
    }

    /// Connect, keeping seatledger's streams under `namespace`.
    pub async fn connect_with_namespace(url: &str, namespace: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let options = KurrentDbOptions { namespace: namespace.to_owned(), ..KurrentDbOptions::default() };
        Self::connect_with_options(url, options, clock).await
    }

    /// Connect with every option spelled out. A `namespace=` parameter in
    /// the connection string must agree with `options.namespace`.
    pub async fn connect_with_options(
        url: &str,
        options: KurrentDbOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let (url, namespace) = split_namespace(url);
        if let Some(namespace) = namespace.filter(|n| *n != options.namespace) {
            return Err(StoreError::Unavailable(format!(
                "the connection string names namespace `{namespace}` and the options name `{}`: give one",
                options.namespace
            )));
        }
        Self::open(&url, options, clock).await
    }

    async fn open(url: &str, options: KurrentDbOptions, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let names = Names::new(&options.namespace)?;
        let conn = Arc::new(Connection::new(url, options.timeout)?);
        let (head, _) = tokio::sync::watch::channel(0);
        let mut store = Self {
            names,
            conn,
            clock,
            high_water: Mutex::new(None),
            write_gate: tokio::sync::Mutex::new(()),
            head: Arc::new(head),
            follower: tokio::spawn(std::future::ready(())),
        };
        // The probe: proves the node answers and lets us read `$all`, and
        // seeds the head and the recorded-time high-water mark.
        if let Some(last) = store.ledger_last("connecting").await? {
            store.raise_high_water(last.recorded_at);
            store.raise_head(last.position);
        }
        // Started once the head is known, from there.
        store.follower =
            tokio::spawn(follow_head(store.conn.clone(), store.names.ledger_prefix().to_owned(), store.head.clone()));
        tracing::debug!(url = %store.conn.url(), namespace = %store.names.namespace(), "connected to KurrentDB");
        Ok(store)
    }

    /// The namespace seatledger's streams live under.
    pub fn namespace(&self) -> &str {
        self.names.namespace()
    }

    fn raise_high_water(&self, recorded_at: DateTime<Utc>) {
        let mut high = self.high_water.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if high.is_none_or(|h| h < recorded_at) {
            *high = Some(recorded_at);
        }
    }

    fn high_water(&self) -> Option<DateTime<Utc>> {
        *self.high_water.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn raise_head(&self, position: u64) {
        self.head.send_if_modified(|head| {
            let moved = position > *head;
            if moved {
                *head = position;
            }
            moved
        });
    }

    // -----------------------------------------------------------------------
    // Reading.

    /// Up to `count` events of a server stream, from `position` in
    /// `direction`; a missing stream reads as empty.
    async fn read_raw(
        &self,
        what: &str,
        stream: &str,
        position: StreamPosition<u64>,
        direction: Direction,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = match direction {
            Direction::Forwards => ReadStreamOptions::default().forwards(),
            Direction::Backwards => ReadStreamOptions::default().backwards(),
        };
        // Every read goes to the leader: it sees every acknowledged write.
        let options = options.position(position).max_count(count).requires_leader(true);
        let result = self
            .conn
            .call(what, |client| {
                let options = options.clone();
                async move {
                    let mut read = client.read_stream(stream, &options).await?;
                    let mut events = Vec::new();
                    loop {
                        match read.next().await {
                            Ok(Some(resolved)) => events.extend(resolved.event),
                            Ok(None) => return Ok(events),
                            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                            Err(e) => return Err(e),
                        }
                    }
                }
            })
            .await;
        result.map_err(|e| self.conn.error(what, e))
    }

    /// Ledger events of one ledger stream (by its server name).
    async fn read_ledger(
        &self,
        what: &str,
        server_stream: &str,
        position: StreamPosition<u64>,
        direction: Direction,
        count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let raw = self.read_raw(what, server_stream, position, direction, count).await?;
        let mut events = Vec::with_capacity(raw.len());
        for recorded in &raw {
            if let Some(event) = codec::decode_ledger_event(&self.names, recorded)? {
                events.push(event);
            }
        }
        for event in &events {
            self.raise_high_water(event.recorded_at);
        }
        Ok(events)
    }

    /// The last event of a ledger stream.
    async fn tail(&self, what: &str, server_stream: &str) -> Result<Option<Tail>, StoreError> {
        let last = self.read_ledger(what, server_stream, StreamPosition::End, Direction::Backwards, 1).await?;
        last.first().map(Tail::of).transpose()
    }

    /// The event of a ledger stream at `version`.
    async fn ledger_event_at(
        &self,
        what: &str,
        server_stream: &str,
        version: u64,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let found =
            self.read_ledger(what, server_stream, StreamPosition::Position(version), Direction::Forwards, 1).await?;
        Ok(found.into_iter().next().filter(|e| e.stream_version == version))
    }

    /// Read `$all`, filtered on the server to the ledger's streams.
    async fn read_ledger_log(
        &self,
        what: &str,
        position: StreamPosition<kurrentdb::Position>,
        direction: Direction,
        count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let filter = SubscriptionFilter::on_stream_name().add_prefix(self.names.ledger_prefix());
        let options = match direction {
            Direction::Forwards => ReadAllOptions::default().forwards(),
            Direction::Backwards => ReadAllOptions::default().backwards(),
        };
        let options = options.position(position).filter(filter).max_count(count).requires_leader(true);
        let raw = self
            .conn
            .call(what, |client| {
                let options = options.clone();
                async move {
                    let mut read = client.read_all(&options).await?;
                    let mut events = Vec::new();
                    while let Some(resolved) = read.next().await? {
                        events.extend(resolved.event);
                    }
                    Ok(events)
                }
            })
            .await
            .map_err(|e| self.conn.error(what, e))?;
        let mut events = Vec::with_capacity(raw.len());
        for recorded in &raw {
            if let Some(event) = codec::decode_ledger_event(&self.names, recorded)? {
                self.raise_high_water(event.recorded_at);
                events.push(event);
            }
        }
        Ok(events)
    }

    /// The last event of the whole ledger.
    async fn ledger_last(&self, what: &str) -> Result<Option<StoredEvent>, StoreError> {
        let last = self.read_ledger_log(what, StreamPosition::End, Direction::Backwards, 1).await?;
        Ok(last.into_iter().next())
    }

    // -----------------------------------------------------------------------
    // Writing.

    /// Send one conditional append; a wrong expected version is an answer,
    /// not an error.
    async fn append_raw(
        &self,
        what: &str,
        stream: &str,
        state: StreamState,
        events: Vec<EventData>,
    ) -> Result<Appended, StoreError> {
        let options =
            AppendToStreamOptions::default().stream_state(state).deadline(self.conn.timeout()).requires_leader(true);
        let result = self
            .conn
            .call(what, |client| {
                let options = options.clone();
                let events = events.clone();
                async move { client.append_to_stream(stream, &options, events).await }
            })
            .await;
        match result {
            Ok(_) => Ok(Appended::Done),
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                Ok(Appended::WrongExpectedVersion(match current {
                    CurrentRevision::Current(revision) => Some(revision),
                    CurrentRevision::NoStream => None,
                }))
            }
            Err(e) => Err(self.conn.write_error(what, e)),
        }
    }

    /// The reservation of a command id, and the revision of its stream.
    async fn reservation(&self, command_id: Uuid) -> Result<Option<(u64, CommandReservation)>, StoreError> {
        let what = format!("reading the reservation of command {command_id}");
        let stream = self.names.command(command_id);
        let last = self.read_raw(&what, &stream, StreamPosition::End, Direction::Backwards, 1).await?;
        match last.first() {
            Some(recorded) => Ok(Some((recorded.revision, codec::decode_body(recorded)?))),
            None => Ok(None),
        }
    }

    /// The outcome of a reserved command if its events landed: they are the
    /// run of events carrying its id from the reserved version on.
    async fn landed(
        &self,
        command_id: Uuid,
        reservation: &CommandReservation,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let what = format!("looking for the events of command {command_id}");
        let server_stream = self.names.ledger(&reservation.stream);
        let mut from = reservation.first_version;
        let mut run: Option<(StoredEvent, StoredEvent)> = None;
        loop {
            let page = self
                .read_ledger(&what, &server_stream, StreamPosition::Position(from), Direction::Forwards, COMMAND_PAGE)
                .await?;
            let full = page.len() == COMMAND_PAGE;
            for event in page {
                if event.metadata.command_id != Some(command_id) {
                    return Ok(run.map(outcome_of_run));
                }
                run = Some(match run {
                    None => (event.clone(), event),
                    Some((first, _)) => (first, event),
                });
            }
            if !full {
                return Ok(run.map(outcome_of_run));
            }
            from += COMMAND_PAGE as u64;
        }
    }

    /// Decide every append of a call against the stream as it stands.
    async fn plan(
        &self,
        server_stream: &str,
        appends: &[StreamAppend],
        tail: Option<Tail>,
    ) -> Result<Vec<Plan>, StoreError> {
        let mut staged = tail.map(|t| t.version);
        let mut commands: HashMap<Uuid, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(appends.len());
        for (index, append) in appends.iter().enumerate() {
            let place = append.expected.next_version();
            // Idempotency by command id first, as the contract orders it.
            let mut reservation = Reservation::None;
            if let Some(command_id) = append.events[0].metadata.command_id {
                if let Some(&earlier) = commands.get(&command_id) {
                    plans.push(Plan::SameCommandAs(earlier));
                    continue;
                }
                commands.insert(command_id, index);
                reservation = match self.reservation(command_id).await? {
                    None => Reservation::Create,
                    Some((revision, reserved)) => {
                        if reserved.stream != append.stream {
                            return Err(StoreError::CommandIdReused { command_id, stream: reserved.stream });
                        }
                        if let Some(outcome) = self.landed(command_id, &reserved).await? {
                            plans.push(Plan::Found(AppendOutcome { deduplicated: true, ..outcome }));
                            continue;
                        }
                        if reserved.first_version == place {
                            Reservation::Kept
                        } else {
                            Reservation::Move { revision }
                        }
                    }
                };
            }
            // Then by event ids, where the expectation puts them: the
            // server's own rule for a retried write.
            if tail.is_some_and(|t| t.version >= place) {
                let what = format!("looking for the events of an append to `{}`", append.stream);
                let stored = self
                    .read_ledger(
                        &what,
                        server_stream,
                        StreamPosition::Position(place),
                        Direction::Forwards,
                        append.events.len(),
                    )
                    .await?;
                let by_id: HashMap<Uuid, EventLocation> = stored
                    .into_iter()
                    .map(|e| {
                        (
                            e.id,
                            EventLocation { stream: e.stream, stream_version: e.stream_version, position: e.position },
                        )
                    })
                    .collect();
                let found: Vec<(Uuid, Option<EventLocation>)> =
                    append.events.iter().map(|e| (e.id, by_id.get(&e.id).cloned())).collect();
                if let Some(outcome) = dedup_by_event_ids(&append.stream, &found)? {
                    plans.push(Plan::Found(outcome));
                    continue;
                }
            }
            if !append.expected.matches(staged) {
                return Err(StoreError::Conflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: staged,
                });
            }
            staged = Some(place + append.events.len() as u64 - 1);
            plans.push(Plan::Write { first_version: place, reservation });
        }
        Ok(plans)
    }

    /// Write the reservations the plan needs. `false` when another attempt
    /// of the same command reserved it in between: plan again.
    async fn reserve(&self, appends: &[StreamAppend], plans: &[Plan]) -> Result<bool, StoreError> {
        for (append, plan) in appends.iter().zip(plans) {
            let Plan::Write { first_version, reservation } = plan else { continue };
            let state = match reservation {
                Reservation::None | Reservation::Kept => continue,
                Reservation::Create => StreamState::NoStream,
                Reservation::Move { revision } => StreamState::StreamRevision(*revision),
            };
            let Some(command_id) = append.events[0].metadata.command_id else { continue };
            let body = CommandReservation { stream: append.stream.clone(), first_version: *first_version };
            let event = codec::bookkeeping_event_data(codec::COMMAND_RESERVED, &body)?;
            let what = format!("reserving command {command_id}");
            if let Appended::WrongExpectedVersion(_) =
                self.append_raw(&what, &self.names.command(command_id), state, vec![event]).await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Write the planned events in one server append. `Err(current)` when
    /// the server found the stream elsewhere than expected.
    async fn write(
        &self,
        server_stream: &str,
        appends: &[StreamAppend],
        plans: &[Plan],
        tail: Option<Tail>,
    ) -> Result<Result<Vec<(usize, AppendOutcome)>, Option<u64>>, StoreError> {
        let what = format!("appending to `{}`", appends[0].stream);
        let gate = self.write_gate.lock().await;
        // One reading of the clock per call, never below what this process
        // has seen, nor below the stream's own last event.
        let now = truncate_to_micros(self.clock.now());
        let recorded_at =
            [self.high_water(), tail.map(|t| t.recorded_at)].into_iter().flatten().fold(now, DateTime::max);
        let mut previous = tail.map_or(chain::GENESIS, |t| t.link);
        let mut expected = None;
        let mut data = Vec::new();
        let mut written = Vec::new();
        for (index, (append, plan)) in appends.iter().zip(plans).enumerate() {
            let Plan::Write { first_version, .. } = plan else { continue };
            expected.get_or_insert(append.expected);
            for (offset, event) in append.events.iter().enumerate() {
                let version = first_version + offset as u64;
                let mut stored = StoredEvent::unplaced(&append.stream, version, recorded_at, event.clone());
                let link = chain::stream_link(&previous, &stored);
                stored.hash = hex_link(&link);
                previous = link;
                data.push(codec::ledger_event_data(&stored)?);
            }
            let last_version = first_version + append.events.len() as u64 - 1;
            written.push((index, *first_version, last_version));
        }
        let state = match expected {
            Some(ExpectedVersion::NoStream) => StreamState::NoStream,
            Some(ExpectedVersion::Exact(version)) => StreamState::StreamRevision(version),
            None => return Ok(Ok(Vec::new())),
        };
        if let Appended::WrongExpectedVersion(current) = self.append_raw(&what, server_stream, state, data).await? {
            return Ok(Err(current));
        }
        self.raise_high_water(recorded_at);
        drop(gate);

        // The server assigned the positions: read them back.
        let mut outcomes = Vec::with_capacity(written.len());
        for (index, first_version, last_version) in written {
            let append = &appends[index];
            let first = self.written_event(&what, server_stream, first_version, append.events[0].id).await?;
            let last = if last_version == first_version {
                first.clone()
            } else {
                let last_id = append.events[append.events.len() - 1].id;
                self.written_event(&what, server_stream, last_version, last_id).await?
            };
            self.raise_head(last.position);
            outcomes.push((
                index,
                AppendOutcome {
                    stream: append.stream.clone(),
                    first_version,
                    last_version,
                    first_position: first.position,
                    last_position: last.position,
                    deduplicated: false,
                },
            ));
        }
        Ok(Ok(outcomes))
    }

    /// An event this store just wrote, read back for its position.
    async fn written_event(
        &self,
        what: &str,
        server_stream: &str,
        version: u64,
        id: Uuid,
    ) -> Result<StoredEvent, StoreError> {
        match self.ledger_event_at(what, server_stream, version).await? {
            Some(event) if event.id == id => Ok(event),
            other => Err(StoreError::Corrupt(format!(
                "{what}: version {version} should be the event {id} just written, but the server has {}",
                other.map_or_else(|| "nothing".to_owned(), |e| format!("event {}", e.id))
            ))),
        }
    }

    /// Append to one stream: plan, reserve command ids, write, and plan
    /// again if a concurrent writer got in between.
    async fn append_one_stream(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        let stream = appends[0].stream.clone();
        let server_stream = self.names.ledger(&stream);
        let what = format!("appending to `{stream}`");
        let mut last_conflict = None;
        for _ in 0..PLAN_ATTEMPTS {
            let tail = self.tail(&what, &server_stream).await?;
            let plans = self.plan(&server_stream, &appends, tail).await?;
            if !self.reserve(&appends, &plans).await? {
                continue;
            }
            match self.write(&server_stream, &appends, &plans, tail).await? {
                Ok(written) => return Ok(resolve(plans, written)),
                Err(current) => {
                    // Another writer appended since our read: plan again, and
                    // find either our own events (a retry that raced us) or
                    // the conflict to report.
                    let expected = appends
                        .iter()
                        .zip(&plans)
                        .find(|(_, p)| matches!(p, Plan::Write { .. }))
                        .map_or(appends[0].expected, |(a, _)| a.expected);
                    last_conflict = Some(StoreError::Conflict { stream: stream.clone(), expected, actual: current });
                }
            }
        }
        Err(last_conflict.unwrap_or_else(|| {
            StoreError::Unavailable(format!(
                "{what}: another attempt of the same command kept reserving it concurrently; retry"
            ))
        }))
    }

    // -----------------------------------------------------------------------
    // Import.

    async fn import_events(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        let mut outcome = ImportOutcome::default();
        if events.is_empty() {
            return Ok(outcome);
        }
        let what = "importing";
        // Everything is checked before anything is written, so that an
        // import that does not fit writes nothing.
        let mut last_recorded = self.ledger_last(what).await?.map(|e| e.recorded_at);
        let mut streams: HashMap<String, ImportStream> = HashMap::new();
        let mut writes: Vec<StoredEvent> = Vec::new();
        for mut event in events {
            event.recorded_at = truncate_to_micros(event.recorded_at);
            event.metadata.effective_at = truncate_to_micros(event.metadata.effective_at);
            validate_imported(&event)?;
            let server_stream = self.names.ledger(&event.stream);
            if !streams.contains_key(&event.stream) {
                let tail = self.tail(what, &server_stream).await?;
                streams.insert(event.stream.clone(), ImportStream { tail, known: HashMap::new() });
            }
            let Some(state) = streams.get_mut(&event.stream) else {
                return Err(StoreError::Corrupt(format!("import lost track of stream `{}`", event.stream)));
            };
            let next = state.tail.map_or(0, |t| t.version + 1);
            if event.stream_version < next {
                let stored_id = match state.known.get(&event.stream_version) {
                    Some(id) => Some(*id),
                    None => {
                        let page = self
                            .read_ledger(
                                what,
                                &server_stream,
                                StreamPosition::Position(event.stream_version),
                                Direction::Forwards,
                                IMPORT_RUN_EVENTS,
                            )
                            .await?;
                        state.known.extend(page.iter().map(|e| (e.stream_version, e.id)));
                        state.known.get(&event.stream_version).copied()
                    }
                };
                if stored_id == Some(event.id) {
                    outcome.skipped += 1;
                    continue;
                }
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "version {} of stream `{}` is already taken by a different event",
                        event.stream_version, event.stream
                    ),
                });
            }
            if event.stream_version > next {
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "version gap on stream `{}`: the next version is {next}, the event has version {}",
                        event.stream, event.stream_version
                    ),
                });
            }
            if let Some(last) = last_recorded.filter(|last| event.recorded_at < *last) {
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "recorded_at {} is earlier than the last stored event's {}",
                        event.recorded_at.to_rfc3339(),
                        last.to_rfc3339()
                    ),
                });
            }
            let previous = state.tail.map_or(chain::GENESIS, |t| t.link);
            let link = chain::stream_link(&previous, &event);
            event.hash = hex_link(&link);
            state.tail = Some(Tail { version: event.stream_version, link, recorded_at: event.recorded_at });
            state.known.insert(event.stream_version, event.id);
            last_recorded = Some(event.recorded_at);
            writes.push(event);
        }

        // Written in per-stream runs, in log order. Each run is atomic; the
        // import as a whole is not, and resumes by skipping what is stored.
        let gate = self.write_gate.lock().await;
        let mut reserved: HashSet<Uuid> = HashSet::new();
        for run in import_runs(writes) {
            let first = &run[0];
            let stream = first.stream.clone();
            let server_stream = self.names.ledger(&stream);
            for event in &run {
                let Some(command_id) = event.metadata.command_id else { continue };
                if !reserved.insert(command_id) {
                    continue;
                }
                // The first stream a command wrote to owns it, as in the
                // other backends; a resumed import finds its reservation.
                if self.reservation(command_id).await?.is_none() {
                    let body = CommandReservation { stream: stream.clone(), first_version: event.stream_version };
                    let data = codec::bookkeeping_event_data(codec::COMMAND_RESERVED, &body)?;
                    let what = format!("reserving imported command {command_id}");
                    // A concurrent reservation of the same id wins; ours is then not needed.
                    self.append_raw(&what, &self.names.command(command_id), StreamState::NoStream, vec![data]).await?;
                }
            }
            let expected = ExpectedVersion::from_current(first.stream_version.checked_sub(1));
            let state = match expected {
                ExpectedVersion::NoStream => StreamState::NoStream,
                ExpectedVersion::Exact(version) => StreamState::StreamRevision(version),
            };
            let data = run.iter().map(codec::ledger_event_data).collect::<Result<Vec<_>, _>>()?;
            let count = run.len() as u64;
            let recorded_at = run[run.len() - 1].recorded_at;
            match self.append_raw(what, &server_stream, state, data).await? {
                Appended::Done => {}
                Appended::WrongExpectedVersion(actual) => {
                    // Someone wrote to the stream during the import: what is
                    // written stays, and a new import resumes after it.
                    return Err(StoreError::Conflict { stream, expected, actual });
                }
            }
            outcome.imported += count;
            self.raise_high_water(recorded_at);
        }
        drop(gate);
        if outcome.imported > 0 {
            if let Some(last) = self.ledger_last(what).await? {
                self.raise_head(last.position);
            }
        }
        Ok(outcome)
    }

    // -----------------------------------------------------------------------
    // Checkpoints.

    async fn last_checkpoint_event(&self, name: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let what = format!("reading checkpoint `{name}`");
        let last =
            self.read_raw(&what, &self.names.checkpoint(name), StreamPosition::End, Direction::Backwards, 1).await?;
        Ok(last.into_iter().next())
    }

    /// Append one checkpoint event after the last one; latest wins.
    async fn write_checkpoint_event(
        &self,
        name: &str,
        event_type: &str,
        body: &CheckpointBody,
    ) -> Result<(), StoreError> {
        let what = format!("saving checkpoint `{name}`");
        for _ in 0..CHECKPOINT_ATTEMPTS {
            let last = self.last_checkpoint_event(name).await?;
            if event_type == codec::CHECKPOINT_DELETED
                && last.as_ref().is_none_or(|e| e.event_type == codec::CHECKPOINT_DELETED)
            {
                return Ok(());
            }
            let state = last.map_or(StreamState::NoStream, |e| StreamState::StreamRevision(e.revision));
            let data = codec::bookkeeping_event_data(event_type, body)?;
            match self.append_raw(&what, &self.names.checkpoint(name), state, vec![data]).await? {
                Appended::Done => return Ok(()),
                Appended::WrongExpectedVersion(_) => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "{what}: other saves of the same checkpoint kept getting in first ({CHECKPOINT_ATTEMPTS} attempts)"
        )))
    }
}

/// A checkpoint save as stored: the same fields as [`Checkpoint`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CheckpointBody {
    position: u64,
    state: Option<String>,
}

/// A stream as an import has planned it so far.
#[derive(Debug)]
struct ImportStream {
    tail: Option<Tail>,
    /// Event ids by version, as stored or as planned.
    known: HashMap<u64, Uuid>,
}

/// Take seatledger's own `namespace=` parameter out of a connection string,
/// leaving the rest for the client exactly as it was.
fn split_namespace(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut namespace = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("namespace") => namespace = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, namespace)
}

/// Consecutive events of one stream, cut so that each run fits one server
/// append of a node with default settings.
fn import_runs(events: Vec<StoredEvent>) -> Vec<Vec<StoredEvent>> {
    let mut runs: Vec<Vec<StoredEvent>> = Vec::new();
    let mut bytes = 0;
    for event in events {
        let size = event.payload.len() + 512;
        let fits = runs.last().is_some_and(|run| {
            run[0].stream == event.stream && run.len() < IMPORT_RUN_EVENTS && bytes + size <= IMPORT_RUN_BYTES
        });
        if fits {
            bytes += size;
            if let Some(run) = runs.last_mut() {
                run.push(event);
            }
        } else {
            bytes = size;
            runs.push(vec![event]);
        }
    }
    runs
}

fn outcome_of_run((first, last): (StoredEvent, StoredEvent)) -> AppendOutcome {
    AppendOutcome {
        stream: first.stream,
        first_version: first.stream_version,
        last_version: last.stream_version,
        first_position: first.position,
        last_position: last.position,
        deduplicated: false,
    }
}

/// The outcomes of a call, in order.
fn resolve(plans: Vec<Plan>, written: Vec<(usize, AppendOutcome)>) -> Vec<AppendOutcome> {
    let mut written: HashMap<usize, AppendOutcome> = written.into_iter().collect();
    let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(plans.len());
    for (index, plan) in plans.into_iter().enumerate() {
        let outcome = match plan {
            Plan::Found(outcome) => outcome,
            Plan::SameCommandAs(earlier) => AppendOutcome { deduplicated: true, ..outcomes[earlier].clone() },
            Plan::Write { .. } => written
                .remove(&index)
                .unwrap_or_else(|| panic!("append {index} was planned as a write but has no outcome")),
        };
        outcomes.push(outcome);
    }
    outcomes
}

fn hex_link(link: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64);
    for byte in link {
        // Writing into a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Check an imported event's own fields, naming it in the error.
fn validate_imported(event: &StoredEvent) -> Result<(), StoreError> {
    let invalid = |e: StoreError| match e {
        StoreError::InvalidAppend(reason) => StoreError::InvalidImport { id: event.id, reason },
        other => other,
    };
    validate_stream_name(&event.stream).map_err(invalid)?;
    validate_event_fields(&event.event_type, &event.payload, event.id).map_err(invalid)
}

/// Move the head watch when the ledger grows, whoever wrote: a `$all`
/// subscription filtered to the ledger's streams, for as long as the store
/// lives. It starts after the head the store knows, so nothing appended
/// since is missed (an empty namespace means from the start of `$all`).
/// Subscriptions also poll, so this only makes them quicker to see other
/// processes' appends.
async fn follow_head(conn: Arc<Connection>, ledger_prefix: String, head: Arc<tokio::sync::watch::Sender<u64>>) {
    let mut backoff = FOLLOW_BACKOFF_MIN;
    loop {
        let filter = SubscriptionFilter::on_stream_name().add_prefix(&ledger_prefix);
        let from = match *head.borrow() {
            0 => StreamPosition::Start,
            p => StreamPosition::Position(kurrentdb::Position { commit: p, prepare: p }),
        };
        let options = SubscribeToAllOptions::default().position(from).filter(filter).requires_leader(true);
        let mut subscription = conn.client().subscribe_to_all(&options).await;
        loop {
            match subscription.next().await {
                Ok(event) => {
                    backoff = FOLLOW_BACKOFF_MIN;
                    let position = event.get_original_event().position.commit;
                    head.send_if_modified(|h| {
                        let moved = position > *h;
                        if moved {
                            *h = position;
                        }
                        moved
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, url = %conn.url(), "the head subscription ended; resubscribing");
                    if matches!(e, kurrentdb::Error::ConnectionClosed | kurrentdb::Error::GrpcConnectionError(_)) {
                        conn.reconnect();
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(FOLLOW_BACKOFF_MAX);
    }
}

#[async_trait::async_trait]
impl EventStore for KurrentDbStore {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        validate_appends(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams: Vec<&str> = appends.iter().map(|a| a.stream.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        if streams.len() > 1 {
            return Err(StoreError::Unsupported(format!(
                "KurrentDB appends to one stream atomically, and this append names {} streams (`{}`); \
                 nothing was written: append to each stream on its own",
                streams.len(),
                streams.join("`, `")
            )));
        }
        self.append_one_stream(appends).await
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        match self.reservation(command_id).await? {
            Some((_, reserved)) => self.landed(command_id, &reserved).await,
            None => Ok(None),
        }
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
        let what = format!("reading `{stream}`");
        let server_stream = self.names.ledger(stream);
        let position = match direction {
            Direction::Forwards => StreamPosition::Position(from),
            // The server reads backwards from a revision past the end as
            // nothing: start from the last version instead (not from "the
            // end", which may have moved on since).
            Direction::Backwards => match self.tail(&what, &server_stream).await? {
                None => return Ok(Vec::new()),
                Some(tail) => StreamPosition::Position(from.min(tail.version)),
            },
        };
        self.read_ledger(&what, &server_stream, position, direction, count).await
    }

    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let count = max_count.min(MAX_READ_COUNT);
        if count == 0 || after == u64::MAX {
            return Ok(Vec::new());
        }
        let position = match after {
            0 => StreamPosition::Start,
            // Reading forwards from a position includes the event at it.
            p => StreamPosition::Position(kurrentdb::Position { commit: p, prepare: p }),
        };
        let mut events = self.read_ledger_log("reading the ledger", position, Direction::Forwards, count + 1).await?;
        events.retain(|e| e.position > after);
        events.truncate(count);
        if let Some(pair) = events.windows(2).find(|w| w[1].position <= w[0].position) {
            return Err(StoreError::Corrupt(format!(
                "the server returned position {} after position {}: positions must increase strictly",
                pair[1].position, pair[0].position
            )));
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let what = format!("reading the version of `{stream}`");
        Ok(self.tail(&what, &self.names.ledger(stream)).await?.map(|t| t.version))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.ledger_last("reading the head of the ledger").await?.map_or(0, |e| e.position))
    }

    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        self.import_events(events).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        match self.last_checkpoint_event(name).await? {
            Some(event) if event.event_type == codec::CHECKPOINT_SAVED => {
                let body: CheckpointBody = codec::decode_body(&event)?;
                Ok(Some(Checkpoint { position: body.position, state: body.state }))
            }
            _ => Ok(None),
        }
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let body = CheckpointBody { position: checkpoint.position, state: checkpoint.state.clone() };
        self.write_checkpoint_event(name, codec::CHECKPOINT_SAVED, &body).await
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        let body = CheckpointBody { position: 0, state: None };
        self.write_checkpoint_event(name, codec::CHECKPOINT_DELETED, &body).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_multi_stream_append: false, gapless_positions: false, chain: ChainScope::PerStream }
    }

    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::split_namespace;

    #[test]
    fn the_namespace_parameter_is_seatledgers_and_the_rest_is_left_as_it_was() {
        assert_eq!(
            split_namespace("kurrentdb://a:2113?tls=false&namespace=acme&nodePreference=leader"),
            ("kurrentdb://a:2113?tls=false&nodePreference=leader".to_owned(), Some("acme".to_owned()))
        );
        assert_eq!(split_namespace("esdb://a,b,c?Namespace=x"), ("esdb://a,b,c".to_owned(), Some("x".to_owned())));
        assert_eq!(split_namespace("kurrentdb://a:2113"), ("kurrentdb://a:2113".to_owned(), None));
    }
}
