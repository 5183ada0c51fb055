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
        if let Some(held) = stored_ids.get_mut(event.stream.as_str()).map(|h| h.id_at(event.stream_version)) {
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
            stored_ids.insert(event.stream.to_string(), held);
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
        let expected = match next_version.get(event.stream.as_str()) {
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
        next_version.insert(event.stream.to_string(), expected + 1);
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

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrateReport {
    /// Events in the source ledger.
    pub source_events: u64,
    /// Events written to the target by this run.
    pub copied: u64,
    /// Events found in the target already (an earlier, interrupted run).
    pub skipped: u64,
    /// The source position this run started after (0 unless resuming).
    pub resumed_after: u64,
    /// The target's hash chain, checked after the copy.
    pub target_verify: seatledger_store::VerifyReport,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the source ledger fails verification at position {}: {}; nothing was copied", .0.position, .0.reason)]
    SourceBroken(seatledger_store::BrokenLink),
    #[error("after the copy the target holds {target} of the source's {source_events} events")]
    Incomplete { source_events: u64, target: u64 },
    #[error("the target's hash chain is broken after the copy at position {}: {}", .0.position, .0.reason)]
    TargetBroken(seatledger_store::BrokenLink),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The checkpoint a migration keeps in its target, naming the source by its
/// first event so that two different sources never share one.
fn migrate_checkpoint_name(first_event: uuid::Uuid) -> String {
    format!("migrate-from-{first_event}")
}

/// Copy a whole ledger from one store to another, keeping ids, stream
/// versions, metadata and both timestamps; the target assigns its own
/// positions and hash links. The source is verified first, so a tampered
/// ledger is never copied. Pages of [`IMPORT_BATCH`] events are imported one
/// at a time, and after each page the source position reached is saved as a
/// checkpoint in the target: an interrupted run resumes from there, and since
/// import skips events stored identically, a page copied just before the
/// interruption is skipped rather than doubled. After the copy, the target
/// must hold as many events as the source and its chain must verify.
pub async fn migrate(
    from: &dyn EventStore,
    to: &dyn EventStore,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<MigrateReport, MigrateError> {
    let source_check = from.verify().await?;
    if let Some(broken) = source_check.first_broken {
        return Err(MigrateError::SourceBroken(broken));
    }
    let source_events = source_check.checked;
    let mut report = MigrateReport {
        source_events,
        copied: 0,
        skipped: 0,
        resumed_after: 0,
        target_verify: seatledger_store::VerifyReport { checked: 0, first_broken: None },
    };
    let Some(first) = from.read_all(0, 1).await?.into_iter().next() else {
        report.target_verify = to.verify().await?;
        return Ok(report);
    };
    let checkpoint = migrate_checkpoint_name(first.id);
    let mut after = to.load_checkpoint(&checkpoint).await?.map_or(0, |c| c.position);
    report.resumed_after = after;
    let mut done_before = 0;
    if after > 0 {
        // Count what the interrupted run copied, for an honest progress bar.
        let mut counted = 0;
        while counted < after {
            let page = from.read_all(counted, MAX_READ_COUNT).await?;
            let Some(last) = page.last() else { break };
            done_before += page.iter().filter(|e| e.position <= after).count() as u64;
            counted = last.position;
        }
    }
    loop {
        let page = from.read_all(after, IMPORT_BATCH).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        let outcome = to.import(page).await?;
        report.copied += outcome.imported;
        report.skipped += outcome.skipped;
        after = last;
        to.save_checkpoint(&checkpoint, &seatledger_store::Checkpoint { position: after, state: None }).await?;
        progress(done_before + report.copied + report.skipped, source_events);
    }
    let target_verify = to.verify().await?;
    if let Some(broken) = target_verify.first_broken.clone() {
        return Err(MigrateError::TargetBroken(broken));
    }
    if target_verify.checked < source_events {
        return Err(MigrateError::Incomplete { source_events, target: target_verify.checked });
    }
    report.target_verify = target_verify;
    Ok(report)
}
