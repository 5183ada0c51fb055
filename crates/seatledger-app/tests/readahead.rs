//! The read-ahead pipeline shows every event once, in order, exactly where a
//! plain page-by-page read would, and stops where it should: at the cut of
//! an `as of`, when the visitor has seen enough, and at a payload that does
//! not decode (after showing everything before it).

use chrono::{DateTime, Duration, TimeZone, Utc};
use seatledger_app::invoicing::AsOf;
use seatledger_app::readahead::{fold_decoded, visit_decoded, ReadError, Visit, CHUNK, PAGE};
use seatledger_app::{decode_stored, CommandMeta};
use seatledger_codec::encode;
use seatledger_domain::{Event, ReservationId, UserId};
use seatledger_store::{
    EventMetadata, EventStore, ExpectedVersion, MemoryStore, NewEvent, SteppingClock, StreamAppend, MAX_READ_COUNT,
};
use std::ops::ControlFlow;
use std::sync::Arc;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 9, 0, 0).single().expect("a valid time")
}

fn reservation(n: usize) -> NewEvent {
    let starts = start() + Duration::minutes(n as i64);
    let event = Event::ReservationMade {
        reservation: ReservationId::new(format!("r{n}")).expect("a valid reservation id"),
        user: UserId::new(format!("u{}", n % 7)).expect("a valid user id"),
        starts_at: starts,
        ends_at: starts + Duration::hours(1),
    };
    let encoded = encode(&event);
    new_event(encoded.event_type, encoded.schema_version, encoded.payload, starts)
}

fn new_event(event_type: &str, schema_version: u32, payload: String, at: DateTime<Utc>) -> NewEvent {
    let meta = CommandMeta::new("tester", "cli", uuid::Uuid::now_v7());
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version,
        payload,
        metadata: EventMetadata {
            effective_at: at,
            actor: meta.actor.as_str().into(),
            channel: meta.channel.as_str().into(),
            correlation_id: meta.correlation_id,
            causation_id: None,
            command_id: None,
        },
    }
}

/// `events` reservations over three workspace streams and one stream that
/// is not the ledger's, appended 100 at a time, one second apart.
async fn ledger(events: usize) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new(Arc::new(SteppingClock::new(start(), Duration::seconds(1)))));
    let streams = ["workspace-a", "workspace-b", "$system-stats", "workspace-c"];
    let mut n = 0;
    while n < events {
        let stream = streams[(n / 100) % streams.len()];
        let version = store.stream_version(stream).await.expect("stream version");
        let batch: Vec<NewEvent> = (n..(n + 100).min(events)).map(reservation).collect();
        n += batch.len();
        let append =
            StreamAppend { stream: stream.to_owned(), expected: ExpectedVersion::from_current(version), events: batch };
        store.append(append).await.expect("append");
    }
    store
}

/// What a plain read shows: (position, decoded event id or none), in order.
async fn plain(store: &dyn EventStore, keep: impl Fn(&seatledger_store::StoredEvent) -> bool) -> Vec<(u64, bool)> {
    let mut seen = Vec::new();
    let mut after = 0;
    'read: loop {
        let page = store.read_all(after, MAX_READ_COUNT).await.expect("read");
        let Some(last) = page.last().map(|e| e.position) else { break };
        for e in page {
            if !keep(&e) {
                break 'read;
            }
            let position = e.position;
            seen.push((position, decode_stored(e).expect("decodes").is_some()));
        }
        after = last;
    }
    seen
}

async fn piped(store: &dyn EventStore, after: u64, until: AsOf) -> (Vec<(u64, bool)>, Vec<u64>, u64) {
    let (mut seen, mut page_ends) = (Vec::new(), Vec::new());
    let last = visit_decoded(store, after, until, |visit| {
        match visit {
            Visit::Event { position, decoded } => {
                if let Some(d) = decoded {
                    assert_eq!(d.stored.position, position, "the decoded event is the one at its position");
                }
                seen.push((position, decoded.is_some()));
            }
            Visit::PageEnd { last } => page_ends.push(last),
        }
        ControlFlow::Continue(())
    })
    .await
    .expect("visit");
    (seen, page_ends, last)
}

#[tokio::test]
async fn every_event_once_in_order_across_pages() {
    let events = 2 * PAGE + 345;
    let store = ledger(events).await;
    let expected = plain(store.as_ref(), |_| true).await;
    assert_eq!(expected.len(), events);
    // 4,345 events in 44 appends; appends 2, 6, …, 42 (11 of them, 100
    // events each) go to the stream that is not the ledger's.
    assert_eq!(events, 4_345);
    assert_eq!(expected.iter().filter(|(_, ledger)| !ledger).count(), 1_100);
    let (seen, page_ends, last) = piped(store.as_ref(), 0, AsOf::Head).await;
    assert_eq!(seen, expected);
    assert_eq!(last, events as u64);
    assert_eq!(page_ends, vec![PAGE as u64, 2 * PAGE as u64, events as u64]);

    // From a position in the middle of a page.
    let (seen, _, last) = piped(store.as_ref(), 1_234, AsOf::Head).await;
    assert_eq!(seen, expected[1_234..]);
    assert_eq!(last, events as u64);
}

#[tokio::test]
async fn stops_at_the_position_or_recorded_time_asked() {
    let store = ledger(2 * PAGE + 345).await;
    let cut = PAGE as u64 + 17;
    let (seen, page_ends, last) = piped(store.as_ref(), 0, AsOf::Position(cut)).await;
    assert_eq!(seen, plain(store.as_ref(), |e| e.position <= cut).await);
    assert_eq!(last, cut);
    assert_eq!(page_ends, vec![PAGE as u64, cut]);

    // Appends of 100 events share one recorded time, one second apart.
    let recorded = store.read_all(cut - 1, 1).await.expect("read")[0].recorded_at;
    let (seen, _, last) = piped(store.as_ref(), 0, AsOf::Recorded(recorded)).await;
    assert_eq!(seen, plain(store.as_ref(), |e| e.recorded_at <= recorded).await);
    assert_eq!(last % 100, 0, "a recorded-time cut falls between two appends");
    assert!(last >= cut && last < cut + 100);

    // A cut before everything shows nothing.
    let (seen, page_ends, last) = piped(store.as_ref(), 0, AsOf::Position(0)).await;
    assert!(seen.is_empty() && page_ends.is_empty());
    assert_eq!(last, 0);
}

#[tokio::test]
async fn stops_when_the_visitor_has_seen_enough() {
    let store = ledger(3 * PAGE).await;
    let mut seen = 0u64;
    let last = visit_decoded(store.as_ref(), 0, AsOf::Head, |visit| {
        if let Visit::Event { .. } = visit {
            seen += 1;
            if seen == 2_500 {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .await
    .expect("visit");
    assert_eq!((seen, last), (2_500, 2_500));
}

#[tokio::test]
async fn a_payload_that_does_not_decode_stops_the_read_after_everything_before_it() {
    let store = ledger(PAGE + 10).await;
    let bad = new_event("ReservationMade", 1, r#"{"reservation":"r-x"}"#.to_owned(), start());
    let version = store.stream_version("workspace-a").await.expect("version");
    store
        .append(StreamAppend {
            stream: "workspace-a".to_owned(),
            expected: ExpectedVersion::from_current(version),
            events: vec![bad],
        })
        .await
        .expect("append");
    let more: Vec<NewEvent> = (0..50).map(|n| reservation(10_000 + n)).collect();
    let version = store.stream_version("workspace-b").await.expect("version");
    store
        .append(StreamAppend {
            stream: "workspace-b".to_owned(),
            expected: ExpectedVersion::from_current(version),
            events: more,
        })
        .await
        .expect("append");

    let mut seen = Vec::new();
    let result = visit_decoded(store.as_ref(), 0, AsOf::Head, |visit| {
        if let Visit::Event { position, .. } = visit {
            seen.push(position);
        }
        ControlFlow::Continue(())
    })
    .await;
    let bad_position = PAGE as u64 + 11;
    match result {
        Err(ReadError::Unreadable(why)) => {
            assert!(why.contains(&format!("position {bad_position}")), "{why}");
            assert!(why.contains("workspace-a"), "{why}");
        }
        other => panic!("expected the bad payload to stop the read, got {other:?}"),
    }
    assert_eq!(seen, (1..bad_position).collect::<Vec<_>>());
}

/// A projection that records what it was shown and on which thread, and
/// says it is complete after `stop_after` events, if set.
#[derive(Default)]
struct Recorder {
    seen: Vec<u64>,
    stop_after: Option<usize>,
    threads: std::collections::BTreeSet<String>,
}

impl seatledger_projections::Projection for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn apply(&mut self, event: &seatledger_projections::Recorded<'_>) {
        assert!(!self.is_complete(), "an event reached a complete projection at position {}", event.position);
        self.seen.push(event.position);
        self.threads.insert(format!("{:?}", std::thread::current().id()));
    }

    fn is_complete(&self) -> bool {
        self.stop_after.is_some_and(|n| self.seen.len() >= n)
    }
}

/// The positions a fold applies: the ledger's own events, in order.
async fn applied_positions(store: &dyn EventStore) -> Vec<u64> {
    plain(store, |_| true).await.into_iter().filter(|(_, decoded)| *decoded).map(|(p, _)| p).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_into_several_projections_shows_each_every_event_once_in_order() {
    // Several chunks of `CHUNK` events, and pages of `PAGE`.
    let store = ledger(2 * PAGE + 345).await;
    let expected = applied_positions(store.as_ref()).await;
    let mut recorders: Vec<Recorder> = (0..5).map(|_| Recorder::default()).collect();
    let mut projections: Vec<&mut dyn seatledger_projections::Projection> =
        recorders.iter_mut().map(|r| r as &mut dyn seatledger_projections::Projection).collect();
    let last = fold_decoded(store.as_ref(), 0, AsOf::Head, &mut projections).await.expect("fold");
    assert_eq!(last, store.head_position().await.expect("head"), "the fold stopped before the head");
    for (n, recorder) in recorders.iter().enumerate() {
        assert_eq!(recorder.seen, expected, "projection {n} was shown a different sequence");
    }
    // On two cores or more the projections are shared between two threads.
    let threads: std::collections::BTreeSet<&String> = recorders.iter().flat_map(|r| &r.threads).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 {
        assert!(threads.len() >= 2, "{cores} cores, but every projection was applied on one thread");
    } else {
        eprintln!("one core: the fold ran on one thread, as it should; the two-thread split was not exercised");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_stops_at_the_event_that_completes_its_last_projection() {
    let store = ledger(3 * CHUNK + 77).await;
    let expected = applied_positions(store.as_ref()).await;
    // Completing in the first chunk, in a later one, and last in yet another.
    let stops = [10, CHUNK + 3, 2 * CHUNK + 100];
    let mut recorders: Vec<Recorder> =
        stops.iter().map(|&n| Recorder { stop_after: Some(n), ..Recorder::default() }).collect();
    let mut projections: Vec<&mut dyn seatledger_projections::Projection> =
        recorders.iter_mut().map(|r| r as &mut dyn seatledger_projections::Projection).collect();
    let last = fold_decoded(store.as_ref(), 0, AsOf::Head, &mut projections).await.expect("fold");
    assert_eq!(last, expected[2 * CHUNK + 100 - 1], "the fold did not stop at the last completion");
    for (recorder, n) in recorders.iter().zip(stops) {
        assert_eq!(recorder.seen, expected[..n], "a projection was shown other events than its first {n}");
    }
    // None complete: the fold reads to the head, from a cursor too.
    let mut open = Recorder::default();
    let mut other = Recorder::default();
    let after = expected[99];
    let last = fold_decoded(store.as_ref(), after, AsOf::Head, &mut [&mut open, &mut other]).await.expect("fold");
    assert_eq!(last, store.head_position().await.expect("head"));
    assert_eq!(open.seen, expected[100..]);
    assert_eq!(other.seen, expected[100..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_into_several_projections_keeps_every_edge_of_the_pipeline() {
    let store = ledger(2 * PAGE + 200).await;
    let expected = applied_positions(store.as_ref()).await;
    let head = store.head_position().await.expect("head");

    // An `as of` cut: nothing after it, and the fold ends at it.
    let cut = expected[1_500];
    let (mut a, mut b) = (Recorder::default(), Recorder::default());
    let last = fold_decoded(store.as_ref(), 0, AsOf::Position(cut), &mut [&mut a, &mut b]).await.expect("fold");
    assert_eq!(last, cut);
    assert_eq!((a.seen.as_slice(), b.seen.as_slice()), (&expected[..=1_500], &expected[..=1_500]));

    // Complete before any event, beside one that never is: the first sees
    // nothing, the second everything. Both complete at once: the fold stops
    // after the first event, as a fold into one such projection does.
    let (mut done, mut open) = (Recorder { stop_after: Some(0), ..Recorder::default() }, Recorder::default());
    let last = fold_decoded(store.as_ref(), 0, AsOf::Head, &mut [&mut done, &mut open]).await.expect("fold");
    assert_eq!((last, done.seen.len(), open.seen.as_slice()), (head, 0, expected.as_slice()));
    let (mut x, mut y) = (
        Recorder { stop_after: Some(0), ..Recorder::default() },
        Recorder { stop_after: Some(0), ..Recorder::default() },
    );
    assert_eq!(fold_decoded(store.as_ref(), 0, AsOf::Head, &mut [&mut x, &mut y]).await.expect("fold"), 1);

    // No projection at all: read to the head.
    assert_eq!(fold_decoded(store.as_ref(), 0, AsOf::Head, &mut []).await.expect("fold"), head);

    // A payload that does not decode: everything before it folded, then the error.
    let bad = new_event("ReservationMade", 1, r#"{"reservation":"r-x"}"#.to_owned(), start());
    let version = store.stream_version("workspace-a").await.expect("version");
    let append = StreamAppend {
        stream: "workspace-a".to_owned(),
        expected: ExpectedVersion::from_current(version),
        events: vec![bad],
    };
    store.append(append).await.expect("append");
    let (mut a, mut b) = (Recorder::default(), Recorder::default());
    match fold_decoded(store.as_ref(), 0, AsOf::Head, &mut [&mut a, &mut b]).await {
        Err(ReadError::Unreadable(why)) => assert!(why.contains(&format!("position {}", head + 1)), "{why}"),
        other => panic!("expected the bad payload to stop the fold, got {other:?}"),
    }
    assert_eq!((a.seen.as_slice(), b.seen.as_slice()), (expected.as_slice(), expected.as_slice()));
}
