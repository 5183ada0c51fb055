//! How a seatledger event is written as a KurrentDB event, and read back.
//!
//! - event id: the seatledger event id, so that the server recognises a
//!   retried write by its ids;
//! - event type: the seatledger type name; content type JSON;
//! - data: the payload's JSON text, byte for byte;
//! - custom metadata (JSON): everything else seatledger stores, plus the
//!   server's own `$correlationId` / `$causationId` convention;
//! - revision and `$all` commit position: the stream version and the global
//!   position, assigned by the server.

use crate::names::Names;
use chrono::{DateTime, Utc};
use kurrentdb::{EventData, RecordedEvent};
use seatledger_store::{chain, EventMetadata, StoreError, StoredEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The custom metadata of a ledger event.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerMetadata {
    /// KurrentDB's convention, so that the server's `$by_correlation_id`
    /// projection and its UI can follow a request.
    #[serde(rename = "$correlationId")]
    server_correlation_id: Uuid,
    /// KurrentDB's convention; absent when nothing caused the event.
    #[serde(rename = "$causationId", default, skip_serializing_if = "Option::is_none")]
    server_causation_id: Option<Uuid>,
    schema_version: u32,
    /// Whole microseconds, RFC 3339.
    recorded_at: DateTime<Utc>,
    effective_at: DateTime<Utc>,
    actor: String,
    channel: String,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    command_id: Option<Uuid>,
    /// The event's link in its stream's hash chain, lowercase hex.
    hash: String,
}

/// The server event for a ledger event whose version, `recorded_at` and
/// hash are set (its position is the server's to give).
pub(crate) fn ledger_event_data(event: &StoredEvent) -> Result<EventData, StoreError> {
    let payload = serde_json::value::RawValue::from_string(event.payload.clone())
        .map_err(|e| StoreError::InvalidAppend(format!("event {} payload is not JSON: {e}", event.id)))?;
    let metadata = LedgerMetadata {
        server_correlation_id: event.metadata.correlation_id,
        server_causation_id: event.metadata.causation_id,
        schema_version: event.schema_version,
        recorded_at: event.recorded_at,
        effective_at: event.metadata.effective_at,
        actor: event.metadata.actor.to_string(),
        channel: event.metadata.channel.to_string(),
        correlation_id: event.metadata.correlation_id,
        causation_id: event.metadata.causation_id,
        command_id: event.metadata.command_id,
        hash: event.hash.clone(),
    };
    let data = EventData::json(&event.event_type, &payload)
        .and_then(|data| data.metadata_as_json(&metadata))
        .map_err(|e| StoreError::Backend(format!("encoding event {}: {e}", event.id)))?;
    Ok(data.id(event.id))
}

/// A ledger event as the server returned it. `None` for an event that is not
/// the ledger's (a system event, or a stream outside the namespace).
pub(crate) fn decode_ledger_event(names: &Names, recorded: &RecordedEvent) -> Result<Option<StoredEvent>, StoreError> {
    let server_stream = recorded.stream_id();
    let Some(stream) = names.ledger_stream_of(server_stream) else { return Ok(None) };
    if recorded.event_type.starts_with('$') {
        return Ok(None);
    }
    let corrupt = |what: String| {
        StoreError::Corrupt(format!(
            "event {} (revision {} of `{server_stream}`, position {}) is not a seatledger event: {what}",
            recorded.id, recorded.revision, recorded.position.commit
        ))
    };
    if recorded.position.commit == u64::MAX || recorded.position.commit == 0 {
        // Servers before 22.10 leave the log position out of stream reads;
        // without it no read can say where an event sits in the log.
        return Err(StoreError::Unsupported(format!(
            "the server did not report the log position of event {} of `{server_stream}`: \
             seatledger needs KurrentDB, or EventStoreDB 22.10 or later",
            recorded.id
        )));
    }
    let metadata: LedgerMetadata =
        serde_json::from_slice(&recorded.custom_metadata).map_err(|e| corrupt(format!("its metadata: {e}")))?;
    let payload = String::from_utf8(recorded.data.to_vec()).map_err(|e| corrupt(format!("its payload: {e}")))?;
    Ok(Some(StoredEvent {
        position: recorded.position.commit,
        id: recorded.id,
        stream: stream.into(),
        stream_version: recorded.revision,
        event_type: recorded.event_type.as_str().into(),
        schema_version: metadata.schema_version,
        recorded_at: metadata.recorded_at,
        metadata: EventMetadata {
            effective_at: metadata.effective_at,
            actor: metadata.actor.into(),
            channel: metadata.channel.into(),
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            command_id: metadata.command_id,
        },
        payload,
        hash: metadata.hash,
    }))
}

/// The last event of a ledger stream: what the next append links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) version: u64,
    pub(crate) link: [u8; 32],
    pub(crate) recorded_at: DateTime<Utc>,
}

impl Tail {
    pub(crate) fn of(event: &StoredEvent) -> Result<Tail, StoreError> {
        // Extending a chain from a link that cannot be parsed would chain
        // from garbage: refuse, naming the event.
        let link = chain::parse_link(&event.hash).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the hash of version {} of stream `{}` is not 64 hex digits: {:?}",
                event.stream_version, event.stream, event.hash
            ))
        })?;
        Ok(Tail { version: event.stream_version, link, recorded_at: event.recorded_at })
    }
}

/// The event reserving a command id for one stream append: written before
/// the command's events (see the crate docs for the protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommandReservation {
    /// The ledger stream the command appends to.
    pub(crate) stream: String,
    /// The version the command's first event gets if it lands.
    pub(crate) first_version: u64,
}

pub(crate) const COMMAND_RESERVED: &str = "SeatledgerCommandReserved";
pub(crate) const CHECKPOINT_SAVED: &str = "SeatledgerCheckpointSaved";
pub(crate) const CHECKPOINT_DELETED: &str = "SeatledgerCheckpointDeleted";

/// A bookkeeping event (reservation, checkpoint) with a fresh id.
pub(crate) fn bookkeeping_event_data<T: Serialize>(event_type: &str, body: &T) -> Result<EventData, StoreError> {
    EventData::json(event_type, body)
        .map(|data| data.id(Uuid::now_v7()))
        .map_err(|e| StoreError::Backend(format!("encoding a {event_type} event: {e}")))
}

/// A bookkeeping event's body.
pub(crate) fn decode_body<T: for<'de> Deserialize<'de>>(recorded: &RecordedEvent) -> Result<T, StoreError> {
    serde_json::from_slice(&recorded.data).map_err(|e| {
        StoreError::Corrupt(format!(
            "{} event {} of `{}` cannot be read: {e}",
            recorded.event_type,
            recorded.id,
            recorded.stream_id()
        ))
    })
}

/// A link as the lowercase hex text stored in the metadata.
pub(crate) fn hex_link(link: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64);
    for byte in link {
        // Writing into a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}
