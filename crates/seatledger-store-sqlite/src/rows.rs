//! How events, ids and times are laid out in SQLite, and back.
//!
//! Uuids are stored as canonical lowercase hyphenated text (readable with the
//! `sqlite3` shell when an auditor looks at the file), times as whole
//! microseconds since the Unix epoch, and the store's `u64`s as SQLite's
//! signed 64-bit integers, refusing anything that does not fit either way.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use seatledger_store::{EventMetadata, StoreError, StoredEvent};
use uuid::Uuid;

/// The columns of `events`, in the order [`RawEvent::from_row`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "position, id, stream, stream_version, type, schema_version, \
     recorded_at_us, effective_at_us, actor, channel, correlation_id, causation_id, command_id, payload, hash";

/// Wrap a rusqlite error with what the store was doing when it failed.
pub(crate) trait Context<T> {
    fn context(self, doing: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, doing: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("{}: {e}", doing())))
    }
}

/// A store number as a SQLite integer.
pub(crate) fn to_sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} does not fit a SQLite integer")))
}

/// A SQLite integer as a store number; a negative one means the file is damaged.
pub(crate) fn from_sql_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is stored as {value}, a negative number")))
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is stored as {us} µs, out of the representable range")))
}

pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_uuid(text: &str, what: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is stored as {text:?}, not a uuid: {e}")))
}

/// One `events` row as SQLite hands it over, before its values are checked.
#[derive(Debug)]
pub(crate) struct RawEvent {
    position: i64,
    id: String,
    stream: String,
    stream_version: i64,
    event_type: String,
    schema_version: i64,
    recorded_at_us: i64,
    effective_at_us: i64,
    actor: String,
    channel: String,
    correlation_id: String,
    causation_id: Option<String>,
    command_id: Option<String>,
    payload: String,
    hash: String,
}

impl RawEvent {
    /// Read a row selected with [`EVENT_COLUMNS`].
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            position: row.get(0)?,
            id: row.get(1)?,
            stream: row.get(2)?,
            stream_version: row.get(3)?,
            event_type: row.get(4)?,
            schema_version: row.get(5)?,
            recorded_at_us: row.get(6)?,
            effective_at_us: row.get(7)?,
            actor: row.get(8)?,
            channel: row.get(9)?,
            correlation_id: row.get(10)?,
            causation_id: row.get(11)?,
            command_id: row.get(12)?,
            payload: row.get(13)?,
            hash: row.get(14)?,
        })
    }

    pub(crate) fn into_event(self) -> Result<StoredEvent, StoreError> {
        let at = format!("event at position {}", self.position);
        let optional = |text: Option<String>, what: &str| -> Result<Option<Uuid>, StoreError> {
            text.map(|t| parse_uuid(&t, &format!("{what} of {at}"))).transpose()
        };
        Ok(StoredEvent {
            position: from_sql_int(self.position, "a position")?,
            id: parse_uuid(&self.id, &format!("the id of {at}"))?,
            stream_version: from_sql_int(self.stream_version, &format!("the stream version of {at}"))?,
            schema_version: u32::try_from(self.schema_version).map_err(|_| {
                StoreError::Corrupt(format!("the schema version of {at} is stored as {}", self.schema_version))
            })?,
            recorded_at: from_micros(self.recorded_at_us, &format!("recorded_at of {at}"))?,
            metadata: EventMetadata {
                effective_at: from_micros(self.effective_at_us, &format!("effective_at of {at}"))?,
                actor: self.actor,
                channel: self.channel,
                correlation_id: parse_uuid(&self.correlation_id, &format!("the correlation id of {at}"))?,
                causation_id: optional(self.causation_id, "the causation id")?,
                command_id: optional(self.command_id, "the command id")?,
            },
            stream: self.stream,
            event_type: self.event_type,
            payload: self.payload,
            hash: self.hash,
        })
    }
}
