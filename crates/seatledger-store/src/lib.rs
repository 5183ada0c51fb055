//! The event store contract of seatledger.
//!
//! This crate owns the [`EventStore`] trait and the types every backend shares:
//! what an append looks like ([`StreamAppend`], [`NewEvent`]), what comes back
//! ([`StoredEvent`], [`AppendOutcome`]), the typed errors ([`StoreError`]), the
//! tamper-evident hash chain ([`chain`]) and the catch-up-then-live
//! subscription ([`subscription`]). It knows nothing about licences: payloads
//! are opaque JSON text with a type name and a schema version beside them.
//!
//! Design decisions, written down once:
//! - Stream versions are 0-based revisions, as in KurrentDB: the first event of
//!   a stream has version 0, and `ExpectedVersion::Exact(n)` means "the last
//!   event of the stream has version n". There is no "any": every append says
//!   what it expects.
//! - Global positions are 1-based and gapless on the embedded backends;
//!   position 0 means "before the first event", so `read_all(0, …)` reads from
//!   the start. Other backends promise a strictly increasing order only.
//! - `recorded_at` is set by the store from its [`Clock`], truncated to whole
//!   microseconds (what every backend can keep exactly), and never goes
//!   backwards along the global log.
//! - An append is idempotent twice over: by command id (the same command,
//!   retried, returns its original outcome and appends nothing) and by event
//!   id (re-sending the very events already stored returns their outcome).
//! - [`EventStore::append_many`] is atomic across streams: all of it is
//!   stored, or none of it.

#![forbid(unsafe_code)]

pub mod chain;
pub mod clock;
pub mod conformance;
pub mod memory;
pub mod subscription;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use uuid::Uuid;

pub use clock::{Clock, SteppingClock, SystemClock};
pub use memory::MemoryStore;
pub use subscription::Subscription;

/// The most events one call to [`EventStore::append_many`] may carry, summed
/// over its streams. Bigger imports are split into batches by the caller.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// The largest payload, in bytes, of one event.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The longest stream name, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 200;
/// The most events one read returns, whatever the caller asked for.
pub const MAX_READ_COUNT: usize = 10_000;

/// What the writer expects the stream to look like before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that matches a stream whose last version is `current`.
    pub fn from_current(current: Option<u64>) -> Self {
        match current {
            None => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(v),
        }
    }

    /// Whether a stream whose last version is `current` meets this expectation.
    pub fn matches(self, current: Option<u64>) -> bool {
        match (self, current) {
            (ExpectedVersion::NoStream, None) => true,
            (ExpectedVersion::Exact(e), Some(c)) => e == c,
            _ => false,
        }
    }

    /// The version the first appended event will get.
    pub fn next_version(self) -> u64 {
        match self {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(v) => v + 1,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Who did it, when it counts, and why: carried by every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Business time: when the fact takes effect. May be backdated.
    pub effective_at: DateTime<Utc>,
    /// Who caused it (a user, an operator, a process manager).
    pub actor: SmolStr,
    /// Through which channel it came (portal, provider, system, cli, api, …).
    pub channel: SmolStr,
    /// Groups every event that one request caused.
    pub correlation_id: Uuid,
    /// The event (or command) that caused this one, when there is one.
    pub causation_id: Option<Uuid>,
    /// The idempotency key of the command that produced this event.
    pub command_id: Option<Uuid>,
}

/// An event on its way into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// UUIDv7, chosen by the writer so that a retry can be recognised.
    pub id: Uuid,
    /// The stable type name, independent of any Rust enum.
    pub event_type: SmolStr,
    /// The schema version of `payload`.
    pub schema_version: u32,
    /// The payload as JSON text (an object).
    pub payload: String,
    pub metadata: EventMetadata,
}

/// Appending events to one stream, with an explicit expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the global log (1-based).
    pub position: u64,
    pub id: Uuid,
    pub stream: SmolStr,
    /// Version within the stream (0-based).
    pub stream_version: u64,
    #[serde(rename = "type")]
    pub event_type: SmolStr,
    pub schema_version: u32,
    /// Set by the store; never earlier than the event before it.
    pub recorded_at: DateTime<Utc>,
    #[serde(flatten)]
    pub metadata: EventMetadata,
    /// The payload as JSON text. On the wire (export files) it is embedded as a
    /// JSON value, not as a string.
    #[serde(with = "raw_json")]
    pub payload: String,
    /// Hex SHA-256 link of the hash chain, see [`chain`].
    pub hash: String,
}

impl StoredEvent {
    /// The stored form of a new event, before the log gives it a position and
    /// a hash. Every backend keeps whole microseconds, so `effective_at` is
    /// truncated here, once, for all of them.
    pub fn unplaced(stream: &str, stream_version: u64, recorded_at: DateTime<Utc>, event: NewEvent) -> StoredEvent {
        let mut metadata = event.metadata;
        metadata.effective_at = truncate_to_micros(metadata.effective_at);
        StoredEvent {
            position: 0,
            id: event.id,
            stream: stream.into(),
            stream_version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            recorded_at,
            metadata,
            payload: event.payload,
            hash: String::new(),
        }
    }
}

/// Serialize a JSON text field as embedded JSON, and read it back as text.
mod raw_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|e| serde::ser::Error::custom(format!("payload is not JSON: {e}")))?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        Ok(raw.get().to_owned())
    }
}

/// What one stream append resulted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub stream: String,
    /// Version of the first event appended (or found, when deduplicated).
    pub first_version: u64,
    /// Version of the last event appended; the stream's version right after.
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// True when nothing new was written because the same command or the same
    /// events had been stored before: the outcome is the original one.
    pub deduplicated: bool,
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Where a reader stands, and optionally its serialized read model, saved in
/// one write so that the two never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last global position folded into `state`.
    pub position: u64,
    /// The read model as JSON text, when the projection keeps one.
    pub state: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How many events were checked.
    pub checked: u64,
    /// The first link that does not hold, if any.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    pub position: u64,
    pub event_id: Uuid,
    pub stream: String,
    pub stream_version: u64,
    /// What is wrong, in words.
    pub reason: String,
}

/// What `import` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Events written.
    pub imported: u64,
    /// Events skipped because the very same event (same id, stream, version)
    /// was already stored: this is what makes an interrupted import resumable.
    pub skipped: u64,
}

/// Every way a store operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the writer expected.
    #[error("version conflict on stream `{stream}`: expected {expected}, found {}", describe_current(*.actual))]
    Conflict { stream: String, expected: ExpectedVersion, actual: Option<u64> },
    /// An event id is stored already, as a different event.
    #[error("event id {id} is already stored (stream `{stream}`, version {stream_version})")]
    DuplicateEventId { id: Uuid, stream: String, stream_version: u64 },
    /// A command id was used before with a different stream.
    #[error("command id {command_id} was already used for stream `{stream}`")]
    CommandIdReused { command_id: Uuid, stream: String },
    /// The store's configuration is wrong: a malformed URL or connection
    /// string, an invalid namespace or schema name. Says what and where.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The request is malformed (empty stream name, too many events, payload
    /// that is not a JSON object, …). Names what is wrong.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// An event handed to `import` does not fit the store (a version gap, a
    /// recorded time going backwards, …).
    #[error("invalid import of event {id}: {reason}")]
    InvalidImport { id: Uuid, reason: String },
    /// The backend failed (IO, connection, database error).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store's own data is inconsistent: a broken internal invariant.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The backend could not be reached, or did not answer in time (server
    /// down, wrong address, bad credentials, connection dropped). Whether a
    /// write that was in flight happened is unknown; retrying it with the same
    /// command id is safe.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend cannot do what was asked (for example an atomic append
    /// across several streams on a server that appends one stream at a time).
    #[error("not supported by this store: {0}")]
    Unsupported(String),
}

/// What a backend guarantees beyond the common contract. The conformance
/// suite reads these and checks the stronger or the weaker promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `append_many` over several streams is atomic. When false, an append
    /// naming more than one stream is refused with [`StoreError::Unsupported`]
    /// and nothing is written.
    pub atomic_multi_stream_append: bool,
    /// Global positions are 1-based and gapless. When false they only
    /// increase strictly along the log.
    pub gapless_positions: bool,
    /// How far the hash chain reaches, see [`chain`].
    pub chain: ChainScope,
    /// Where a stored event id is recognised when it is sent again.
    pub event_ids: EventIdScope,
}

/// Where a store looks for an event id sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventIdScope {
    /// Anywhere in the log: an id stored in any stream, at any version, is
    /// found, and sending it again anywhere else is `DuplicateEventId`.
    WholeLog,
    /// Where the append's expected version puts it (KurrentDB's own rule): a
    /// retry of the very same append is recognised; an id reused elsewhere
    /// is not detected.
    ExpectedPosition,
}

impl Capabilities {
    /// What the embedded stores and PostgreSQL promise.
    pub const FULL: Capabilities = Capabilities {
        atomic_multi_stream_append: true,
        gapless_positions: true,
        chain: ChainScope::GlobalLog,
        event_ids: EventIdScope::WholeLog,
    };
}

/// The order the hash chain links events in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainScope {
    /// One chain over the whole global log, in position order: the store
    /// serialises appends, so every event's predecessor is known when it is written.
    GlobalLog,
    /// One chain per stream, in version order: for servers whose global
    /// position is assigned after the write (KurrentDB).
    PerStream,
}

fn describe_current(actual: Option<u64>) -> String {
    match actual {
        None => "no stream".to_owned(),
        Some(v) => format!("version {v}"),
    }
}

/// The contract every backend meets; the conformance suite in
/// [`conformance`] checks it. Picked once at start-up as `Arc<dyn EventStore>`.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Append to several streams at once, atomically: every stream's
    /// expectation is checked, and either all events are stored or none.
    /// Each append is deduplicated on its own (by command id, then by event
    /// id) before its expectation is checked. Appends are applied in order,
    /// and one stream may appear several times (one append per command): a
    /// later append's expectation sees the earlier ones of the same call.
    /// Outcomes come back in order.
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Append to one stream. See [`EventStore::append_many`].
    async fn append(&self, append: StreamAppend) -> Result<AppendOutcome, StoreError> {
        let stream = append.stream.clone();
        let mut outcomes = self.append_many(vec![append]).await?;
        outcomes.pop().ok_or_else(|| StoreError::Corrupt(format!("append to `{stream}` returned no outcome")))
    }

    /// The outcome recorded for a command id, if that command was appended.
    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError>;

    /// Read up to `max_count` events of a stream, starting at version `from`
    /// (inclusive) and going in `direction`. Backwards from `u64::MAX` reads
    /// from the end. An unknown stream reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Read up to `max_count` events of the global log with a position
    /// greater than `after`.
    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last version of a stream, or `None` when it does not exist.
    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError>;

    /// The position of the last event in the global log (0 when empty).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Copy events from another store (or an export file), keeping their ids,
    /// stream versions, metadata and `recorded_at`; positions and hashes are
    /// assigned anew. Events already stored identically are skipped. All of
    /// one call is written in one transaction.
    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError>;

    /// Walk the hash chain and report the first broken link.
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        chain::verify_by_reading(self).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError>;
    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError>;

    /// What this backend guarantees beyond the common contract.
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    /// A receiver that changes whenever this process appends, carrying the
    /// new head position. Subscriptions wait on it, and also poll, so that
    /// appends by other processes are seen too.
    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Checks shared by every backend before an append touches storage.
pub fn validate_appends(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    if total > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidAppend(format!(
            "{total} events in one append; at most {MAX_EVENTS_PER_APPEND} are allowed"
        )));
    }
    let mut seen_ids = std::collections::HashSet::new();
    for a in appends {
        validate_stream_name(&a.stream)?;
        if a.events.is_empty() {
            return Err(StoreError::InvalidAppend(format!("no events to append to stream `{}`", a.stream)));
        }
        let command_id = a.events[0].metadata.command_id;
        for e in &a.events {
            if !seen_ids.insert(e.id) {
                return Err(StoreError::InvalidAppend(format!("event id {} appears twice in one append", e.id)));
            }
            if e.metadata.command_id != command_id {
                return Err(StoreError::InvalidAppend(format!(
                    "events of one stream append must share one command id (stream `{}`)",
                    a.stream
                )));
            }
            validate_event_fields(&e.event_type, &e.payload, e.id)?;
        }
    }
    Ok(())
}

/// Where an event id is stored already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLocation {
    pub stream: String,
    pub stream_version: u64,
    pub position: u64,
}

/// The event-id half of idempotency, the same rule for every backend: given
/// where each event of an append to `stream` is stored already, `Some(outcome)`
/// when all of them are, in this stream, at consecutive versions in the same
/// order (a retry); `None` when none is; `DuplicateEventId` for anything in between.
pub fn dedup_by_event_ids(
    stream: &str,
    found: &[(Uuid, Option<EventLocation>)],
) -> Result<Option<AppendOutcome>, StoreError> {
    let Some((first_id, first)) = found.iter().find_map(|(id, loc)| loc.as_ref().map(|l| (*id, l))) else {
        return Ok(None);
    };
    let duplicate = || StoreError::DuplicateEventId {
        id: first_id,
        stream: first.stream.clone(),
        stream_version: first.stream_version,
    };
    let mut previous: Option<&EventLocation> = None;
    for (_, location) in found {
        let Some(location) = location else {
            return Err(duplicate());
        };
        if location.stream != stream {
            return Err(duplicate());
        }
        if previous.is_some_and(|p| location.stream_version != p.stream_version + 1) {
            return Err(duplicate());
        }
        previous = Some(location);
    }
    let last = previous.unwrap_or(first);
    Ok(Some(AppendOutcome {
        stream: stream.to_owned(),
        first_version: first.stream_version,
        last_version: last.stream_version,
        first_position: first.position,
        last_position: last.position,
        deduplicated: true,
    }))
}

/// A stream name is non-empty, at most [`MAX_STREAM_NAME_BYTES`] long, and
/// has no control characters.
pub fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    if stream.is_empty() {
        return Err(StoreError::InvalidAppend("stream name is empty".to_owned()));
    }
    if stream.len() > MAX_STREAM_NAME_BYTES {
        return Err(StoreError::InvalidAppend(format!(
            "stream name is {} bytes; at most {MAX_STREAM_NAME_BYTES} are allowed",
            stream.len()
        )));
    }
    if stream.chars().any(char::is_control) {
        return Err(StoreError::InvalidAppend(format!("stream name {stream:?} has a control character")));
    }
    Ok(())
}

/// The type name must be non-empty and the payload a JSON object within
/// [`MAX_PAYLOAD_BYTES`].
pub fn validate_event_fields(event_type: &str, payload: &str, id: Uuid) -> Result<(), StoreError> {
    if event_type.is_empty() {
        return Err(StoreError::InvalidAppend(format!("event {id} has an empty type name")));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(StoreError::InvalidAppend(format!(
            "event {id} has a payload of {} bytes; at most {MAX_PAYLOAD_BYTES} are allowed",
            payload.len()
        )));
    }
    match serde_json::from_str::<&serde_json::value::RawValue>(payload) {
        Ok(raw) if raw.get().trim_start().starts_with('{') => Ok(()),
        Ok(_) => Err(StoreError::InvalidAppend(format!("event {id} payload is not a JSON object"))),
        Err(e) => Err(StoreError::InvalidAppend(format!("event {id} payload is not JSON: {e}"))),
    }
}

/// Check an imported event's own fields, naming it in the error.
pub fn validate_imported(event: &StoredEvent) -> Result<(), StoreError> {
    let invalid = |e: StoreError| match e {
        StoreError::InvalidAppend(reason) => StoreError::InvalidImport { id: event.id, reason },
        other => other,
    };
    validate_stream_name(&event.stream).map_err(invalid)?;
    validate_event_fields(&event.event_type, &event.payload, event.id).map_err(invalid)
}

/// The order checks shared by every backend's import: no version gap, no
/// version taken twice, no recorded time going backwards. `current` is the
/// stream's last version and `last_recorded_at` the log's last recorded time.
pub fn check_import_fits(
    event: &StoredEvent,
    current: Option<u64>,
    last_recorded_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let next = current.map_or(0, |v| v + 1);
    let invalid = |reason: String| Err(StoreError::InvalidImport { id: event.id, reason });
    if event.stream_version < next {
        return invalid(format!(
            "version {} of stream `{}` is already taken by a different event",
            event.stream_version, event.stream
        ));
    }
    if event.stream_version > next {
        return invalid(format!(
            "version gap on stream `{}`: the next version is {next}, the event has version {}",
            event.stream, event.stream_version
        ));
    }
    match last_recorded_at {
        Some(last) if event.recorded_at < last => invalid(format!(
            "recorded_at {} is earlier than the last stored event's {}",
            event.recorded_at.to_rfc3339(),
            last.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

/// Truncate a timestamp to whole microseconds, the precision every backend keeps.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// A server URL as it may be shown in messages and logs: any password is
/// replaced by `***` (`postgres://me:s3cret@db/x` → `postgres://me:***@db/x`,
/// and in a `key=value` string, `password=s3cret` → `password=***`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show_in_urls() {
        assert_eq!(redact_url("postgres://me:s3cret@db:5432/ledger"), "postgres://me:***@db:5432/ledger");
        assert_eq!(
            redact_url("kurrentdb://admin:changeit@node1:2113?tls=true"),
            "kurrentdb://admin:***@node1:2113?tls=true"
        );
        assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact_url("esdb+discover://a:2113,b:2113?tls=false"), "esdb+discover://a:2113,b:2113?tls=false");
        assert_eq!(redact_url("sqlite:./x.db"), "sqlite:./x.db");
        assert_eq!(redact_url("host=db password=s3cret user=me"), "host=db password=*** user=me");
    }
}
