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

mod append;
mod checkpoints;
mod codec;
mod connection;
mod import;
pub mod names;

use checkpoints::CheckpointBody;
use chrono::{DateTime, Utc};
use codec::Tail;
use connection::Connection;
use kurrentdb::{
    AppendToStreamOptions, CurrentRevision, EventData, ReadAllOptions, ReadStreamOptions, RecordedEvent,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionFilter,
};
use names::Names;
use seatledger_store::{
    validate_appends, AppendOutcome, Capabilities, ChainScope, Checkpoint, Clock, Direction, EventStore, ImportOutcome,
    StoreError, StoredEvent, StreamAppend, MAX_READ_COUNT,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The namespace seatledger's streams live under unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "seatledger";
/// How long one store operation may take, retries included, unless told
/// otherwise. An unreachable or silent server gives
/// [`StoreError::Unavailable`] after at most this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
            return Err(StoreError::InvalidConfig(format!(
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
        Capabilities {
            atomic_multi_stream_append: false,
            gapless_positions: false,
            chain: ChainScope::PerStream,
            event_ids: seatledger_store::EventIdScope::ExpectedPosition,
        }
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
