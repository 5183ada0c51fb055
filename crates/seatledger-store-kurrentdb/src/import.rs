//! Import: check the whole call, then write per-stream runs in log order.

use crate::codec::{self, CommandReservation, Tail};
use crate::{Appended, KurrentDbStore};
use kurrentdb::{StreamPosition, StreamState};
use seatledger_store::{
    chain, truncate_to_micros, validate_imported, Direction, ExpectedVersion, ImportOutcome, StoreError, StoredEvent,
};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The most events, and bytes of payload and metadata, one imported run
/// sends in one server append: under the server's default maximum append
/// size (1 MiB), so that imports work on a node with default settings.
const IMPORT_RUN_EVENTS: usize = 500;
const IMPORT_RUN_BYTES: usize = 768 * 1024;

impl KurrentDbStore {
    pub(crate) async fn import_events(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        let mut outcome = ImportOutcome::default();
        if events.is_empty() {
            return Ok(outcome);
        }
        let what = "importing";
        // Everything is checked before anything is written, so that an
        // import that does not fit writes nothing.
        let mut last_recorded = self.ledger_last(what).await?.map(|e| e.recorded_at);
        let mut streams: HashMap<String, ImportStream> = HashMap::new();
        let mut writes: Vec<StoredEvent> = Vec::new();
        for mut event in events {
            event.recorded_at = truncate_to_micros(event.recorded_at);
            event.metadata.effective_at = truncate_to_micros(event.metadata.effective_at);
            validate_imported(&event)?;
            let server_stream = self.names.ledger(&event.stream);
            if !streams.contains_key(event.stream.as_str()) {
                let tail = self.tail(what, &server_stream).await?;
                streams.insert(event.stream.to_string(), ImportStream { tail, known: HashMap::new() });
            }
            let Some(state) = streams.get_mut(event.stream.as_str()) else {
                return Err(StoreError::Corrupt(format!("import lost track of stream `{}`", event.stream)));
            };
            let next = state.tail.map_or(0, |t| t.version + 1);
            if event.stream_version < next {
                let stored_id = match state.known.get(&event.stream_version) {
                    Some(id) => Some(*id),
                    None => {
                        let page = self
                            .read_ledger(
                                what,
                                &server_stream,
                                StreamPosition::Position(event.stream_version),
                                Direction::Forwards,
                                IMPORT_RUN_EVENTS,
                            )
                            .await?;
                        state.known.extend(page.iter().map(|e| (e.stream_version, e.id)));
                        state.known.get(&event.stream_version).copied()
                    }
                };
                if stored_id == Some(event.id) {
                    outcome.skipped += 1;
                    continue;
                }
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "version {} of stream `{}` is already taken by a different event",
                        event.stream_version, event.stream
                    ),
                });
            }
            if event.stream_version > next {
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "version gap on stream `{}`: the next version is {next}, the event has version {}",
                        event.stream, event.stream_version
                    ),
                });
            }
            if let Some(last) = last_recorded.filter(|last| event.recorded_at < *last) {
                return Err(StoreError::InvalidImport {
                    id: event.id,
                    reason: format!(
                        "recorded_at {} is earlier than the last stored event's {}",
                        event.recorded_at.to_rfc3339(),
                        last.to_rfc3339()
                    ),
                });
            }
            let previous = state.tail.map_or(chain::GENESIS, |t| t.link);
            let link = chain::stream_link(&previous, &event);
            event.hash = codec::hex_link(&link);
            state.tail = Some(Tail { version: event.stream_version, link, recorded_at: event.recorded_at });
            state.known.insert(event.stream_version, event.id);
            last_recorded = Some(event.recorded_at);
            writes.push(event);
        }

        // Written in per-stream runs, in log order. Each run is atomic; the
        // import as a whole is not, and resumes by skipping what is stored.
        let gate = self.write_gate.lock().await;
        let mut reserved: HashSet<Uuid> = HashSet::new();
        for run in import_runs(writes) {
            let first = &run[0];
            let stream = first.stream.to_string();
            let server_stream = self.names.ledger(&stream);
            for event in &run {
                let Some(command_id) = event.metadata.command_id else { continue };
                if !reserved.insert(command_id) {
                    continue;
                }
                // The first stream a command wrote to owns it, as in the
                // other backends; a resumed import finds its reservation.
                if self.reservation(command_id).await?.is_none() {
                    let body = CommandReservation { stream: stream.clone(), first_version: event.stream_version };
                    let data = codec::bookkeeping_event_data(codec::COMMAND_RESERVED, &body)?;
                    let what = format!("reserving imported command {command_id}");
                    // A concurrent reservation of the same id wins; ours is then not needed.
                    self.append_raw(&what, &self.names.command(command_id), StreamState::NoStream, vec![data]).await?;
                }
            }
            let expected = ExpectedVersion::from_current(first.stream_version.checked_sub(1));
            let state = match expected {
                ExpectedVersion::NoStream => StreamState::NoStream,
                ExpectedVersion::Exact(version) => StreamState::StreamRevision(version),
            };
            let data = run.iter().map(codec::ledger_event_data).collect::<Result<Vec<_>, _>>()?;
            let count = run.len() as u64;
            let recorded_at = run[run.len() - 1].recorded_at;
            match self.append_raw(what, &server_stream, state, data).await? {
                Appended::Done => {}
                Appended::WrongExpectedVersion(actual) => {
                    // Someone wrote to the stream during the import: what is
                    // written stays, and a new import resumes after it.
                    return Err(StoreError::Conflict { stream, expected, actual });
                }
            }
            outcome.imported += count;
            self.raise_high_water(recorded_at);
        }
        drop(gate);
        if outcome.imported > 0 {
            if let Some(last) = self.ledger_last(what).await? {
                self.raise_head(last.position);
            }
        }
        Ok(outcome)
    }
}

/// A stream as an import has planned it so far.
#[derive(Debug)]
struct ImportStream {
    tail: Option<Tail>,
    /// Event ids by version, as stored or as planned.
    known: HashMap<u64, Uuid>,
}

/// Consecutive events of one stream, cut so that each run fits one server
/// append of a node with default settings.
fn import_runs(events: Vec<StoredEvent>) -> Vec<Vec<StoredEvent>> {
    let mut runs: Vec<Vec<StoredEvent>> = Vec::new();
    let mut bytes = 0;
    for event in events {
        let size = event.payload.len() + 512;
        let fits = runs.last().is_some_and(|run| {
            run[0].stream == event.stream && run.len() < IMPORT_RUN_EVENTS && bytes + size <= IMPORT_RUN_BYTES
        });
        if fits {
            bytes += size;
            if let Some(run) = runs.last_mut() {
                run.push(event);
            }
        } else {
            bytes = size;
            runs.push(vec![event]);
        }
    }
    runs
}
