//! From a stored event to a domain event with its envelope.

use seatledger_domain::{Event, StreamId};
use seatledger_projections::Recorded;
use seatledger_store::StoredEvent;

/// A stored event whose payload has been decoded (and upcast).
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub stored: StoredEvent,
    pub stream: StreamId,
    pub event: Event,
}

impl DecodedEvent {
    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            position: self.stored.position,
            id: self.stored.id,
            stream: &self.stream,
            stream_version: self.stored.stream_version,
            event_type: &self.stored.event_type,
            recorded_at: self.stored.recorded_at,
            effective_at: self.stored.metadata.effective_at,
            actor: &self.stored.metadata.actor,
            channel: &self.stored.metadata.channel,
            event: &self.event,
        }
    }
}

/// Decode a stored event. Streams that are not the ledger's own (for
/// example a server's system streams) give `Ok(None)`.
pub fn decode_stored(stored: StoredEvent) -> Result<Option<DecodedEvent>, String> {
    let Some(stream) = StreamId::parse(&stored.stream) else { return Ok(None) };
    let event = seatledger_codec::decode(&stored.event_type, stored.schema_version, &stored.payload).map_err(|e| {
        format!(
            "event at position {} (stream `{}`, version {}): {e}",
            stored.position, stored.stream, stored.stream_version
        )
    })?;
    Ok(Some(DecodedEvent { stored, stream, event }))
}
