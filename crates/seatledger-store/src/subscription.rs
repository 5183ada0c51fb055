//! Catch up from a position, then follow live appends.
//!
//! One implementation serves every backend: it reads the global log in pages
//! with [`EventStore::read_all`]; once caught up it waits for the store's
//! [`EventStore::head_watch`] to move (appends in this process) or for the
//! poll interval to pass (appends by other processes), whichever is first.

use crate::{EventStore, StoreError, StoredEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How many events one catch-up read fetches.
pub const SUBSCRIPTION_PAGE: usize = 1_000;
/// How often a caught-up subscription looks for appends by other processes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A subscription to the global log.
#[derive(Debug)]
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: u64,
    buffer: VecDeque<StoredEvent>,
    watch: tokio::sync::watch::Receiver<u64>,
    poll_interval: Duration,
}

impl Subscription {
    /// Subscribe to every event with a position greater than `after`.
    pub fn new(store: Arc<dyn EventStore>, after: u64) -> Self {
        let watch = store.head_watch();
        Self { store, after, buffer: VecDeque::new(), watch, poll_interval: DEFAULT_POLL_INTERVAL }
    }

    /// Change how often a caught-up subscription polls.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether every event read so far has been handed out: the next call
    /// reads the store (and waits there if nothing new was appended).
    pub fn is_drained(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next event, waiting for it if the subscription is caught up.
    pub async fn next(&mut self) -> Result<StoredEvent, StoreError> {
        loop {
            if let Some(event) = self.try_next().await? {
                return Ok(event);
            }
            // Caught up: wait for this process to append, or poll for others.
            let _ = tokio::time::timeout(self.poll_interval, self.watch.changed()).await;
        }
    }

    /// The next event if one is stored already; `None` when caught up.
    pub async fn try_next(&mut self) -> Result<Option<StoredEvent>, StoreError> {
        if self.buffer.is_empty() {
            self.watch.borrow_and_update();
            let page = self.store.read_all(self.after, SUBSCRIPTION_PAGE).await?;
            self.buffer.extend(page);
        }
        match self.buffer.pop_front() {
            Some(event) => {
                assert!(event.position > self.after, "subscription went backwards");
                self.after = event.position;
                Ok(Some(event))
            }
            None => Ok(None),
        }
    }
}
