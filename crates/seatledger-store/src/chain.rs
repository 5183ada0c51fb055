//! The hash chain over the global log.
//!
//! Each stored event carries `hash = SHA-256(previous hash ‖ canonical bytes)`,
//! where the canonical bytes are every stored field (position, id, stream,
//! version, type, schema version, both timestamps, actor, channel, the three
//! ids and the payload), each length-prefixed so that no two different events
//! share an encoding. The first event's previous hash is 32 zero bytes.
//! Changing any byte of any stored event breaks its link, and `verify` names
//! the first one that does not hold.

use crate::{BrokenLink, EventStore, StoreError, StoredEvent, VerifyReport};
use sha2::{Digest, Sha256};

/// The previous hash of the very first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The link of `event`, given the link of the event before it.
pub fn link(previous: &[u8; 32], event: &StoredEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(event.position.to_be_bytes());
    h.update(event.id.as_bytes());
    field(&mut h, event.stream.as_bytes());
    h.update(event.stream_version.to_be_bytes());
    field(&mut h, event.event_type.as_bytes());
    h.update(event.schema_version.to_be_bytes());
    h.update(event.recorded_at.timestamp_micros().to_be_bytes());
    h.update(event.metadata.effective_at.timestamp_micros().to_be_bytes());
    field(&mut h, event.metadata.actor.as_bytes());
    field(&mut h, event.metadata.channel.as_bytes());
    h.update(event.metadata.correlation_id.as_bytes());
    optional_id(&mut h, event.metadata.causation_id);
    optional_id(&mut h, event.metadata.command_id);
    field(&mut h, event.payload.as_bytes());
    h.finalize().into()
}

/// The link as the lowercase hex text stored beside the event.
pub fn link_hex(previous: &[u8; 32], event: &StoredEvent) -> String {
    hex::encode(link(previous, event))
}

/// Parse a stored hex link.
pub fn parse_link(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn optional_id(h: &mut Sha256, id: Option<uuid::Uuid>) {
    match id {
        None => h.update([0u8]),
        Some(id) => {
            h.update([1u8]);
            h.update(id.as_bytes());
        }
    }
}

/// Incremental verification: feed events in global order.
#[derive(Debug, Clone)]
pub struct Verifier {
    previous: [u8; 32],
    checked: u64,
    last_position: u64,
    first_broken: Option<BrokenLink>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self { previous: GENESIS, checked: 0, last_position: 0, first_broken: None }
    }
}

impl Verifier {
    /// Check one event. Returns false once a broken link has been found.
    pub fn check(&mut self, event: &StoredEvent) -> bool {
        if self.first_broken.is_some() {
            return false;
        }
        let expected = link(&self.previous, event);
        let broken = |reason: String| BrokenLink {
            position: event.position,
            event_id: event.id,
            stream: event.stream.clone(),
            stream_version: event.stream_version,
            reason,
        };
        if event.position <= self.last_position {
            self.first_broken =
                Some(broken(format!("position {} does not follow position {}", event.position, self.last_position)));
            return false;
        }
        match parse_link(&event.hash) {
            Some(stored) if stored == expected => {
                self.previous = stored;
                self.checked += 1;
                self.last_position = event.position;
                true
            }
            Some(_) => {
                self.first_broken =
                    Some(broken("stored hash does not match the event's contents and the link before it".to_owned()));
                false
            }
            None => {
                self.first_broken = Some(broken(format!("stored hash {:?} is not 64 hex digits", event.hash)));
                false
            }
        }
    }

    pub fn report(self) -> VerifyReport {
        VerifyReport { checked: self.checked, first_broken: self.first_broken }
    }
}

/// Verify any store by reading its global log in pages.
pub async fn verify_by_reading<S: EventStore + ?Sized>(store: &S) -> Result<VerifyReport, StoreError> {
    let mut verifier = Verifier::default();
    let mut after = 0;
    loop {
        let page = store.read_all(after, crate::MAX_READ_COUNT).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            if !verifier.check(event) {
                return Ok(verifier.report());
            }
        }
    }
    Ok(verifier.report())
}
