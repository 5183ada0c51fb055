//! How events and numbers are laid out in PostgreSQL, and back.
//!
//! Ids are `UUID`, times `TIMESTAMPTZ` (whole microseconds, the precision
//! the store keeps), payloads `TEXT` kept byte for byte, and the store's
//! `u64`s `BIGINT`, refusing anything that does not fit either way.

use chrono::{DateTime, Utc};
use seatledger_store::{AppendOutcome, EventMetadata, StoreError, StoredEvent};
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns of `events`, in the order [`event_from_row`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "position, id, stream, stream_version, type, schema_version, \
     recorded_at, effective_at, actor, channel, correlation_id, causation_id, command_id, payload, hash";

/// The columns of `commands` that make an outcome, in the order [`outcome_from_row`] reads them.
pub(crate) const OUTCOME_COLUMNS: &str = "stream, first_version, last_version, first_position, last_position";

/// A store number as a `BIGINT`.
pub(crate) fn to_sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} does not fit a PostgreSQL bigint")))
}

/// A `BIGINT` as a store number; a negative one means the data is damaged.
pub(crate) fn from_sql_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is stored as {value}, a negative number")))
}

/// Read one column, naming it when its value cannot be read.
pub(crate) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| StoreError::Corrupt(format!("{}: {}", what(), crate::connect::describe(&e))))
}

/// An event selected with [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    let position: i64 = column(row, 0, &|| "reading the position of an event".to_owned())?;
    let at = |what: &str| format!("reading {what} of the event at position {position}");
    let schema_version: i64 = column(row, 5, &|| at("the schema version"))?;
    Ok(StoredEvent {
        position: from_sql_int(position, "a position")?,
        id: column(row, 1, &|| at("the id"))?,
        stream: column::<&str>(row, 2, &|| at("the stream"))?.into(),
        stream_version: from_sql_int(column(row, 3, &|| at("the stream version"))?, &at("the stream version"))?,
        event_type: column::<&str>(row, 4, &|| at("the type"))?.into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt(format!("{} is {schema_version}", at("the schema version"))))?,
        recorded_at: column::<DateTime<Utc>>(row, 6, &|| at("recorded_at"))?,
        metadata: EventMetadata {
            effective_at: column::<DateTime<Utc>>(row, 7, &|| at("effective_at"))?,
            actor: column::<&str>(row, 8, &|| at("the actor"))?.into(),
            channel: column::<&str>(row, 9, &|| at("the channel"))?.into(),
            correlation_id: column(row, 10, &|| at("the correlation id"))?,
            causation_id: column::<Option<Uuid>>(row, 11, &|| at("the causation id"))?,
            command_id: column::<Option<Uuid>>(row, 12, &|| at("the command id"))?,
        },
        payload: column(row, 13, &|| at("the payload"))?,
        hash: column(row, 14, &|| at("the hash"))?,
    })
}

/// A command's outcome selected with [`OUTCOME_COLUMNS`].
pub(crate) fn outcome_from_row(row: &Row, command_id: Uuid) -> Result<AppendOutcome, StoreError> {
    let what = || format!("reading the outcome of command {command_id}");
    let number = |index: usize, name: &str| -> Result<u64, StoreError> {
        from_sql_int(column(row, index, &what)?, &format!("the {name} of command {command_id}"))
    };
    Ok(AppendOutcome {
        stream: column(row, 0, &what)?,
        first_version: number(1, "first version")?,
        last_version: number(2, "last version")?,
        first_position: number(3, "first position")?,
        last_position: number(4, "last position")?,
        deduplicated: false,
    })
}
