//! The double's in-memory log: events in write order, with per-stream
//! revisions and `$all` positions shaped like a real node's.

use std::collections::HashMap;
use uuid::Uuid;

/// Where the first event goes. A real log starts with an epoch record and
/// system events, so the first user event is never at position 0.
const FIRST_POSITION: u64 = 4_096;
/// Bytes a record takes besides its stream name, payloads and metadata,
/// roughly what a prepare record's header costs.
const RECORD_OVERHEAD: u64 = 88;

/// One stored event.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) stream: Vec<u8>,
    pub(crate) revision: u64,
    /// Commit and prepare position: the same for every event written through
    /// gRPC, as on a real node.
    pub(crate) position: u64,
    pub(crate) id: Uuid,
    pub(crate) event_type: String,
    pub(crate) content_type: String,
    /// 100-nanosecond ticks since the Unix epoch, as the server reports them.
    pub(crate) created_ticks: i64,
    pub(crate) custom_metadata: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

/// An event as [`crate::Double::records`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub stream: String,
    pub revision: u64,
    pub position: u64,
    pub id: Uuid,
    pub event_type: String,
}

/// An event on its way in.
#[derive(Debug, Clone)]
pub(crate) struct Proposed {
    pub(crate) id: Uuid,
    pub(crate) event_type: String,
    pub(crate) content_type: String,
    pub(crate) custom_metadata: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

/// What the append expects of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    Any,
    NoStream,
    StreamExists,
    Revision(u64),
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendResult {
    /// Written: the stream's revision after, and the last event's position.
    Written { revision: u64, position: u64 },
    /// The same events were there already, where the expectation puts them:
    /// nothing written, as the server's idempotency check answers.
    Idempotent { revision: u64 },
    /// The expectation does not hold.
    WrongExpectedVersion { current: Option<u64> },
}

#[derive(Debug)]
pub(crate) struct Log {
    records: Vec<Record>,
    /// Indices into `records`, by stream, in revision order.
    streams: HashMap<Vec<u8>, Vec<usize>>,
    next_position: u64,
}

impl Default for Log {
    fn default() -> Self {
        Self { records: Vec::new(), streams: HashMap::new(), next_position: FIRST_POSITION }
    }
}

impl Log {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn record(&self, index: usize) -> &Record {
        &self.records[index]
    }

    /// The stream's records in revision order, or `None` when it has none.
    pub(crate) fn stream(&self, stream: &[u8]) -> Option<Vec<&Record>> {
        self.streams.get(stream).map(|indices| indices.iter().map(|&i| &self.records[i]).collect())
    }

    pub(crate) fn current_revision(&self, stream: &[u8]) -> Option<u64> {
        self.streams.get(stream).and_then(|indices| indices.len().checked_sub(1)).map(|r| r as u64)
    }

    /// The index of the first record at or after `position`.
    pub(crate) fn index_at_or_after(&self, position: u64) -> usize {
        self.records.partition_point(|r| r.position < position)
    }

    pub(crate) fn last_position(&self) -> Option<u64> {
        self.records.last().map(|r| r.position)
    }

    pub(crate) fn summaries(&self) -> Vec<RecordSummary> {
        self.records
            .iter()
            .map(|r| RecordSummary {
                stream: String::from_utf8_lossy(&r.stream).into_owned(),
                revision: r.revision,
                position: r.position,
                id: r.id,
                event_type: r.event_type.clone(),
            })
            .collect()
    }

    /// Check the expectation and write every event, or none: the server's
    /// `CheckCommit` rules, idempotency included.
    pub(crate) fn append(&mut self, stream: &[u8], expected: Expected, events: Vec<Proposed>) -> AppendResult {
        let current = self.current_revision(stream);
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let decision = match expected {
            Expected::Any => {
                // Best effort, like the server: the same ids at the tail of
                // the stream are a retry.
                match self.find_run(stream, &ids) {
                    Some(last) => return AppendResult::Idempotent { revision: last },
                    None => true,
                }
            }
            Expected::StreamExists => current.is_some(),
            Expected::NoStream | Expected::Revision(_) => {
                let after = match expected {
                    Expected::Revision(r) => Some(r),
                    _ => None,
                };
                if current == after {
                    true
                } else if current.is_some_and(|c| after.is_none_or(|a| c > a)) {
                    // The stream is past the expectation: a retry of events
                    // written right there is idempotent; anything else is a
                    // wrong expected version (a partial match included, the
                    // server's "corrupted idempotency").
                    let first = after.map_or(0, |a| a + 1);
                    if self.ids_at(stream, first, ids.len()) == ids {
                        return AppendResult::Idempotent { revision: first + ids.len() as u64 - 1 };
                    }
                    false
                } else {
                    false
                }
            }
        };
        if !decision {
            return AppendResult::WrongExpectedVersion { current };
        }
        let created_ticks = now_ticks();
        let mut revision = current.map_or(0, |c| c + 1);
        let mut position = 0;
        for event in events {
            position = self.next_position;
            let size = RECORD_OVERHEAD
                + (stream.len() + event.data.len() + event.custom_metadata.len() + event.event_type.len()) as u64;
            // Records are 8-byte aligned in the double's imaginary file.
            self.next_position += size.div_ceil(8) * 8;
            let index = self.records.len();
            self.records.push(Record {
                stream: stream.to_vec(),
                revision,
                position,
                id: event.id,
                event_type: event.event_type,
                content_type: event.content_type,
                created_ticks,
                custom_metadata: event.custom_metadata,
                data: event.data,
            });
            self.streams.entry(stream.to_vec()).or_default().push(index);
            revision += 1;
        }
        AppendResult::Written { revision: revision - 1, position }
    }

    /// The ids of `count` events of `stream` from revision `first` on (fewer
    /// when the stream ends first).
    fn ids_at(&self, stream: &[u8], first: u64, count: usize) -> Vec<Uuid> {
        let Some(indices) = self.streams.get(stream) else { return Vec::new() };
        let first = usize::try_from(first).unwrap_or(usize::MAX);
        indices.iter().skip(first).take(count).map(|&i| self.records[i].id).collect()
    }

    /// The last revision of a run of `ids` stored consecutively in `stream`.
    fn find_run(&self, stream: &[u8], ids: &[Uuid]) -> Option<u64> {
        let indices = self.streams.get(stream)?;
        let first = ids.first()?;
        let start = indices.iter().position(|&i| self.records[i].id == *first)?;
        let found = self.ids_at(stream, start as u64, ids.len());
        (found == ids).then(|| (start + ids.len() - 1) as u64)
    }
}

/// Now, in the server's 100-nanosecond ticks since the Unix epoch.
fn now_ticks() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposed(n: u128) -> Proposed {
        Proposed {
            id: Uuid::from_u128(n),
            event_type: "T".to_owned(),
            content_type: "application/json".to_owned(),
            custom_metadata: Vec::new(),
            data: format!("{{\"n\":{n}}}").into_bytes(),
        }
    }

    #[test]
    fn expectations_are_checked_and_positions_grow_like_offsets() {
        let mut log = Log::default();
        let s = b"s".as_slice();
        assert_eq!(
            log.append(s, Expected::Revision(0), vec![proposed(1)]),
            AppendResult::WrongExpectedVersion { current: None }
        );
        assert_eq!(
            log.append(s, Expected::StreamExists, vec![proposed(1)]),
            AppendResult::WrongExpectedVersion { current: None }
        );
        let AppendResult::Written { revision: 1, position } =
            log.append(s, Expected::NoStream, vec![proposed(1), proposed(2)])
        else {
            panic!("the first append was not written");
        };
        let positions: Vec<u64> = log.summaries().iter().map(|r| r.position).collect();
        assert_eq!(positions[1], position);
        assert!(positions[0] >= FIRST_POSITION && positions[1] > positions[0] + 1, "{positions:?}");
        assert_eq!(
            log.append(s, Expected::Revision(0), vec![proposed(3)]),
            AppendResult::WrongExpectedVersion { current: Some(1) }
        );
        assert!(matches!(
            log.append(s, Expected::Revision(1), vec![proposed(3)]),
            AppendResult::Written { revision: 2, .. }
        ));
    }

    #[test]
    fn the_same_ids_where_they_were_written_are_idempotent_and_a_partial_match_is_not() {
        let mut log = Log::default();
        let s = b"s".as_slice();
        log.append(s, Expected::NoStream, vec![proposed(1), proposed(2)]);
        assert_eq!(
            log.append(s, Expected::NoStream, vec![proposed(1), proposed(2)]),
            AppendResult::Idempotent { revision: 1 }
        );
        assert_eq!(log.append(s, Expected::Revision(0), vec![proposed(2)]), AppendResult::Idempotent { revision: 1 });
        assert_eq!(
            log.append(s, Expected::NoStream, vec![proposed(1), proposed(9)]),
            AppendResult::WrongExpectedVersion { current: Some(1) }
        );
        assert_eq!(
            log.append(s, Expected::Any, vec![proposed(1), proposed(2)]),
            AppendResult::Idempotent { revision: 1 }
        );
        assert_eq!(log.len(), 2, "nothing was written twice");
    }
}
