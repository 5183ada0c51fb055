//! Writing a command stream straight into a store.
//!
//! Each command is decided with the domain's own `decide` on the state its
//! stream has reached (kept here, in memory, folded with the domain's
//! `evolve`, exactly as `CommandHandler` does), its events are encoded with
//! the codec, and appended with an exact expected version. Appends are
//! grouped into atomic `append_many` calls of at most `batch_events` events
//! (each command keeps its own expectation and command id). This is what
//! `CommandHandler::apply_all` does for one command file, without
//! re-cloning every touched workspace for each file: on a history of a
//! million events in one workspace that clone would dominate.

use anyhow::{bail, Context};
use seatledger_codec::{encode, parse_command};
use seatledger_domain::{decide, Catalog, Command, InvoiceBook, StreamId, View, Workspace, WorkspaceId};
use seatledger_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamAppend, MAX_EVENTS_PER_APPEND};
use std::collections::HashMap;

/// What loading did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadStats {
    pub commands: u64,
    pub unchanged: u64,
    pub events: u64,
    pub appends: u64,
}

/// Decides commands one after another and appends their events in batches.
#[derive(Debug)]
pub struct Loader<'a> {
    store: &'a dyn EventStore,
    batch_events: usize,
    catalog: (Option<u64>, Catalog),
    workspaces: HashMap<WorkspaceId, (Option<u64>, Option<Workspace>)>,
    pending: Vec<StreamAppend>,
    pending_events: usize,
    event_seq: u64,
    pub stats: LoadStats,
}

impl<'a> Loader<'a> {
    /// A loader onto an empty store.
    pub fn new(store: &'a dyn EventStore, batch_events: usize) -> Self {
        Self {
            store,
            batch_events: batch_events.clamp(1, MAX_EVENTS_PER_APPEND),
            catalog: (None, Catalog::default()),
            workspaces: HashMap::new(),
            pending: vec![],
            pending_events: 0,
            event_seq: 0,
            stats: LoadStats::default(),
        }
    }

    /// Decide one command line and queue its events. A refusal is an error:
    /// generated histories are valid by construction.
    pub async fn line(&mut self, text: &str) -> anyhow::Result<()> {
        let envelope = parse_command(text).with_context(|| format!("parsing {text}"))?;
        let Some(at) = envelope.at else { bail!("command without `at`: {text}") };
        let Some(command_id) = envelope.command_id else { bail!("command without `command_id`: {text}") };
        let command = Command { at, body: envelope.body };
        let stream = command.stream();
        let empty_book = InvoiceBook::default();
        let (version, events) = {
            let workspace = stream.workspace().and_then(|id| self.workspaces.get(id)).and_then(|(_, w)| w.as_ref());
            let view = View { catalog: &self.catalog.1, workspace, invoices: Some(&empty_book), outbox: None };
            let events = decide(&view, &command).map_err(|e| anyhow::anyhow!("refused: {e}: {text}"))?;
            let version = match &stream {
                StreamId::Catalog => self.catalog.0,
                StreamId::Workspace(id) => self.workspaces.get(id).and_then(|(v, _)| *v),
                other => bail!("the loader only writes catalog and workspace streams, not {}", other.name()),
            };
            (version, events)
        };
        self.stats.commands += 1;
        if events.is_empty() {
            self.stats.unchanged += 1;
            return Ok(());
        }
        let expected = ExpectedVersion::from_current(version);
        let last = expected.next_version() + events.len() as u64 - 1;
        match &stream {
            StreamId::Catalog => {
                events.iter().for_each(|e| self.catalog.1.apply(e));
                self.catalog.0 = Some(last);
            }
            StreamId::Workspace(id) => {
                let entry = self.workspaces.entry(id.clone()).or_insert((None, None));
                for e in &events {
                    entry.1 = Workspace::evolve(entry.1.take(), e);
                }
                entry.0 = Some(last);
            }
            _ => {}
        }
        let metadata = EventMetadata {
            effective_at: at,
            actor: envelope.actor.unwrap_or_default().into(),
            channel: envelope.channel.unwrap_or_default().into(),
            correlation_id: envelope.correlation_id.unwrap_or(command_id),
            causation_id: envelope.causation_id,
            command_id: Some(command_id),
        };
        let new_events: Vec<NewEvent> = events
            .iter()
            .map(|event| {
                let encoded = encode(event);
                self.event_seq += 1;
                NewEvent {
                    id: event_id(at, self.event_seq),
                    event_type: encoded.event_type.into(),
                    schema_version: encoded.schema_version,
                    payload: encoded.payload,
                    metadata: metadata.clone(),
                }
            })
            .collect();
        if self.pending_events + new_events.len() > self.batch_events {
            self.flush().await?;
        }
        self.pending_events += new_events.len();
        self.stats.events += new_events.len() as u64;
        self.pending.push(StreamAppend { stream: stream.name(), expected, events: new_events });
        Ok(())
    }

    /// Append what is queued, in one atomic call.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let appends = std::mem::take(&mut self.pending);
        self.pending_events = 0;
        self.store.append_many(appends).await.context("appending a batch")?;
        self.stats.appends += 1;
        Ok(())
    }
}

/// A UUIDv7-shaped id from the command's business time and a counter:
/// deterministic, so that two loads of one history store the same ids.
fn event_id(at: chrono::DateTime<chrono::Utc>, seq: u64) -> uuid::Uuid {
    let mut tail = [0u8; 10];
    tail[2..].copy_from_slice(&seq.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis().max(0) as u64, &tail).into_uuid()
}
