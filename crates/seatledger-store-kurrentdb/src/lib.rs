//! The KurrentDB / EventStoreDB backend of the seatledger event store.
//!
//! Work in progress: the API below is the one the finished backend keeps;
//! every operation answers `Unsupported` until it lands.

use async_trait::async_trait;
use seatledger_store::{
    AppendOutcome, Checkpoint, Clock, Direction, EventStore, ImportOutcome, StoreError, StoredEvent, StreamAppend,
};
use std::sync::Arc;
use uuid::Uuid;

/// The namespace seatledger's streams live under unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "seatledger";

/// An [`EventStore`] on a KurrentDB node or cluster.
#[derive(Debug)]
pub struct KurrentDbStore {
    namespace: String,
    head: tokio::sync::watch::Sender<u64>,
}

impl KurrentDbStore {
    /// Connect to the node or cluster a connection string names.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::connect_with_namespace(url, DEFAULT_NAMESPACE, clock).await
    }

    /// Connect, keeping seatledger's streams under `namespace`.
    pub async fn connect_with_namespace(url: &str, namespace: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let _ = (url, clock);
        let (head, _) = tokio::sync::watch::channel(0);
        Ok(Self { namespace: namespace.to_owned(), head })
    }

    fn unsupported<T>(&self) -> Result<T, StoreError> {
        Err(StoreError::Unsupported(format!(
            "the KurrentDB backend (namespace `{}`) is not finished yet",
            self.namespace
        )))
    }
}

#[async_trait]
impl EventStore for KurrentDbStore {
    async fn append_many(&self, _appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        self.unsupported()
    }
    async fn command_outcome(&self, _command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        self.unsupported()
    }
    async fn read_stream(
        &self,
        _stream: &str,
        _from: u64,
        _direction: Direction,
        _max_count: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.unsupported()
    }
    async fn read_all(&self, _after: u64, _max_count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.unsupported()
    }
    async fn stream_version(&self, _stream: &str) -> Result<Option<u64>, StoreError> {
        self.unsupported()
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.unsupported()
    }
    async fn import(&self, _events: Vec<StoredEvent>) -> Result<ImportOutcome, StoreError> {
        self.unsupported()
    }
    async fn load_checkpoint(&self, _name: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.unsupported()
    }
    async fn save_checkpoint(&self, _name: &str, _checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.unsupported()
    }
    async fn delete_checkpoint(&self, _name: &str) -> Result<(), StoreError> {
        self.unsupported()
    }
    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }
}
