//! The read-ahead pipeline shows every event once, in order, exactly where a
//! plain page-by-page read would, and stops where it should: at the cut of
//! an `as of`, when the visitor has seen enough, and at a payload that does
//! not decode (after showing everything before it).

use chrono::{DateTime, Duration, TimeZone, Utc};
use seatledger_app::invoicing::AsOf;
use seatledger_app::readahead::{visit_decoded, ReadError, Visit, PAGE};
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
        event_type: event_type.to_owned(),
        schema_version,
        payload,
        metadata: EventMetadata {
            effective_at: at,
            actor: meta.actor.clone(),
            channel: meta.channel.clone(),
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
