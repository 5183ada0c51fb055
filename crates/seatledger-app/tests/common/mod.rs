//! A store wrapper for tests: passes everything to a real store, and can
//! fail imports after a budget (a connection lost mid-migration) or behave
//! like a server that appends one stream at a time (KurrentDB).

use async_trait::async_trait;
use seatledger_store::{
    AppendOutcome, Capabilities, Checkpoint, Direction, EventStore, ImportOutcome, StoreError, StoredEvent,
    StreamAppend,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(Debug)]
pub struct Wrapped {
    pub inner: Arc<dyn EventStore>,
    /// Imports allowed before every further one fails as `Unavailable`.
    pub imports_left: Option<AtomicUsize>,
    /// Refuse `append_many` calls naming more than one stream, and say so in
    /// the capabilities.
    pub one_stream_at_a_time: bool,
    /// The streams of every `append_many` call, in order.
    pub appends: Mutex<Vec<Vec<String>>>,
}

impl Wrapped {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self { inner, imports_left: None, one_stream_at_a_time: false, appends: Mutex::new(vec![]) }
    }
}

#[async_trait]
impl EventStore for Wrapped {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        let streams: Vec<String> = appends.iter().map(|a| a.stream.clone()).collect();
        self.appends.lock().unwrap().push(streams.clone());
        if self.one_stream_at_a_time && streams.iter().collect::<HashSet<_>>().len() > 1 {
            return Err(StoreError::Unsupported(format!("an atomic append across {} streams", streams.len())));
        }
        self.inner.append_many(appends).await
    }
    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner.command_outcome(command_id).await
    }
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_stream(stream, from, direction, max_count).await
    }
    async fn read_all(&self, after: u64, max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_all(after, max_count).await
    }
    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }
    async fn import(&self, events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        if let Some(left) = &self.imports_left {
            if left.load(Ordering::SeqCst) == 0 {
                return Err(StoreError::Unavailable("connection lost (simulated)".into()));
            }
            left.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.import(events).await
    }
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load_checkpoint(name).await
    }
    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(name, checkpoint).await
    }
    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_checkpoint(name).await
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_multi_stream_append: !self.one_stream_at_a_time, ..self.inner.capabilities() }
    }
    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.head_watch()
    }
}
