//! The global order with several writers at once: each writer has a store
//! of its own (its own connections, as separate processes would), and a
//! subscriber in yet another store must see every committed event exactly
//! once, in gapless position order, with the hash chain intact. Also: the
//! group commit inside one process, and subscriptions woken across
//! processes by NOTIFY.

use seatledger_store::chain::Verifier;
use seatledger_store::conformance::{new_events, read_everything, stream_append, with_command};
use seatledger_store::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, StoreError, StoredEvent, Subscription, SystemClock,
};
use seatledger_store_postgres::{fresh_database_or_skip, PostgresStore};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WRITERS: usize = 8;
const ROUNDS: usize = 60;
const SHARED: [&str; 2] = ["shared-0", "shared-1"];

async fn store(url: &str) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::connect(url, Arc::new(SystemClock)).await.expect("connecting"))
}

/// What the writers know they committed: each event id at its stream,
/// version and position.
#[derive(Debug, Default)]
struct Committed {
    events: HashMap<Uuid, (String, u64, u64)>,
    conflicts: u64,
    deduplicated: u64,
}

fn record(committed: &Mutex<Committed>, outcome: &AppendOutcome, events: &[NewEvent]) {
    assert!(!outcome.deduplicated);
    assert_eq!(outcome.last_version - outcome.first_version + 1, events.len() as u64);
    assert_eq!(outcome.last_position - outcome.first_position + 1, events.len() as u64);
    let mut committed = committed.lock().unwrap();
    for (offset, event) in events.iter().enumerate() {
        let place =
            (outcome.stream.clone(), outcome.first_version + offset as u64, outcome.first_position + offset as u64);
        assert!(committed.events.insert(event.id, place).is_none(), "event {} committed twice", event.id);
    }
}

/// Append `events` (carrying `command_id`) to each of `streams` at once,
/// reading the expected versions first and trying again on a conflict.
async fn append_with_retries(
    store: &PostgresStore,
    committed: &Mutex<Committed>,
    streams: &[&str],
    command_ids: &[Uuid],
) -> (Vec<AppendOutcome>, Vec<Vec<NewEvent>>) {
    let batches: Vec<Vec<NewEvent>> = streams
        .iter()
        .zip(command_ids)
        .map(|(stream, command_id)| {
            with_command(new_events(stream, 1 + (command_id.as_u128() % 3) as usize), *command_id)
        })
        .collect();
    for _attempt in 0..200 {
        let mut appends = Vec::new();
        for (stream, events) in streams.iter().zip(&batches) {
            let current = store.stream_version(stream).await.expect("stream_version");
            appends.push(stream_append(stream, ExpectedVersion::from_current(current), events.clone()));
        }
        match store.append_many(appends).await {
            Ok(outcomes) => {
                for (outcome, events) in outcomes.iter().zip(&batches) {
                    record(committed, outcome, events);
                }
                return (outcomes, batches);
            }
            Err(StoreError::Conflict { .. }) => {
                committed.lock().unwrap().conflicts += 1;
                tokio::task::yield_now().await;
            }
            Err(other) => panic!("appending to {streams:?} failed: {other}"),
        }
    }
    panic!("appending to {streams:?} kept conflicting");
}

/// A committed append as its writer remembers it: outcomes, streams, events.
type Appended = (Vec<AppendOutcome>, Vec<String>, Vec<Vec<NewEvent>>);

async fn writer(w: usize, store: Arc<PostgresStore>, committed: Arc<Mutex<Committed>>) {
    let own = format!("own-{w}");
    let mut last: Option<Appended> = None;
    for round in 0..ROUNDS {
        let shared = SHARED[(w + round) % SHARED.len()];
        let streams: Vec<&str> = match round % 4 {
            0 => vec![own.as_str()],
            1 | 2 => vec![shared],
            _ => vec![own.as_str(), shared],
        };
        let command_ids: Vec<Uuid> = streams.iter().map(|_| Uuid::now_v7()).collect();
        let (outcomes, batches) = append_with_retries(&store, &committed, &streams, &command_ids).await;
        // Now and then, retry what was just committed, as a client that
        // never heard the answer would: nothing new may be written.
        if round % 7 == 3 {
            if let Some((outcomes, streams, batches)) = last.take() {
                let retry = streams
                    .iter()
                    .zip(&batches)
                    .map(|(stream, events)| stream_append(stream, ExpectedVersion::NoStream, events.clone()))
                    .collect();
                let again = store.append_many(retry).await.expect("retrying a committed append");
                for (first, second) in outcomes.iter().zip(&again) {
                    assert_eq!(second, &AppendOutcome { deduplicated: true, ..first.clone() });
                }
                committed.lock().unwrap().deduplicated += again.len() as u64;
            }
        }
        last = Some((outcomes, streams.iter().map(|s| s.to_string()).collect(), batches));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_separate_stores_make_one_gapless_chained_order() {
    let db = fresh_database_or_skip!("stress");
    let started = Instant::now();
    let reader: Arc<dyn EventStore> = store(db.url()).await;
    let mut stores = Vec::new();
    for _ in 0..WRITERS {
        stores.push(store(db.url()).await);
    }

    // The subscriber follows the log while the writers write.
    let (target_tx, mut target_rx) = tokio::sync::watch::channel(u64::MAX);
    let seen_while_writing = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let subscriber = {
        let reader = reader.clone();
        let seen_while_writing = seen_while_writing.clone();
        tokio::spawn(async move {
            let mut subscription = Subscription::new(reader, 0);
            let mut verifier = Verifier::default();
            let mut versions: HashMap<String, u64> = HashMap::new();
            let mut seen: Vec<StoredEvent> = Vec::new();
            loop {
                let target = *target_rx.borrow_and_update();
                if seen.len() as u64 >= target {
                    return seen;
                }
                let event = tokio::select! {
                    event = subscription.next() => event.expect("the subscription failed"),
                    _ = target_rx.changed() => continue,
                };
                let expected_position = seen.last().map_or(1, |e| e.position + 1);
                assert_eq!(event.position, expected_position, "the subscriber saw a gap or a repeat");
                assert!(verifier.check(&event), "the chain breaks at position {}", event.position);
                let next_version = versions.get(event.stream.as_str()).map_or(0, |v| v + 1);
                assert_eq!(event.stream_version, next_version, "stream `{}` out of order", event.stream);
                versions.insert(event.stream.to_string(), event.stream_version);
                if target == u64::MAX {
                    seen_while_writing.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                seen.push(event);
            }
        })
    };

    let committed = Arc::new(Mutex::new(Committed::default()));
    let writers: Vec<_> =
        stores.iter().enumerate().map(|(w, s)| tokio::spawn(writer(w, s.clone(), committed.clone()))).collect();
    for handle in writers {
        tokio::time::timeout(Duration::from_secs(60), handle).await.expect("a writer hung").expect("a writer panicked");
    }
    let total = committed.lock().unwrap().events.len() as u64;
    assert_eq!(reader.head_position().await.unwrap(), total, "the head counts every committed event, nothing more");
    target_tx.send(total).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), subscriber)
        .await
        .expect("the subscriber did not see every event")
        .expect("the subscriber panicked");

    // Exactly the committed events, each once, where the writers were told.
    let committed = std::mem::take(&mut *committed.lock().unwrap());
    assert_eq!(seen.len() as u64, total);
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), seen.len(), "an event was delivered twice");
    assert_eq!(ids, committed.events.keys().copied().collect::<HashSet<_>>(), "delivered ≠ committed");
    for event in &seen {
        let (stream, version, position) = &committed.events[&event.id];
        assert_eq!(
            (event.stream.as_str(), event.stream_version, event.position),
            (stream.as_str(), *version, *position)
        );
    }
    // The subscriber read the same log a plain read does.
    assert_eq!(read_everything(&*reader).await, seen);
    let report = reader.verify().await.unwrap();
    assert!(report.is_intact(), "{:?}", report.first_broken);
    assert_eq!(report.checked, total);
    let mut per_stream: BTreeMap<&str, u64> = BTreeMap::new();
    for event in &seen {
        *per_stream.entry(&event.stream).or_default() += 1;
    }
    for (stream, count) in per_stream {
        assert_eq!(reader.stream_version(stream).await.unwrap(), Some(count - 1), "version of `{stream}`");
    }
    assert!(committed.conflicts > 0, "the shared streams never conflicted: the test did not contend");
    assert!(committed.deduplicated > 0, "no retry was deduplicated");
    assert!(
        seen_while_writing.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the subscriber saw nothing until the writers had finished"
    );
    eprintln!(
        "stress: {total} events from {WRITERS} stores, {} conflicts retried, {} retries deduplicated, in {:?}",
        committed.conflicts,
        committed.deduplicated,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_commits_concurrent_appends_in_groups_and_a_conflict_fails_alone() {
    let db = fresh_database_or_skip!("group");
    let store = store(db.url()).await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let append = if n % 4 == 0 {
                // Sixteen appends all creating one stream: one wins.
                stream_append("contended", ExpectedVersion::NoStream, new_events("c", 1))
            } else {
                stream_append(&format!("s-{n}"), ExpectedVersion::NoStream, new_events("s", 2))
            };
            (n, store.append(append).await)
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for task in tasks {
        let (n, result) = task.await.unwrap();
        match (n % 4 == 0, result) {
            (true, Ok(_)) => won += 1,
            (true, Err(StoreError::Conflict { stream, expected, actual })) => {
                assert_eq!((stream.as_str(), expected, actual), ("contended", ExpectedVersion::NoStream, Some(0)));
                lost += 1;
            }
            (false, Ok(outcome)) => assert_eq!((outcome.first_version, outcome.last_version), (0, 1)),
            (_, other) => panic!("append {n}: {other:?}"),
        }
    }
    assert_eq!((won, lost), (1, 15));
    let stats = store.write_stats();
    assert_eq!(stats.requests, 64, "every request, failed or not, was served in a group");
    assert!(stats.commits < stats.requests, "no two appends shared a commit: {stats:?}");
    assert_eq!(store.head_position().await.unwrap(), 48 * 2 + 1);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact() && report.checked == 97, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_hears_appends_by_another_process_at_once() {
    let db = fresh_database_or_skip!("notify");
    let a: Arc<dyn EventStore> = store(db.url()).await;
    let b = store(db.url()).await;
    // Polling once a minute: only a notification can wake it in time.
    let mut subscription = Subscription::new(a.clone(), 0).with_poll_interval(Duration::from_secs(60));
    assert!(subscription.try_next().await.unwrap().is_none());
    let mut watch = a.head_watch();
    let follower = tokio::spawn(async move {
        let event = subscription.next().await.expect("following");
        (event, Instant::now())
    });
    // Let the subscription settle into waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut follower = Some(follower);
    for round in 0..3u64 {
        let sent = Instant::now();
        let expected = ExpectedVersion::from_current(round.checked_sub(1));
        b.append(stream_append("elsewhere", expected, new_events("b", 1))).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), watch.changed())
            .await
            .expect("store A's head watch did not move within 2 s of store B's append")
            .unwrap();
        assert_eq!(*watch.borrow_and_update(), round + 1);
        if let Some(follower) = follower.take() {
            let (event, arrived) = tokio::time::timeout(Duration::from_secs(2), follower)
                .await
                .expect("the subscription on store A did not see store B's append within 2 s")
                .unwrap();
            assert_eq!((event.position, event.stream.as_str()), (1, "elsewhere"));
            assert!(arrived - sent < Duration::from_secs(2), "took {:?}", arrived - sent);
        }
    }
}
