//! How events, ids and times are laid out in SQLite, and back.
//!
//! Uuids are stored as canonical lowercase hyphenated text (readable with the
//! `sqlite3` shell when an auditor looks at the file), times as whole
//! microseconds since the Unix epoch, and the store's `u64`s as SQLite's
//! signed 64-bit integers, refusing anything that does not fit either way.

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use seatledger_store::{EventMetadata, StoreError, StoredEvent};
use std::fmt::Display;
use uuid::Uuid;

/// The columns of `events`, in the order [`event_from_row`] reads them.
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
///
/// `what` names the value for the error message; it is only rendered when the
/// value is wrong, so a lazy `format_args!` costs nothing on the read path.
pub(crate) fn from_sql_int(value: i64, what: impl Display) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is stored as {value}, a negative number")))
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64, what: impl Display) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is stored as {us} µs, out of the representable range")))
}

/// A uuid as the text the store keeps, written into `buffer` (one from
/// `Uuid::encode_buffer()`, which is always long enough).
pub(crate) fn uuid_str(id: Uuid, buffer: &mut [u8]) -> &str {
    id.hyphenated().encode_lower(buffer)
}

pub(crate) fn parse_uuid(text: &str, what: impl Display) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is stored as {text:?}, not a uuid: {e}")))
}

/// Read a row selected with [`EVENT_COLUMNS`] into a checked event.
///
/// This is the replay path, so it allocates only what a [`StoredEvent`]
/// owns: ids are parsed from the row's borrowed text, and error messages,
/// which name the column and the event's position, are built only on error.
pub(crate) fn event_from_row(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let position: i64 = row.get(0).map_err(|e| column_error("position", None, e))?;
    let get = |index: usize, column: &'static str| -> Result<ValueRef<'_>, StoreError> {
        row.get_ref(index).map_err(|e| column_error(column, Some(position), e))
    };
    let text = |index: usize, column: &'static str| -> Result<&str, StoreError> {
        get(index, column)?.as_str().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let optional_text = |index: usize, column: &'static str| -> Result<Option<&str>, StoreError> {
        get(index, column)?.as_str_or_null().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let int = |index: usize, column: &'static str| -> Result<i64, StoreError> {
        get(index, column)?.as_i64().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let optional_uuid = |index: usize, column: &'static str| -> Result<Option<Uuid>, StoreError> {
        optional_text(index, column)?
            .map(|t| parse_uuid(t, format_args!("the {column} of the event at position {position}")))
            .transpose()
    };
    let schema_version = int(5, "schema_version")?;
    Ok(StoredEvent {
        position: from_sql_int(position, "a position")?,
        id: parse_uuid(text(1, "id")?, format_args!("the id of the event at position {position}"))?,
        stream: text(2, "stream")?.into(),
        stream_version: from_sql_int(
            int(3, "stream_version")?,
            format_args!("the stream version of the event at position {position}"),
        )?,
        event_type: text(4, "type")?.into(),
        schema_version: u32::try_from(schema_version).map_err(|_| {
            StoreError::Corrupt(format!(
                "the schema version of the event at position {position} is stored as {schema_version}"
            ))
        })?,
        recorded_at: from_micros(
            int(6, "recorded_at_us")?,
            format_args!("recorded_at of the event at position {position}"),
        )?,
        metadata: EventMetadata {
            effective_at: from_micros(
                int(7, "effective_at_us")?,
                format_args!("effective_at of the event at position {position}"),
            )?,
            actor: text(8, "actor")?.into(),
            channel: text(9, "channel")?.into(),
            correlation_id: parse_uuid(
                text(10, "correlation_id")?,
                format_args!("the correlation id of the event at position {position}"),
            )?,
            causation_id: optional_uuid(11, "causation_id")?,
            command_id: optional_uuid(12, "command_id")?,
        },
        payload: text(13, "payload")?.to_owned(),
        hash: text(14, "hash")?.to_owned(),
    })
}

/// A column of `events` that SQLite could not hand over as the type the
/// store wrote: the file was changed by something else.
fn column_error(column: &str, position: Option<i64>, e: rusqlite::Error) -> StoreError {
    match position {
        Some(p) => StoreError::Corrupt(format!("column `{column}` of the event at position {p}: {e}")),
        None => StoreError::Corrupt(format!("column `{column}` of an event: {e}")),
    }
}
