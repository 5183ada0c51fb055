//! Export and import of stored events as JSON Lines.
//!
//! An export line is a whole [`StoredEvent`]: id, stream, version, type,
//! schema version, both timestamps, metadata, payload (as JSON) and the hash
//! link it had. An import keeps ids, stream versions, metadata and
//! `recorded_at`; the target store assigns positions and hash links anew.
//!
//! Import checks the whole file before it writes anything: every line must
//! parse, name a known event type and version whose payload decodes, and
//! continue its stream without a gap or a repeated id. Only then are the
//! events written, in batches of [`IMPORT_BATCH`], each one transaction. A
//! process killed mid-import leaves the store at a batch boundary, and
//! running the same import again skips what is there and writes the rest.

use seatledger_store::{EventStore, ImportOutcome, StoreError, StoredEvent, MAX_READ_COUNT};
use std::collections::HashMap;
use std::io::{BufRead, Write};

/// Events written per import transaction.
pub const IMPORT_BATCH: usize = 1_000;

/// One refused line of an event file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRejection {
    pub line: usize,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{}", describe(.0))]
    Rejected(Vec<ImportRejection>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn describe(rejections: &[ImportRejection]) -> String {
    format!("{} line(s) refused; nothing was imported", rejections.len())
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub skipped: u64,
    pub rejected: Vec<ImportRejection>,
}

/// Write every stored event as JSON Lines; returns how many.
pub async fn export(
    store: &dyn EventStore,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, TransferError> {
    let head = store.head_position().await?;
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = store.read_all(after, MAX_READ_COUNT).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        for event in &page {
            serde_json::to_writer(&mut *out, event)
                .map_err(|e| std::io::Error::other(format!("writing event {}: {e}", event.position)))?;
            out.write_all(b"\n")?;
            count += 1;
        }
        after = last;
        progress(after, head.max(after));
    }
    out.flush()?;
    Ok(count)
}

/// Check one export line.
fn check_line(text: &str) -> Result<StoredEvent, String> {
    let event: StoredEvent = serde_json::from_str(text).map_err(|e| format!("not a stored event: {e}"))?;
    seatledger_store::validate_stream_name(&event.stream).map_err(|e| e.to_string())?;
    seatledger_store::validate_event_fields(&event.event_type, &event.payload, event.id).map_err(|e| e.to_string())?;
    if seatledger_domain::StreamId::parse(&event.stream).is_some() {
        seatledger_codec::decode(&event.event_type, event.schema_version, &event.payload)
            .map_err(|e| format!("field `payload`: {e}"))?;
    }
    Ok(event)
}

/// The ids a stream already holds from some version on, read once per
/// stream when the file first mentions it.
struct StoredIds {
    from: u64,
    ids: Vec<uuid::Uuid>,
}

impl StoredIds {
    async fn load(store: &dyn EventStore, stream: &str, from: u64) -> Result<Self, TransferError> {
        let mut ids = vec![];
        let mut next = from;
        loop {
            let page = store.read_stream(stream, next, seatledger_store::Direction::Forwards, MAX_READ_COUNT).await?;
            let full = page.len() == MAX_READ_COUNT;
            if let Some(last) = page.last() {
                next = last.stream_version + 1;
            }
            ids.extend(page.iter().map(|e| e.id));
            if !full {
                return Ok(Self { from, ids });
            }
        }
    }

    fn id_at(&self, version: u64) -> Option<uuid::Uuid> {
        version.checked_sub(self.from).and_then(|i| self.ids.get(i as usize)).copied()
    }
}

/// Read and check a whole event file. With `continue_on_error`, refused
/// lines are reported and the rest is kept; otherwise any refusal fails
/// the file.
pub async fn check_file(
    store: &dyn EventStore,
    input: &mut dyn BufRead,
    continue_on_error: bool,
) -> Result<(Vec<StoredEvent>, Vec<ImportRejection>), TransferError> {
    let mut events = vec![];
    let mut rejected = vec![];
    let mut ids: HashMap<uuid::Uuid, usize> = HashMap::new();
    // The next version each stream must continue with.
    let mut next_version: HashMap<String, u64> = HashMap::new();
    let mut stored_ids: HashMap<String, StoredIds> = HashMap::new();
    let mut buf = String::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        if input.read_line(&mut buf)? == 0 {
            break;
        }
        line += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let event = match check_line(text) {
            Ok(e) => e,
            Err(error) => {
                rejected.push(ImportRejection { line, error });
                continue;
            }
        };
        if let Some(first) = ids.insert(event.id, line) {
            rejected.push(ImportRejection { line, error: format!("event id {} repeats line {first}", event.id) });
            continue;
        }
        // An event at a version the store already holds must be that very
        // event (a resumed import); anything else is a version conflict.
        if let Some(held) = stored_ids.get_mut(&event.stream).map(|h| h.id_at(event.stream_version)) {
            if let Some(held) = held {
                if held != event.id {
                    rejected.push(ImportRejection {
                        line,
                        error: format!(
                            "field `stream_version`: version conflict: stream `{}` already holds event {held} at version {}",
                            event.stream, event.stream_version
                        ),
                    });
                    continue;
                }
            }
        } else {
            let held = StoredIds::load(store, &event.stream, event.stream_version).await?;
            let conflict = held.id_at(event.stream_version).filter(|id| *id != event.id);
            stored_ids.insert(event.stream.clone(), held);
            if let Some(other) = conflict {
                rejected.push(ImportRejection {
                    line,
                    error: format!(
                        "field `stream_version`: version conflict: stream `{}` already holds event {other} at version {}",
                        event.stream, event.stream_version
                    ),
                });
                continue;
            }
        }
        let expected = match next_version.get(&event.stream) {
            Some(next) => *next,
            None => {
                // The file may start a stream anywhere up to one past what
                // the store holds: events the store has are skipped on import.
                let stored_next = store.stream_version(&event.stream).await?.map_or(0, |v| v + 1);
                if event.stream_version > stored_next {
                    rejected.push(ImportRejection {
                        line,
                        error: format!(
                            "field `stream_version`: stream `{}` continues at version {} but the store holds it only up to version {}",
                            event.stream,
                            event.stream_version,
                            stored_next as i64 - 1
                        ),
                    });
                    continue;
                }
                event.stream_version
            }
        };
        if event.stream_version != expected {
            rejected.push(ImportRejection {
                line,
                error: format!(
                    "field `stream_version`: stream `{}` expects version {expected} here, not {}",
                    event.stream, event.stream_version
                ),
            });
            continue;
        }
        next_version.insert(event.stream.clone(), expected + 1);
        events.push(event);
    }
    if !rejected.is_empty() && !continue_on_error {
        return Err(TransferError::Rejected(rejected));
    }
    Ok((events, rejected))
}

/// Import checked events in batches, each batch one transaction.
pub async fn import_events(
    store: &dyn EventStore,
    events: Vec<StoredEvent>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<ImportOutcome, TransferError> {
    let total = events.len() as u64;
    let mut done = ImportOutcome::default();
    let mut iter = events.into_iter().peekable();
    while iter.peek().is_some() {
        let batch: Vec<StoredEvent> = iter.by_ref().take(IMPORT_BATCH).collect();
        let outcome = store.import(batch).await?;
        done.imported += outcome.imported;
        done.skipped += outcome.skipped;
        progress(done.imported + done.skipped, total);
    }
    Ok(done)
}
