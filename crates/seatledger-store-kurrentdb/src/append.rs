//! One append, end to end: plan it against the stream as it stands, reserve
//! its command ids, write it in one server append, read back its positions,
//! and plan again if a concurrent writer got in between. The protocol and its
//! crash points are in `docs/kurrentdb.md`.

use crate::codec::{self, CommandReservation, Tail};
use crate::{Appended, KurrentDbStore};
use chrono::DateTime;
use kurrentdb::{StreamPosition, StreamState};
use seatledger_store::{
    chain, dedup_by_event_ids, truncate_to_micros, AppendOutcome, Direction, EventLocation, ExpectedVersion,
    StoreError, StoredEvent, StreamAppend,
};
use std::collections::HashMap;
use uuid::Uuid;

/// How many times an append is planned again after a race (a concurrent
/// writer got in between the plan and the write) before it gives up.
const PLAN_ATTEMPTS: usize = 3;
/// Events read per page when following a command's events.
const COMMAND_PAGE: usize = 256;

/// What to do with one stream append of a call, decided before writing.
#[derive(Debug)]
enum Plan {
    /// Stored already (by command id or by event ids): the original outcome.
    Found(AppendOutcome),
    /// An earlier append of the same call carries the same command id.
    SameCommandAs(usize),
    /// New events from this version on.
    Write { first_version: u64, reservation: Reservation },
}

/// What the command id of a [`Plan::Write`] needs before its events go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reservation {
    /// No command id.
    None,
    /// No reservation yet: create it.
    Create,
    /// The reservation names the place this attempt writes to already.
    Kept,
    /// The reservation names a place an earlier attempt can no longer land
    /// on: move it here (the reservation stream is at `revision`).
    Move { revision: u64 },
}

impl KurrentDbStore {
    /// The reservation of a command id, and the revision of its stream.
    pub(crate) async fn reservation(&self, command_id: Uuid) -> Result<Option<(u64, CommandReservation)>, StoreError> {
        let what = format!("reading the reservation of command {command_id}");
        let stream = self.names.command(command_id);
        let last = self.read_raw(&what, &stream, StreamPosition::End, Direction::Backwards, 1).await?;
        match last.first() {
            Some(recorded) => Ok(Some((recorded.revision, codec::decode_body(recorded)?))),
            None => Ok(None),
        }
    }

    /// The outcome of a reserved command if its events landed: they are the
    /// run of events carrying its id from the reserved version on.
    pub(crate) async fn landed(
        &self,
        command_id: Uuid,
        reservation: &CommandReservation,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let what = format!("looking for the events of command {command_id}");
        let server_stream = self.names.ledger(&reservation.stream);
        let mut from = reservation.first_version;
        let mut run: Option<(StoredEvent, StoredEvent)> = None;
        loop {
            let page = self
                .read_ledger(&what, &server_stream, StreamPosition::Position(from), Direction::Forwards, COMMAND_PAGE)
                .await?;
            let full = page.len() == COMMAND_PAGE;
            for event in page {
                if event.metadata.command_id != Some(command_id) {
                    return Ok(run.map(outcome_of_run));
                }
                run = Some(match run {
                    None => (event.clone(), event),
                    Some((first, _)) => (first, event),
                });
            }
            if !full {
                return Ok(run.map(outcome_of_run));
            }
            from += COMMAND_PAGE as u64;
        }
    }

    /// Decide every append of a call against the stream as it stands.
    async fn plan(
        &self,
        server_stream: &str,
        appends: &[StreamAppend],
        tail: Option<Tail>,
    ) -> Result<Vec<Plan>, StoreError> {
        let mut staged = tail.map(|t| t.version);
        let mut commands: HashMap<Uuid, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(appends.len());
        for (index, append) in appends.iter().enumerate() {
            let place = append.expected.next_version();
            // Idempotency by command id first, as the contract orders it.
            let mut reservation = Reservation::None;
            if let Some(command_id) = append.events[0].metadata.command_id {
                if let Some(&earlier) = commands.get(&command_id) {
                    plans.push(Plan::SameCommandAs(earlier));
                    continue;
                }
                commands.insert(command_id, index);
                reservation = match self.reservation(command_id).await? {
                    None => Reservation::Create,
                    Some((revision, reserved)) => {
                        if reserved.stream != append.stream {
                            return Err(StoreError::CommandIdReused { command_id, stream: reserved.stream });
                        }
                        if let Some(outcome) = self.landed(command_id, &reserved).await? {
                            plans.push(Plan::Found(AppendOutcome { deduplicated: true, ..outcome }));
                            continue;
                        }
                        if reserved.first_version == place {
                            Reservation::Kept
                        } else {
                            Reservation::Move { revision }
                        }
                    }
                };
            }
            // Then by event ids, where the expectation puts them: the
            // server's own rule for a retried write.
            if tail.is_some_and(|t| t.version >= place) {
                let what = format!("looking for the events of an append to `{}`", append.stream);
                let stored = self
                    .read_ledger(
                        &what,
                        server_stream,
                        StreamPosition::Position(place),
                        Direction::Forwards,
                        append.events.len(),
                    )
                    .await?;
                let by_id: HashMap<Uuid, EventLocation> = stored
                    .into_iter()
                    .map(|e| {
                        (
                            e.id,
                            EventLocation {
                                stream: e.stream.into(),
                                stream_version: e.stream_version,
                                position: e.position,
                            },
                        )
                    })
                    .collect();
                let found: Vec<(Uuid, Option<EventLocation>)> =
                    append.events.iter().map(|e| (e.id, by_id.get(&e.id).cloned())).collect();
                if let Some(outcome) = dedup_by_event_ids(&append.stream, &found)? {
                    plans.push(Plan::Found(outcome));
                    continue;
                }
            }
            if !append.expected.matches(staged) {
                return Err(StoreError::Conflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: staged,
                });
            }
            staged = Some(place + append.events.len() as u64 - 1);
            plans.push(Plan::Write { first_version: place, reservation });
        }
        Ok(plans)
    }

    /// Write the reservations the plan needs. `false` when another attempt
    /// of the same command reserved it in between: plan again.
    async fn reserve(&self, appends: &[StreamAppend], plans: &[Plan]) -> Result<bool, StoreError> {
        for (append, plan) in appends.iter().zip(plans) {
            let Plan::Write { first_version, reservation } = plan else { continue };
            let state = match reservation {
                Reservation::None | Reservation::Kept => continue,
                Reservation::Create => StreamState::NoStream,
                Reservation::Move { revision } => StreamState::StreamRevision(*revision),
            };
            let Some(command_id) = append.events[0].metadata.command_id else { continue };
            let body = CommandReservation { stream: append.stream.clone(), first_version: *first_version };
            let event = codec::bookkeeping_event_data(codec::COMMAND_RESERVED, &body)?;
            let what = format!("reserving command {command_id}");
            if let Appended::WrongExpectedVersion(_) =
                self.append_raw(&what, &self.names.command(command_id), state, vec![event]).await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Write the planned events in one server append. `Err(current)` when
    /// the server found the stream elsewhere than expected.
    async fn write(
        &self,
        server_stream: &str,
        appends: &[StreamAppend],
        plans: &[Plan],
        tail: Option<Tail>,
    ) -> Result<Result<Vec<(usize, AppendOutcome)>, Option<u64>>, StoreError> {
        let what = format!("appending to `{}`", appends[0].stream);
        let gate = self.write_gate.lock().await;
        // One reading of the clock per call, never below what this process
        // has seen, nor below the stream's own last event.
        let now = truncate_to_micros(self.clock.now());
        let recorded_at =
            [self.high_water(), tail.map(|t| t.recorded_at)].into_iter().flatten().fold(now, DateTime::max);
        let mut previous = tail.map_or(chain::GENESIS, |t| t.link);
        let mut expected = None;
        let mut data = Vec::new();
        let mut written = Vec::new();
        for (index, (append, plan)) in appends.iter().zip(plans).enumerate() {
            let Plan::Write { first_version, .. } = plan else { continue };
            expected.get_or_insert(append.expected);
            for (offset, event) in append.events.iter().enumerate() {
                let version = first_version + offset as u64;
                let mut stored = StoredEvent::unplaced(&append.stream, version, recorded_at, event.clone());
                let link = chain::stream_link(&previous, &stored);
                stored.hash = codec::hex_link(&link);
                previous = link;
                data.push(codec::ledger_event_data(&stored)?);
            }
            let last_version = first_version + append.events.len() as u64 - 1;
            written.push((index, *first_version, last_version));
        }
        let state = match expected {
            Some(ExpectedVersion::NoStream) => StreamState::NoStream,
            Some(ExpectedVersion::Exact(version)) => StreamState::StreamRevision(version),
            None => return Ok(Ok(Vec::new())),
        };
        if let Appended::WrongExpectedVersion(current) = self.append_raw(&what, server_stream, state, data).await? {
            return Ok(Err(current));
        }
        self.raise_high_water(recorded_at);
        drop(gate);

        // The server assigned the positions: read them back.
        let mut outcomes = Vec::with_capacity(written.len());
        for (index, first_version, last_version) in written {
            let append = &appends[index];
            let first = self.written_event(&what, server_stream, first_version, append.events[0].id).await?;
            let last = if last_version == first_version {
                first.clone()
            } else {
                let last_id = append.events[append.events.len() - 1].id;
                self.written_event(&what, server_stream, last_version, last_id).await?
            };
            self.raise_head(last.position);
            outcomes.push((
                index,
                AppendOutcome {
                    stream: append.stream.clone(),
                    first_version,
                    last_version,
                    first_position: first.position,
                    last_position: last.position,
                    deduplicated: false,
                },
            ));
        }
        Ok(Ok(outcomes))
    }

    /// An event this store just wrote, read back for its position.
    async fn written_event(
        &self,
        what: &str,
        server_stream: &str,
        version: u64,
        id: Uuid,
    ) -> Result<StoredEvent, StoreError> {
        match self.ledger_event_at(what, server_stream, version).await? {
            Some(event) if event.id == id => Ok(event),
            other => Err(StoreError::Corrupt(format!(
                "{what}: version {version} should be the event {id} just written, but the server has {}",
                other.map_or_else(|| "nothing".to_owned(), |e| format!("event {}", e.id))
            ))),
        }
    }

    /// Append to one stream: plan, reserve command ids, write, and plan
    /// again if a concurrent writer got in between.
    pub(crate) async fn append_one_stream(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>, StoreError> {
        let stream = appends[0].stream.clone();
        let server_stream = self.names.ledger(&stream);
        let what = format!("appending to `{stream}`");
        let mut last_conflict = None;
        for _ in 0..PLAN_ATTEMPTS {
            let tail = self.tail(&what, &server_stream).await?;
            let plans = self.plan(&server_stream, &appends, tail).await?;
            if !self.reserve(&appends, &plans).await? {
                continue;
            }
            match self.write(&server_stream, &appends, &plans, tail).await? {
                Ok(written) => return Ok(resolve(plans, written)),
                Err(current) => {
                    // Another writer appended since our read: plan again, and
                    // find either our own events (a retry that raced us) or
                    // the conflict to report.
                    let expected = appends
                        .iter()
                        .zip(&plans)
                        .find(|(_, p)| matches!(p, Plan::Write { .. }))
                        .map_or(appends[0].expected, |(a, _)| a.expected);
                    last_conflict = Some(StoreError::Conflict { stream: stream.clone(), expected, actual: current });
                }
            }
        }
        Err(last_conflict.unwrap_or_else(|| {
            StoreError::Unavailable(format!(
                "{what}: another attempt of the same command kept reserving it concurrently; retry"
            ))
        }))
    }
}

fn outcome_of_run((first, last): (StoredEvent, StoredEvent)) -> AppendOutcome {
    AppendOutcome {
        stream: first.stream.into(),
        first_version: first.stream_version,
        last_version: last.stream_version,
        first_position: first.position,
        last_position: last.position,
        deduplicated: false,
    }
}

/// The outcomes of a call, in order.
fn resolve(plans: Vec<Plan>, written: Vec<(usize, AppendOutcome)>) -> Vec<AppendOutcome> {
    let mut written: HashMap<usize, AppendOutcome> = written.into_iter().collect();
    let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(plans.len());
    for (index, plan) in plans.into_iter().enumerate() {
        let outcome = match plan {
            Plan::Found(outcome) => outcome,
            Plan::SameCommandAs(earlier) => AppendOutcome { deduplicated: true, ..outcomes[earlier].clone() },
            Plan::Write { .. } => written
                .remove(&index)
                .unwrap_or_else(|| panic!("append {index} was planned as a write but has no outcome")),
        };
        outcomes.push(outcome);
    }
    outcomes
}
