//! How events, ids and times are laid out in SQLite, and back.
//!
//! Uuids are stored as their 16 bytes and hash links as their 32 (BLOBs), a
//! stream as the number of its row in `streams` (the `event_log` view spells
//! them as text, for an auditor reading the file with `sqlite3`), times as whole
//! microseconds since the Unix epoch, and the store's `u64`s as SQLite's
//! signed 64-bit integers, refusing anything that does not fit either way.

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use seatledger_store::{EventMetadata, StoreError, StoredEvent};
use std::fmt::Display;
use uuid::Uuid;

/// The columns of an event, in the order [`event_from_row`] reads them,
/// from `events AS e` and its stream's row `streams AS s` (the stream by its
/// name; joined with `LEFT JOIN` where the events lead, so that an event
/// whose stream has no row is reported, not skipped).
pub(crate) const EVENT_COLUMNS: &str = "e.position, e.id, s.name, e.stream_version, e.type, e.schema_version, \
     e.recorded_at_us, e.effective_at_us, e.actor, e.channel, e.correlation_id, e.causation_id, e.command_id, \
     e.payload, e.hash";

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

/// A uuid as the BLOB the store keeps.
pub(crate) fn uuid_blob(id: &Uuid) -> &[u8] {
    id.as_bytes()
}

/// A stored BLOB as a uuid; anything but 16 bytes means the file is damaged.
pub(crate) fn parse_uuid(bytes: &[u8], what: impl Display) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is stored as {}, not a uuid", shown(bytes))))
}

/// A stored BLOB as a hash link; anything but 32 bytes means the file is damaged.
pub(crate) fn parse_link(bytes: &[u8], what: impl Display) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is stored as {}, not a 32-byte link", shown(bytes))))
}

/// A stream's name read through a `LEFT JOIN` from the events to `streams`:
/// `None` means the events of `whose` have a stream number with no row (the
/// file was written with foreign keys off), which is damage, not absence.
pub(crate) fn stream_name<T>(name: Option<T>, whose: impl Display) -> Result<T, StoreError> {
    name.ok_or_else(|| StoreError::Corrupt(format!("the stream of {whose} has no row in `streams`")))
}

/// A damaged value for a message: its length, and its bytes as text when
/// they are printable text (what migration 3 keeps of text it could not
/// convert), else as hex (the first 64).
fn shown(bytes: &[u8]) -> String {
    let unit = if bytes.len() == 1 { "byte" } else { "bytes" };
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => {
            format!("{} {unit}, the text {text:?}", bytes.len())
        }
        _ => {
            let hex: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
            format!("{} {unit} ({hex}{})", bytes.len(), if bytes.len() > 64 { "…" } else { "" })
        }
    }
}

/// Read a row selected with [`EVENT_COLUMNS`] into a checked event.
///
/// This is the replay path, so it allocates only what a [`StoredEvent`]
/// owns: ids are read from the row's borrowed bytes, and error messages,
/// which name the column and the event's position, are built only on error.
pub(crate) fn event_from_row(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let position: i64 = row.get(0).map_err(|e| column_error("position", None, e))?;
    let get = |index: usize, column: &'static str| -> Result<ValueRef<'_>, StoreError> {
        row.get_ref(index).map_err(|e| column_error(column, Some(position), e))
    };
    let text = |index: usize, column: &'static str| -> Result<&str, StoreError> {
        get(index, column)?.as_str().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let blob = |index: usize, column: &'static str| -> Result<&[u8], StoreError> {
        get(index, column)?.as_blob().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let optional_blob = |index: usize, column: &'static str| -> Result<Option<&[u8]>, StoreError> {
        get(index, column)?.as_blob_or_null().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let int = |index: usize, column: &'static str| -> Result<i64, StoreError> {
        get(index, column)?.as_i64().map_err(|e| column_error(column, Some(position), e.into()))
    };
    let optional_uuid = |index: usize, column: &'static str| -> Result<Option<Uuid>, StoreError> {
        optional_blob(index, column)?
            .map(|b| parse_uuid(b, format_args!("the {column} of the event at position {position}")))
            .transpose()
    };
    let schema_version = int(5, "schema_version")?;
    Ok(StoredEvent {
        position: from_sql_int(position, "a position")?,
        id: parse_uuid(blob(1, "id")?, format_args!("the id of the event at position {position}"))?,
        stream: stream_name(
            get(2, "stream")?.as_str_or_null().map_err(|e| column_error("stream", Some(position), e.into()))?,
            format_args!("the event at position {position}"),
        )?
        .into(),
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
                blob(10, "correlation_id")?,
                format_args!("the correlation id of the event at position {position}"),
            )?,
            causation_id: optional_uuid(11, "causation_id")?,
            command_id: optional_uuid(12, "command_id")?,
        },
        payload: text(13, "payload")?.to_owned(),
        hash: seatledger_store::chain::to_hex(&parse_link(
            blob(14, "hash")?,
            format_args!("the hash of the event at position {position}"),
        )?),
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
