//! The projection runner: stored checkpoints, catch-up, then live.
//!
//! Each projection has its own checkpoint (named after it) holding the last
//! position folded and, when the projection can save it, its state, written
//! together in one store call. On start a projection resumes from its
//! checkpoint if its state can be restored, and from zero otherwise. Events
//! are read once, decoded once and handed to every projection still behind;
//! catch-up reads and decodes ahead of the fold ([`crate::readahead`]).

use crate::decode::decode_stored;
use crate::invoicing::AsOf;
use crate::readahead::{visit_decoded, ReadError, Visit};
use seatledger_projections::Projection;
use seatledger_store::{Checkpoint, EventStore, StoreError, Subscription};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Save checkpoints at least this often while following live.
pub const CHECKPOINT_EVERY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the ledger: {0}")]
    Unreadable(String),
}

impl From<ReadError> for RunnerError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => RunnerError::Store(e),
            ReadError::Unreadable(why) => RunnerError::Unreadable(why),
        }
    }
}

/// Runs projections over one store.
#[derive(Debug, Clone)]
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
}

/// Where each projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The global position every projection has reached.
    pub position: u64,
    /// Events folded in this run (counted once however many projections took them).
    pub events_read: u64,
}

impl ProjectionRunner {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// Load each projection's checkpoint: its position, after restoring its
    /// state. A projection without saved state starts from zero.
    pub async fn restore(&self, projections: &mut [&mut dyn Projection]) -> Result<Vec<u64>, RunnerError> {
        let mut positions = vec![];
        for p in projections.iter_mut() {
            let position = match self.store.load_checkpoint(p.name()).await? {
                Some(Checkpoint { position, state: Some(state) }) => match p.restore(&state) {
                    Ok(()) => position,
                    Err(e) => {
                        tracing::warn!(projection = p.name(), error = %e, "rebuilding from zero");
                        0
                    }
                },
                _ => 0,
            };
            positions.push(position);
        }
        Ok(positions)
    }

    /// Forget every checkpoint of these projections (before a rebuild).
    pub async fn reset(&self, projections: &[&mut dyn Projection]) -> Result<(), RunnerError> {
        for p in projections {
            self.store.delete_checkpoint(p.name()).await?;
        }
        Ok(())
    }

    /// Save each projection's position and state.
    pub async fn save(&self, projections: &[&mut dyn Projection], positions: &[u64]) -> Result<(), RunnerError> {
        for (p, position) in projections.iter().zip(positions) {
            let checkpoint = Checkpoint { position: *position, state: p.save() };
            self.store.save_checkpoint(p.name(), &checkpoint).await?;
        }
        Ok(())
    }

    /// Fold everything stored after each projection's position, up to the
    /// head as it is when the read reaches it; `progress(position, head)`
    /// is called after each page.
    pub async fn catch_up(
        &self,
        projections: &mut [&mut dyn Projection],
        positions: &mut [u64],
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RunReport, RunnerError> {
        assert_eq!(projections.len(), positions.len(), "one position per projection");
        let start = positions.iter().copied().min().unwrap_or(0);
        let head = self.store.head_position().await?;
        let mut events_read = 0;
        let last = visit_decoded(self.store.as_ref(), start, AsOf::Head, |visit| {
            match visit {
                Visit::Event { position, decoded: Some(decoded) } => {
                    events_read += 1;
                    let recorded = decoded.recorded();
                    for (p, at) in projections.iter_mut().zip(positions.iter_mut()) {
                        if *at < position {
                            p.apply(&recorded);
                            *at = position;
                        }
                    }
                }
                Visit::Event { position, decoded: None } => {
                    events_read += 1;
                    positions.iter_mut().for_each(|at| *at = (*at).max(position));
                }
                Visit::PageEnd { last } => progress(last, head.max(last)),
            }
            ControlFlow::Continue(())
        })
        .await?;
        let position = positions.iter().copied().min().unwrap_or(last);
        Ok(RunReport { position, events_read })
    }

    /// Restore, catch up and save: what a command-line reader does.
    pub async fn run(
        &self,
        projections: &mut [&mut dyn Projection],
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RunReport, RunnerError> {
        let mut positions = self.restore(projections).await?;
        let report = self.catch_up(projections, &mut positions, progress).await?;
        self.save(projections, &positions).await?;
        Ok(report)
    }

    /// Forget checkpoints and fold everything from zero into fresh projections.
    pub async fn rebuild(
        &self,
        projections: &mut [&mut dyn Projection],
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RunReport, RunnerError> {
        self.reset(projections).await?;
        let mut positions = vec![0; projections.len()];
        let report = self.catch_up(projections, &mut positions, progress).await?;
        self.save(projections, &positions).await?;
        Ok(report)
    }

    /// Catch up, then follow live appends until `stop` completes, saving
    /// checkpoints every [`CHECKPOINT_EVERY`] events and whenever caught up.
    pub async fn follow(
        &self,
        projections: &mut [&mut dyn Projection],
        stop: impl Future<Output = ()>,
    ) -> Result<RunReport, RunnerError> {
        let mut positions = self.restore(projections).await?;
        let start = positions.iter().copied().min().unwrap_or(0);
        let mut subscription = Subscription::new(self.store.clone(), start);
        let mut since_save = 0u64;
        let mut events_read = 0u64;
        tokio::pin!(stop);
        loop {
            let next = tokio::select! {
                () = &mut stop => break,
                next = subscription.next() => next?,
            };
            let position = next.position;
            events_read += 1;
            since_save += 1;
            if let Some(decoded) = decode_stored(next).map_err(RunnerError::Unreadable)? {
                let recorded = decoded.recorded();
                for (p, at) in projections.iter_mut().zip(positions.iter_mut()) {
                    if *at < position {
                        p.apply(&recorded);
                        *at = position;
                    }
                }
            }
            // Drained means caught up with what the last read saw: save then,
            // without asking the store for its head on every event.
            if since_save >= CHECKPOINT_EVERY || subscription.is_drained() {
                self.save(projections, &positions).await?;
                since_save = 0;
            }
        }
        self.save(projections, &positions).await?;
        Ok(RunReport { position: positions.iter().copied().min().unwrap_or(start), events_read })
    }
}
