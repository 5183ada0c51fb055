//! The in-memory store: the reference backend for tests, demos and golden
//! files. It keeps everything in one mutex-guarded state and meets the whole
//! [`EventStore`] contract, so the conformance suite runs against it too.
//!
//! Every write is staged first ([`Staging`]) and applied only when every
//! check has passed, which is what makes `append_many` and `import` atomic
//! without an undo log: the apply step cannot fail.

use crate::{
    chain, check_import_fits, dedup_by_event_ids, truncate_to_micros, validate_appends, validate_imported,
    AppendOutcome, Checkpoint, Clock, Direction, EventLocation, EventStore, ImportOutcome, StoreError, StoredEvent,
    StreamAppend, SystemClock, MAX_READ_COUNT,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use smol_str::SmolStr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// An [`EventStore`] that lives in memory and is lost when dropped.
#[derive(Debug)]
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    head: tokio::sync::watch::Sender<u64>,
}

impl MemoryStore {
    /// An empty store whose `recorded_at` comes from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let (head, _) = tokio::sync::watch::channel(0);
        Self { clock, state: Mutex::new(State::default()), head }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot have left a half-applied
        // write: writes are staged and applied by infallible code, so the
        // state behind a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

/// The head of the global log: what the next append links to.
#[derive(Debug, Clone, Copy)]
struct Head {
    position: u64,
    hash: [u8; 32],
    recorded_at: Option<DateTime<Utc>>,
}

impl Default for Head {
    fn default() -> Self {
        Self { position: 0, hash: chain::GENESIS, recorded_at: None }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The global log; the event at position `p` is at index `p - 1`.
    events: Vec<StoredEvent>,
    /// The positions of each stream's events, indexed by stream version.
    streams: HashMap<SmolStr, Vec<u64>>,
    /// Position of every stored event id.
    ids: HashMap<Uuid, u64>,
    /// The outcome each command id produced (never marked deduplicated).
    commands: HashMap<Uuid, AppendOutcome>,
    head: Head,
    checkpoints: HashMap<String, Checkpoint>,
}

impl State {
    fn event_at(&self, position: u64) -> &StoredEvent {
        let event = usize::try_from(position)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|index| self.events.get(index))
            .unwrap_or_else(|| panic!("memory store index points at missing position {position}"));
        assert_eq!(event.position, position, "memory store log is out of order");
        event
    }
}

/// Writes checked against the state plus everything staged before them, and
/// applied all together or not at all.
struct Staging<'a> {
    state: &'a State,
    events: Vec<StoredEvent>,
    stream_versions: HashMap<SmolStr, u64>,
    /// Index into `events` of every staged event id.
    ids: HashMap<Uuid, usize>,
    commands: HashMap<Uuid, AppendOutcome>,
    head: Head,
}

impl<'a> Staging<'a> {
    fn new(state: &'a State) -> Self {
        Self {
            state,
            events: Vec::new(),
            stream_versions: HashMap::new(),
            ids: HashMap::new(),
            commands: HashMap::new(),
            head: state.head,
        }
    }

    fn stream_version(&self, stream: &str) -> Option<u64> {
        if let Some(version) = self.stream_versions.get(stream) {
            return Some(*version);
        }
        self.state.streams.get(stream).and_then(|positions| positions.len().checked_sub(1)).map(|v| v as u64)
    }

    fn locate(&self, id: Uuid) -> Option<EventLocation> {
        if let Some(&index) = self.ids.get(&id) {
            let e = &self.events[index];
            return Some(EventLocation {
                stream: e.stream.to_string(),
                stream_version: e.stream_version,
                position: e.position,
            });
        }
        self.state.ids.get(&id).map(|&position| {
            let e = self.state.event_at(position);
            EventLocation { stream: e.stream.to_string(), stream_version: e.stream_version, position }
        })
    }

    fn command(&self, command_id: Uuid) -> Option<&AppendOutcome> {
        self.commands.get(&command_id).or_else(|| self.state.commands.get(&command_id))
    }

    /// Link `event` to the head and stage it. The caller has checked it fits.
    fn push(&mut self, mut event: StoredEvent) -> u64 {
        let position = self.head.position + 1;
        if let Some(last) = self.head.recorded_at {
            assert!(event.recorded_at >= last, "recorded_at would go backwards at position {position}");
        }
        let expected_version = self.stream_version(&event.stream).map_or(0, |v| v + 1);
        assert_eq!(event.stream_version, expected_version, "stream `{}` would get a version gap", event.stream);
        event.position = position;
        let link = chain::link(&self.head.hash, &event);
        event.hash = chain::to_hex(&link);
        self.head = Head { position, hash: link, recorded_at: Some(event.recorded_at) };
        self.stream_versions.insert(event.stream.clone(), event.stream_version);
        if let Some(command_id) = event.metadata.command_id {
            record_command(&mut self.commands, self.state.commands.get(&command_id), command_id, &event);
        }
        self.ids.insert(event.id, self.events.len());
        self.events.push(event);
        position
    }

    /// Everything staged, ready to apply once the borrow of the state ends.
    fn finish(self) -> Staged {
        Staged { events: self.events, commands: self.commands, head: self.head }
    }
}

/// Fold an event into the outcome of its command, the way a backend that
/// derives outcomes from its rows would: the first stream the command wrote
/// to owns it, and its outcome spans that stream's events of the command.
fn record_command(
    staged: &mut HashMap<Uuid, AppendOutcome>,
    stored: Option<&AppendOutcome>,
    command_id: Uuid,
    event: &StoredEvent,
) {
    let outcome = staged.entry(command_id).or_insert_with(|| {
        stored.cloned().unwrap_or_else(|| AppendOutcome {
            stream: event.stream.to_string(),
            first_version: event.stream_version,
            last_version: event.stream_version,
            first_position: event.position,
            last_position: event.position,
            deduplicated: false,
        })
    });
    if outcome.stream == event.stream {
        outcome.first_version = outcome.first_version.min(event.stream_version);
        outcome.last_version = outcome.last_version.max(event.stream_version);
        outcome.first_position = outcome.first_position.min(event.position);
        outcome.last_position = outcome.last_position.max(event.position);
    }
}

struct Staged {
    events: Vec<StoredEvent>,
    commands: HashMap<Uuid, AppendOutcome>,
    head: Head,
}

impl State {
    /// Apply a staged write. Infallible by design: see the module docs.
    fn apply(&mut self, staged: Staged) {
        for event in staged.events {
            assert_eq!(event.position, self.events.len() as u64 + 1, "staged write does not follow the log");
            let positions = self.streams.entry(event.stream.clone()).or_default();
            assert_eq!(positions.len() as u64, event.stream_version, "staged write leaves a version gap");
            positions.push(event.position);
            self.ids.insert(event.id, event.position);
            self.events.push(event);
        }
        self.commands.extend(staged.commands);
        self.head = staged.head;
    }
}

/// What to do with one stream append, decided before anything is written.
enum Plan {
    /// Already stored: hand back the original outcome.
    Deduplicated(AppendOutcome),
    /// New events, to be written from this version on.
    Write,
}

/// Decide one stream append against the state and what is staged before it:
/// command id first, then event ids, then the expected version. The order is
/// the contract's: a retried command is answered whatever it expects now.
fn plan(staging: &Staging<'_>, append: &StreamAppend) -> Result<Plan, StoreError> {
    if let Some(command_id) = append.events.first().and_then(|e| e.metadata.command_id) {
        if let Some(recorded) = staging.command(command_id) {
            if recorded.stream != append.stream {
                return Err(StoreError::CommandIdReused { command_id, stream: recorded.stream.clone() });
            }
            return Ok(Plan::Deduplicated(AppendOutcome { deduplicated: true, ..recorded.clone() }));
        }
    }
    let found: Vec<(Uuid, Option<EventLocation>)> =
        append.events.iter().map(|e| (e.id, staging.locate(e.id))).collect();
    if let Some(outcome) = dedup_by_event_ids(&append.stream, &found)? {
        return Ok(Plan::Deduplicated(outcome));
    }
    let actual = staging.stream_version(&append.stream);
    if !append.expected.matches(actual) {
        return Err(StoreError::Conflict { stream: append.stream.clone(), expected: append.expected, actual });
    }
    Ok(Plan::Write)
}

/// Decide one imported event: `Ok(false)` when it is stored already and is
/// skipped, `Ok(true)` when it is to be written.
fn plan_import(staging: &Staging<'_>, event: &StoredEvent) -> Result<bool, StoreError> {
    validate_imported(event)?;
    if let Some(found) = staging.locate(event.id) {
        if found.stream == event.stream && found.stream_version == event.stream_version {
            return Ok(false);
        }
        return Err(StoreError::InvalidImport {
            id: event.id,
            reason: format!(
                "the id is already stored as version {} of stream `{}`",
                found.stream_version, found.stream
            ),
        });
    }
    check_import_fits(event, staging.stream_version(&event.stream), staging.head.recorded_at)?;
    Ok(true)
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        validate_appends(&appends)?;
        let mut state = self.lock();
        // One reading of the clock per call: every event of an atomic append
        // shares its recorded time, clamped so the log never goes backwards.
        let now = truncate_to_micros(self.clock.now());
        let recorded_at = state.head.recorded_at.map_or(now, |last| last.max(now));
        let mut staging = Staging::new(&state);
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            match plan(&staging, &append)? {
                Plan::Deduplicated(outcome) => outcomes.push(outcome),
                Plan::Write => {
                    let first_version = append.expected.next_version();
                    let count = append.events.len() as u64;
                    let mut first_position = 0;
                    let mut last_position = 0;
                    for (offset, event) in append.events.into_iter().enumerate() {
                        let stored =
                            StoredEvent::unplaced(&append.stream, first_version + offset as u64, recorded_at, event);
                        last_position = staging.push(stored);
                        if offset == 0 {
                            first_position = last_position;
                        }
                    }
                    outcomes.push(AppendOutcome {
                        stream: append.stream,
                        first_version,
                        last_version: first_version + count - 1,
                        first_position,
                        last_position,
                        deduplicated: false,
                    });
                }
            }
        }
        let staged = staging.finish();
        let wrote = !staged.events.is_empty();
        state.apply(staged);
        if wrote {
            self.head.send_replace(state.head.position);
        }
        Ok(outcomes)
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        Ok(self.lock().commands.get(&command_id).cloned())
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.lock();
        let Some(positions) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let count = max_count.min(MAX_READ_COUNT);
        let len = positions.len() as u64;
        let versions: Vec<u64> = match direction {
            Direction::Forwards => (from..len).take(count).collect(),
            Direction::Backwards => {
                // Anything past the end (u64::MAX by convention) means "from the end".
                let Some(last) = len.checked_sub(1) else {
                    return Ok(Vec::new());
                };
                (0..=from.min(last)).rev().take(count).collect()
            }
        };
        Ok(versions.into_iter().map(|v| state.event_at(positions[v as usize]).clone()).collect())
    }

    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.events.len());
        let count = max_count.min(MAX_READ_COUNT);
        Ok(state.events[start..].iter().take(count).cloned().collect())
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let state = self.lock();
        Ok(state.streams.get(stream).and_then(|p| p.len().checked_sub(1)).map(|v| v as u64))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.lock().head.position)
    }

    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        let mut state = self.lock();
        let mut staging = Staging::new(&state);
        let mut outcome = ImportOutcome::default();
        for mut event in events {
            // Kept to whole microseconds like every other backend would.
            event.recorded_at = truncate_to_micros(event.recorded_at);
            event.metadata.effective_at = truncate_to_micros(event.metadata.effective_at);
            if plan_import(&staging, &event)? {
                staging.push(event);
                outcome.imported += 1;
            } else {
                outcome.skipped += 1;
            }
        }
        let staged = staging.finish();
        let wrote = !staged.events.is_empty();
        state.apply(staged);
        if wrote {
            self.head.send_replace(state.head.position);
        }
        Ok(outcome)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints.get(name).cloned())
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.lock().checkpoints.insert(name.to_owned(), checkpoint.clone());
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        self.lock().checkpoints.remove(name);
        Ok(())
    }

    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }
}
