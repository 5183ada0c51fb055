//! Appends to seatledger's embedded SQLite store, through `EventStore`:
//! durable (WAL, `synchronous=FULL`, answered after the group's COMMIT is on
//! disk), each with an exact expected version.

use crate::report::Percentiles;
use chrono::{TimeZone, Utc};
use seatledger_codec::encode;
use seatledger_domain::{Event, ReservationId, UserId};
use seatledger_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend, SystemClock};
use seatledger_store_sqlite::SqliteStore;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn open(path: &Path) -> anyhow::Result<Arc<SqliteStore>> {
    Ok(Arc::new(SqliteStore::open(path, Arc::new(SystemClock))?))
}

/// A realistic event: a desk reservation, encoded by the codec.
pub fn reservation(n: u64) -> NewEvent {
    let starts = Utc.with_ymd_and_hms(2024, 3, 4, 9, 0, 0).single().unwrap_or_default();
    let event = Event::ReservationMade {
        reservation: ReservationId::new(format!("r{n}")).unwrap_or_else(|_| unreachable_id()),
        user: UserId::new(format!("u{}", n % 500)).unwrap_or_else(|_| unreachable_user()),
        starts_at: starts,
        ends_at: starts + chrono::Duration::hours(2),
    };
    let encoded = encode(&event);
    let command = uuid::Uuid::now_v7();
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: encoded.event_type.into(),
        schema_version: encoded.schema_version,
        payload: encoded.payload,
        metadata: EventMetadata {
            effective_at: starts,
            actor: "ops@bench.example".into(),
            channel: "portal".into(),
            correlation_id: command,
            causation_id: None,
            command_id: Some(command),
        },
    }
}

fn unreachable_id() -> ReservationId {
    ReservationId::new("r").unwrap_or_else(|_| panic!("`r` is a valid reservation id"))
}

fn unreachable_user() -> UserId {
    UserId::new("u").unwrap_or_else(|_| panic!("`u` is a valid user id"))
}

/// One command per append, one event each, `ExpectedVersion::Exact`, one
/// after the other on one stream; every latency kept.
pub async fn single_appends(store: &dyn EventStore, n: usize) -> anyhow::Result<(f64, Percentiles)> {
    let stream = "workspace-bench-single";
    let mut lat = Vec::with_capacity(n);
    let mut expected = ExpectedVersion::from_current(store.stream_version(stream).await?);
    let start = Instant::now();
    for i in 0..n {
        let append = StreamAppend { stream: stream.into(), expected, events: vec![reservation(i as u64)] };
        let t = Instant::now();
        let outcome = store.append(append).await?;
        lat.push(t.elapsed());
        expected = ExpectedVersion::Exact(outcome.last_version);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, Percentiles::of(&mut lat)))
}

/// What a concurrent run did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Concurrent {
    pub tasks: usize,
    pub same_stream: bool,
    pub events: u64,
    pub conflicts: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub commits: u64,
    pub requests: u64,
}

/// `tasks` tasks append one event per append for `duration`: each on its
/// own stream (it knows its version), or all on one stream (each reads the
/// version, appends with it, and on a conflict counts it and tries again).
pub async fn concurrent(
    store: Arc<SqliteStore>,
    tasks: usize,
    same_stream: bool,
    duration: Duration,
    run: u32,
) -> anyhow::Result<Concurrent> {
    let events = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let before = store.write_stats();
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut handles = vec![];
    for t in 0..tasks {
        let store = Arc::clone(&store);
        let (events, conflicts) = (Arc::clone(&events), Arc::clone(&conflicts));
        let stream = if same_stream {
            format!("workspace-bench-same-{run}-{tasks}")
        } else {
            format!("workspace-bench-own-{run}-{tasks}-{t}")
        };
        handles.push(tokio::spawn(async move {
            let mut known: Option<u64> = None;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let current = if same_stream { store.stream_version(&stream).await? } else { known };
                let append = StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::from_current(current),
                    events: vec![reservation(n)],
                };
                match store.append(append).await {
                    Ok(outcome) => {
                        known = Some(outcome.last_version);
                        n += 1;
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(StoreError::Conflict { .. }) if same_stream => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = store.write_stats();
    let events = events.load(Ordering::Relaxed);
    Ok(Concurrent {
        tasks,
        same_stream,
        events,
        conflicts: conflicts.load(Ordering::Relaxed),
        seconds,
        events_per_s: events as f64 / seconds,
        commits: after.commits - before.commits,
        requests: after.requests - before.requests,
    })
}

/// `batches` appends of `size` events each, to one stream, each with an
/// exact expected version: events/s and per-batch latency.
pub async fn batches(store: &dyn EventStore, size: usize, batches: usize) -> anyhow::Result<(f64, Percentiles)> {
    let stream = format!("workspace-bench-batch-{size}");
    let mut expected = ExpectedVersion::from_current(store.stream_version(&stream).await?);
    // Build the events before the clock starts: the bench measures the
    // store, not the encoder.
    let all: Vec<Vec<NewEvent>> = (0..batches)
        .map(|b| {
            let cmd = uuid::Uuid::now_v7();
            (0..size)
                .map(|i| {
                    let mut e = reservation((b * size + i) as u64);
                    e.metadata.command_id = Some(cmd);
                    e
                })
                .collect()
        })
        .collect();
    let mut lat = Vec::with_capacity(batches);
    let start = Instant::now();
    for events in all {
        let t = Instant::now();
        let outcome = store.append(StreamAppend { stream: stream.clone(), expected, events }).await?;
        lat.push(t.elapsed());
        expected = ExpectedVersion::Exact(outcome.last_version);
    }
    let rate = (size * batches) as f64 / start.elapsed().as_secs_f64();
    Ok((rate, Percentiles::of(&mut lat)))
}
