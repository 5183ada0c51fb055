//! Command handling: load → fold → decide → append, with an explicit
//! expected version and a bounded retry on conflict.
//!
//! Folded states are cached per stream with the version they were folded to;
//! before each decision the cache catches up by reading only the newer
//! events, so a command costs the events since the last one, not the whole
//! history. A conflict means someone else appended: the loop reads their
//! events and decides again on the fresh state.

use crate::ids::IdSource;
use seatledger_codec::encode;
use seatledger_domain::outbox::OutboxBook;
use seatledger_domain::*;
use seatledger_store::{
    AppendOutcome, Direction, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend,
    MAX_EVENTS_PER_APPEND, MAX_READ_COUNT,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How many times one command is decided again after a version conflict.
pub const MAX_ATTEMPTS: u32 = 8;

/// Who sent a command, how, and its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub actor: String,
    pub channel: String,
    pub command_id: uuid::Uuid,
    pub correlation_id: uuid::Uuid,
    pub causation_id: Option<uuid::Uuid>,
}

impl CommandMeta {
    /// Metadata for a new request: it correlates with itself.
    pub fn new(actor: impl Into<String>, channel: impl Into<String>, command_id: uuid::Uuid) -> Self {
        Self {
            actor: actor.into(),
            channel: channel.into(),
            command_id,
            correlation_id: command_id,
            causation_id: None,
        }
    }
}

/// What handling a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleOutcome {
    /// New events were appended.
    Appended { outcome: AppendOutcome, events: Vec<Event> },
    /// The command id had been appended before; nothing new was written and
    /// this is the original outcome.
    AlreadyApplied(AppendOutcome),
    /// The command was accepted but changes nothing (for example setting a
    /// status the user already has).
    NoChange,
}

/// One rejected line of a command file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRejection {
    pub line: usize,
    pub error: String,
}

/// What applying a command file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanReport {
    pub applied: usize,
    pub already_applied: usize,
    pub unchanged: usize,
    pub rejected: Vec<LineRejection>,
    pub events_appended: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The domain refused the command.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be read.
    #[error("cannot read the ledger: {0}")]
    Unreadable(String),
    #[error("stream `{stream}` kept changing: gave up after {attempts} attempts")]
    TooManyConflicts { stream: String, attempts: u32 },
    /// Lines of a command file were refused; nothing was appended.
    #[error("{} line(s) refused; nothing was appended", .0.len())]
    FileRejected(Vec<LineRejection>),
    #[error(
        "a command file may append at most {MAX_EVENTS_PER_APPEND} events at once, this one appends {0}; split it"
    )]
    FileTooLarge(usize),
    /// On a store that appends one stream at a time, a command file touching
    /// several streams is appended command by command; this one stopped part
    /// way. The lines before `line` are in the ledger; running the file again
    /// skips them by their command ids.
    #[error(
        "line {line} failed after {applied} earlier command(s) were appended (this store appends one stream \
         at a time, so a file touching several streams is not all or nothing): {error}; applying the file \
         again skips what was appended"
    )]
    PartiallyApplied { applied: usize, line: usize, error: String },
}

#[derive(Debug, Clone)]
struct Cached<S> {
    version: Option<u64>,
    state: S,
}

#[derive(Debug, Default)]
struct Cache {
    catalog: Option<Cached<Catalog>>,
    workspaces: HashMap<WorkspaceId, Cached<Option<Workspace>>>,
    invoices: HashMap<WorkspaceId, Cached<InvoiceBook>>,
    outboxes: HashMap<WorkspaceId, Cached<OutboxBook>>,
}

/// Decides and appends commands against one store.
#[derive(Debug)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    ids: Arc<dyn IdSource>,
    cache: tokio::sync::Mutex<Cache>,
}

/// Read a stream from `from` to its end.
async fn read_rest(
    store: &dyn EventStore,
    stream: &str,
    from: u64,
) -> Result<Vec<seatledger_store::StoredEvent>, AppError> {
    let mut all = vec![];
    let mut next = from;
    loop {
        let page = store.read_stream(stream, next, Direction::Forwards, MAX_READ_COUNT).await?;
        let full = page.len() == MAX_READ_COUNT;
        if let Some(last) = page.last() {
            next = last.stream_version + 1;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

fn decode_all(stored: &[seatledger_store::StoredEvent]) -> Result<Vec<Event>, AppError> {
    stored
        .iter()
        .map(|s| {
            seatledger_codec::decode(&s.event_type, s.schema_version, &s.payload)
                .map_err(|e| AppError::Unreadable(format!("stream `{}` version {}: {e}", s.stream, s.stream_version)))
        })
        .collect()
}

/// Fold the events of `stream` stored after the cached version into the cache.
async fn catch_up<S>(
    store: &dyn EventStore,
    stream: &StreamId,
    cached: &mut Cached<S>,
    apply: impl Fn(&mut S, &Event),
) -> Result<(), AppError> {
    let from = cached.version.map_or(0, |v| v + 1);
    let stored = read_rest(store, &stream.name(), from).await?;
    for event in decode_all(&stored)? {
        apply(&mut cached.state, &event);
    }
    if let Some(last) = stored.last() {
        cached.version = Some(last.stream_version);
    }
    Ok(())
}

impl Cache {
    async fn refresh_catalog(&mut self, store: &dyn EventStore) -> Result<(), AppError> {
        let cached = self.catalog.get_or_insert_with(|| Cached { version: None, state: Catalog::default() });
        catch_up(store, &StreamId::Catalog, cached, |state, event| state.apply(event)).await
    }

    async fn refresh_workspace(&mut self, store: &dyn EventStore, id: &WorkspaceId) -> Result<(), AppError> {
        let cached = self.workspaces.entry(id.clone()).or_insert(Cached { version: None, state: None });
        catch_up(store, &StreamId::Workspace(id.clone()), cached, |state, event| {
            *state = Workspace::evolve(state.take(), event);
        })
        .await
    }

    async fn refresh_invoices(&mut self, store: &dyn EventStore, id: &WorkspaceId) -> Result<(), AppError> {
        let cached = self.invoices.entry(id.clone()).or_insert(Cached { version: None, state: InvoiceBook::default() });
        catch_up(store, &StreamId::Invoices(id.clone()), cached, |state, event| state.apply(event)).await
    }

    async fn refresh_outbox(&mut self, store: &dyn EventStore, id: &WorkspaceId) -> Result<(), AppError> {
        let cached = self.outboxes.entry(id.clone()).or_insert(Cached { version: None, state: OutboxBook::default() });
        catch_up(store, &StreamId::Outbox(id.clone()), cached, |state, event| state.apply(event)).await
    }

    async fn refresh_for(&mut self, store: &dyn EventStore, stream: &StreamId) -> Result<(), AppError> {
        self.refresh_catalog(store).await?;
        match stream {
            StreamId::Catalog => {}
            StreamId::Workspace(id) => self.refresh_workspace(store, id).await?,
            StreamId::Invoices(id) => {
                self.refresh_workspace(store, id).await?;
                self.refresh_invoices(store, id).await?;
            }
            StreamId::Outbox(id) => {
                self.refresh_workspace(store, id).await?;
                self.refresh_outbox(store, id).await?;
            }
        }
        Ok(())
    }

    fn version_of(&self, stream: &StreamId) -> Option<u64> {
        match stream {
            StreamId::Catalog => self.catalog.as_ref().and_then(|c| c.version),
            StreamId::Workspace(id) => self.workspaces.get(id).and_then(|c| c.version),
            StreamId::Invoices(id) => self.invoices.get(id).and_then(|c| c.version),
            StreamId::Outbox(id) => self.outboxes.get(id).and_then(|c| c.version),
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        let empty = Catalog::default();
        let catalog = self.catalog.as_ref().map_or(&empty, |c| &c.state);
        let stream = command.stream();
        let workspace = stream.workspace().and_then(|id| self.workspaces.get(id)).and_then(|c| c.state.as_ref());
        let invoices = match &stream {
            StreamId::Invoices(id) => self.invoices.get(id).map(|c| &c.state),
            _ => None,
        };
        let outbox = match &stream {
            StreamId::Outbox(id) => self.outboxes.get(id).map(|c| &c.state),
            _ => None,
        };
        decide(&View { catalog, workspace, invoices, outbox }, command)
    }

    /// Fold events this process just appended at `expected`, if the cache is
    /// still exactly there; otherwise the next refresh reads them.
    fn advance(&mut self, stream: &StreamId, expected: ExpectedVersion, events: &[Event], last_version: u64) {
        let at_expected = ExpectedVersion::from_current(self.version_of(stream)) == expected;
        if !at_expected {
            return;
        }
        match stream {
            StreamId::Catalog => {
                if let Some(c) = self.catalog.as_mut() {
                    events.iter().for_each(|e| c.state.apply(e));
                    c.version = Some(last_version);
                }
            }
            StreamId::Workspace(id) => {
                if let Some(c) = self.workspaces.get_mut(id) {
                    for e in events {
                        c.state = Workspace::evolve(c.state.take(), e);
                    }
                    c.version = Some(last_version);
                }
            }
            StreamId::Invoices(id) => {
                if let Some(c) = self.invoices.get_mut(id) {
                    events.iter().for_each(|e| c.state.apply(e));
                    c.version = Some(last_version);
                }
            }
            StreamId::Outbox(id) => {
                if let Some(c) = self.outboxes.get_mut(id) {
                    events.iter().for_each(|e| c.state.apply(e));
                    c.version = Some(last_version);
                }
            }
        }
    }
}

impl CommandHandler {
    pub fn new(store: Arc<dyn EventStore>, ids: Arc<dyn IdSource>) -> Self {
        Self { store, ids, cache: tokio::sync::Mutex::new(Cache::default()) }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    fn new_events(&self, command: &Command, meta: &CommandMeta, events: &[Event]) -> Vec<NewEvent> {
        events
            .iter()
            .map(|event| {
                let encoded = encode(event);
                NewEvent {
                    id: self.ids.next_id(),
                    event_type: encoded.event_type.into(),
                    schema_version: encoded.schema_version,
                    payload: encoded.payload,
                    metadata: EventMetadata {
                        effective_at: command.at,
                        actor: meta.actor.as_str().into(),
                        channel: meta.channel.as_str().into(),
                        correlation_id: meta.correlation_id,
                        causation_id: meta.causation_id,
                        command_id: Some(meta.command_id),
                    },
                }
            })
            .collect()
    }

    /// Handle one command: idempotent by `meta.command_id`.
    pub async fn handle(&self, command: &Command, meta: &CommandMeta) -> Result<HandleOutcome, AppError> {
        if let Some(original) = self.store.command_outcome(meta.command_id).await? {
            return Ok(HandleOutcome::AlreadyApplied(original));
        }
        let stream = command.stream();
        for _attempt in 0..MAX_ATTEMPTS {
            let (expected, events) = {
                let mut cache = self.cache.lock().await;
                cache.refresh_for(self.store.as_ref(), &stream).await?;
                (ExpectedVersion::from_current(cache.version_of(&stream)), cache.decide(command)?)
            };
            if events.is_empty() {
                return Ok(HandleOutcome::NoChange);
            }
            let append =
                StreamAppend { stream: stream.name(), expected, events: self.new_events(command, meta, &events) };
            match self.store.append(append).await {
                Ok(outcome) if outcome.deduplicated => return Ok(HandleOutcome::AlreadyApplied(outcome)),
                Ok(outcome) => {
                    self.cache.lock().await.advance(&stream, expected, &events, outcome.last_version);
                    return Ok(HandleOutcome::Appended { outcome, events });
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(stream = %stream.name(), "version conflict; deciding again");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::TooManyConflicts { stream: stream.name(), attempts: MAX_ATTEMPTS })
    }

    /// Apply the commands of one file. Every command is decided in order on
    /// the state the earlier ones leave; then all accepted events are
    /// appended in ONE atomic call. Unless `continue_on_error`, a single
    /// refused line means nothing is appended.
    pub async fn apply_all(
        &self,
        lines: &[(usize, Command, CommandMeta)],
        continue_on_error: bool,
    ) -> Result<PlanReport, AppError> {
        let mut report = PlanReport::default();
        // Lines whose command was appended before are skipped, and so is a
        // command id used twice in the file.
        let mut fresh = vec![];
        let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
        for (line, command, meta) in lines {
            if let Some(first) = seen.insert(meta.command_id, *line) {
                report.rejected.push(LineRejection {
                    line: *line,
                    error: format!("command id {} is used twice (first on line {first})", meta.command_id),
                });
                continue;
            }
            if self.store.command_outcome(meta.command_id).await?.is_some() {
                report.already_applied += 1;
                continue;
            }
            fresh.push((*line, command, meta));
        }
        if !report.rejected.is_empty() && !continue_on_error {
            return Err(AppError::FileRejected(report.rejected));
        }
        let duplicates = report.rejected.clone();

        for _attempt in 0..MAX_ATTEMPTS {
            let mut cache = self.cache.lock().await;
            let streams: HashSet<StreamId> = fresh.iter().map(|(_, c, _)| c.stream()).collect();
            cache.refresh_catalog(self.store.as_ref()).await?;
            for s in &streams {
                cache.refresh_for(self.store.as_ref(), s).await?;
            }
            // Decide on working copies; the cache itself changes only after
            // the append succeeds.
            let mut work = Cache {
                catalog: cache.catalog.clone(),
                workspaces: streams
                    .iter()
                    .filter_map(|s| s.workspace())
                    .filter_map(|id| cache.workspaces.get(id).map(|c| (id.clone(), c.clone())))
                    .collect(),
                invoices: streams
                    .iter()
                    .filter_map(|s| s.workspace())
                    .filter_map(|id| cache.invoices.get(id).map(|c| (id.clone(), c.clone())))
                    .collect(),
                outboxes: streams
                    .iter()
                    .filter_map(|s| s.workspace())
                    .filter_map(|id| cache.outboxes.get(id).map(|c| (id.clone(), c.clone())))
                    .collect(),
            };
            drop(cache);
            let mut attempt_report = PlanReport { rejected: duplicates.clone(), ..PlanReport::default() };
            attempt_report.already_applied = report.already_applied;
            let mut appends = vec![];
            let mut decided: BTreeMap<usize, (StreamId, ExpectedVersion, Vec<Event>, u64)> = BTreeMap::new();
            for (line, command, meta) in &fresh {
                let stream = command.stream();
                match work.decide(command) {
                    Err(e) => attempt_report.rejected.push(LineRejection { line: *line, error: e.to_string() }),
                    Ok(events) if events.is_empty() => attempt_report.unchanged += 1,
                    Ok(events) => {
                        let expected = ExpectedVersion::from_current(work.version_of(&stream));
                        let last = expected.next_version() + events.len() as u64 - 1;
                        work.advance(&stream, expected, &events, last);
                        appends.push(StreamAppend {
                            stream: stream.name(),
                            expected,
                            events: self.new_events(command, meta, &events),
                        });
                        attempt_report.applied += 1;
                        attempt_report.events_appended += events.len();
                        decided.insert(*line, (stream, expected, events, last));
                    }
                }
            }
            attempt_report.rejected.sort_by_key(|r| r.line);
            if !attempt_report.rejected.is_empty() && !continue_on_error {
                return Err(AppError::FileRejected(attempt_report.rejected));
            }
            if attempt_report.events_appended > MAX_EVENTS_PER_APPEND {
                return Err(AppError::FileTooLarge(attempt_report.events_appended));
            }
            if appends.is_empty() {
                return Ok(attempt_report);
            }
            let streams_touched: HashSet<&str> = appends.iter().map(|a| a.stream.as_str()).collect();
            if streams_touched.len() > 1 && !self.store.capabilities().atomic_multi_stream_append {
                // Every line was decided and none refused: append them one
                // command at a time, in file order, each idempotent by its id.
                let mut applied = 0;
                for (line, command, meta) in fresh.iter().filter(|(line, _, _)| decided.contains_key(line)) {
                    match self.handle(command, meta).await {
                        Ok(_) => applied += 1,
                        Err(e) => {
                            return Err(AppError::PartiallyApplied { applied, line: *line, error: e.to_string() })
                        }
                    }
                }
                return Ok(attempt_report);
            }
            match self.store.append_many(appends).await {
                Ok(_) => {
                    let mut cache = self.cache.lock().await;
                    for (stream, expected, events, last) in decided.values() {
                        cache.advance(stream, *expected, events, *last);
                    }
                    return Ok(attempt_report);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::TooManyConflicts { stream: "command file".to_owned(), attempts: MAX_ATTEMPTS })
    }

    /// The invoices recorded for a workspace.
    pub async fn invoice_book(&self, workspace: &WorkspaceId) -> Result<InvoiceBook, AppError> {
        let mut cache = self.cache.lock().await;
        cache.refresh_invoices(self.store.as_ref(), workspace).await?;
        Ok(cache.invoices.get(workspace).map(|c| c.state.clone()).unwrap_or_default())
    }

    /// The catalog and a workspace as the store has them now.
    pub async fn load(&self, workspace: Option<&WorkspaceId>) -> Result<(Catalog, Option<Workspace>), AppError> {
        let mut cache = self.cache.lock().await;
        cache.refresh_catalog(self.store.as_ref()).await?;
        let ws = match workspace {
            Some(id) => {
                cache.refresh_workspace(self.store.as_ref(), id).await?;
                cache.workspaces.get(id).and_then(|c| c.state.clone())
            }
            None => None,
        };
        let catalog = cache.catalog.as_ref().map(|c| c.state.clone()).unwrap_or_default();
        Ok((catalog, ws))
    }
}
