//! Checkpoints: events in `<namespace>~checkpoint-<name>`, latest wins.

use crate::codec;
use crate::{Appended, KurrentDbStore};
use kurrentdb::{RecordedEvent, StreamPosition, StreamState};
use seatledger_store::{Direction, StoreError};

/// How many times a checkpoint save retries when another save got in first.
const CHECKPOINT_ATTEMPTS: usize = 5;

impl KurrentDbStore {
    pub(crate) async fn last_checkpoint_event(&self, name: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let what = format!("reading checkpoint `{name}`");
        let last =
            self.read_raw(&what, &self.names.checkpoint(name), StreamPosition::End, Direction::Backwards, 1).await?;
        Ok(last.into_iter().next())
    }

    /// Append one checkpoint event after the last one; latest wins.
    pub(crate) async fn write_checkpoint_event(
        &self,
        name: &str,
        event_type: &str,
        body: &CheckpointBody,
    ) -> Result<(), StoreError> {
        let what = format!("saving checkpoint `{name}`");
        for _ in 0..CHECKPOINT_ATTEMPTS {
            let last = self.last_checkpoint_event(name).await?;
            if event_type == codec::CHECKPOINT_DELETED
                && last.as_ref().is_none_or(|e| e.event_type == codec::CHECKPOINT_DELETED)
            {
                return Ok(());
            }
            let state = last.map_or(StreamState::NoStream, |e| StreamState::StreamRevision(e.revision));
            let data = codec::bookkeeping_event_data(event_type, body)?;
            match self.append_raw(&what, &self.names.checkpoint(name), state, vec![data]).await? {
                Appended::Done => return Ok(()),
                Appended::WrongExpectedVersion(_) => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "{what}: other saves of the same checkpoint kept getting in first ({CHECKPOINT_ATTEMPTS} attempts)"
        )))
    }
}

/// A checkpoint save as stored: the same fields as [`Checkpoint`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CheckpointBody {
    pub(crate) position: u64,
    pub(crate) state: Option<String>,
}
