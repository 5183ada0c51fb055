//! The one conformance suite every [`EventStore`] backend runs.
//!
//! Each check is a public async function that takes a fresh, empty store and
//! panics with a message when the store breaks the contract. A backend's test
//! crate runs all of them with [`conformance_suite!`](crate::conformance_suite):
//!
//! ```text
//! seatledger_store::conformance_suite!(|clock| async move {
//!     let dir = tempfile::tempdir().expect("creating a temp dir");
//!     let store = MyStore::open(dir.path().join("events.db"), clock).expect("opening the store");
//!     (std::sync::Arc::new(store) as std::sync::Arc<dyn seatledger_store::EventStore>,
//!      Box::new(dir) as seatledger_store::conformance::StoreGuard)
//! });
//! ```
//!
//! The factory is a closure from the [`Clock`] the store must use to a future
//! of the store and a guard that keeps whatever the store lives in (a temp dir, a
//! database) alive until the test ends. The suite hands in a deterministic
//! clock, and a [`ManualClock`] where a check needs to steer time.
//!
//! Every backend runs the same checks on the same history. Where a backend
//! declares a weaker promise in its [`Capabilities`](crate::Capabilities),
//! the check branches and holds it to that promise, strictly:
//! - `gapless_positions: false`: positions are compared with the ones the
//!   store reports (read back), and must increase strictly; gapless stores
//!   are held to the literal 1, 2, 3, ….
//! - `atomic_multi_stream_append: false`: an `append_many` naming two streams
//!   must be refused with `Unsupported` and write nothing; the history is then
//!   written one stream at a time.
//! - `chain: PerStream`: the hash links are recomputed per stream
//!   ([`chain::stream_link`](crate::chain::stream_link)), and (see
//!   [`finds_event_ids_in_any_stream`]) event ids are looked up where the
//!   append's expectation puts them rather than in the whole log.

use crate::{
    truncate_to_micros, AppendOutcome, ChainScope, Checkpoint, Clock, Direction, EventMetadata, EventStore,
    ExpectedVersion, ImportOutcome, NewEvent, StoreError, StoredEvent, StreamAppend, Subscription,
    MAX_EVENTS_PER_APPEND, MAX_READ_COUNT,
};
use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The macro expands to `#[tokio::test]`s; re-exported so that a backend's
/// test crate needs no tokio of its own to run the suite.
#[doc(hidden)]
pub use tokio as __tokio;

/// Keeps a fresh store's home (a temp dir, a server) alive for one test.
pub type StoreGuard = Box<dyn std::any::Any + Send>;

/// How long a check waits for something that should happen at once before it
/// fails instead of hanging.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Make a store with the factory handed to [`conformance_suite!`](crate::conformance_suite).
/// A function rather than a direct call so that the closure's argument type
/// is inferred from the bound.
pub async fn fresh<F, Fut>(factory: &F, clock: Arc<dyn Clock>) -> (Arc<dyn EventStore>, StoreGuard)
where
    F: Fn(Arc<dyn Clock>) -> Fut,
    Fut: std::future::Future<Output = (Arc<dyn EventStore>, StoreGuard)>,
{
    factory(clock).await
}

/// [`fresh`], for the suite's two forms: `Some` store, always.
pub async fn fresh_always<F, Fut>(factory: &F, clock: Arc<dyn Clock>) -> Option<(Arc<dyn EventStore>, StoreGuard)>
where
    F: Fn(Arc<dyn Clock>) -> Fut,
    Fut: std::future::Future<Output = (Arc<dyn EventStore>, StoreGuard)>,
{
    Some(factory(clock).await)
}

/// Make a store with a factory that may have none to offer (a backend whose
/// server is only there when configured): `None` skips the check, and the
/// factory says why, loudly.
pub async fn fresh_if_configured<F, Fut>(
    factory: &F,
    clock: Arc<dyn Clock>,
) -> Option<(Arc<dyn EventStore>, StoreGuard)>
where
    F: Fn(Arc<dyn Clock>) -> Fut,
    Fut: std::future::Future<Output = Option<(Arc<dyn EventStore>, StoreGuard)>>,
{
    factory(clock).await
}

/// The clock every check but one runs with: deterministic, and deliberately
/// off the microsecond grid so that truncation is exercised everywhere.
pub fn suite_clock() -> Arc<dyn Clock> {
    Arc::new(crate::SteppingClock::new(instant(1_709_251_200, 123_456_789), Duration::nanoseconds(1_000_250)))
}

/// A clock that says what the test tells it to, including going backwards.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(now) }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Run every check of the suite against a backend, one `#[tokio::test]` each.
///
/// `$factory` is a closure `Fn(Arc<dyn Clock>) -> impl Future<Output =
/// (Arc<dyn EventStore>, StoreGuard)>` that makes a fresh, empty store using the clock it is given.
/// The invoking crate needs `seatledger-store` (under that name) as a
/// dependency; tokio comes re-exported from it.
///
/// `conformance_suite!(if_configured $factory)` takes a factory whose future
/// gives an `Option`: `None` (no server configured) skips every check, and
/// the factory is the one to say so, loudly.
#[macro_export]
macro_rules! conformance_suite {
    (if_configured $factory:expr) => {
        $crate::conformance_suite!(@suite fresh_if_configured, $factory);
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@suite fresh_always, $factory);
    };
    (@suite $fresh:ident, $factory:expr) => {
        $crate::conformance_suite!(@checks $fresh, $factory;
            append_to_new_stream_with_no_stream,
            append_with_exact_version,
            conflict_when_no_stream_expected_but_stream_exists,
            conflict_when_exact_version_is_wrong,
            conflict_when_exact_version_on_missing_stream,
            append_many_is_atomic,
            one_stream_twice_in_one_call_chains_expectations,
            retry_by_command_id_is_deduplicated,
            retry_by_event_ids_is_deduplicated,
            partial_duplicate_event_ids_are_refused,
            command_id_reused_for_another_stream_is_refused,
            read_stream_forwards_and_backwards,
            read_all_pages_with_gapless_positions,
            stream_version_and_head_position,
            subscription_catches_up_then_follows_live,
            ten_thousand_events_in_one_append,
            unicode_and_large_payload_round_trip,
            invalid_appends_are_refused,
            verify_reports_an_intact_log,
            import_keeps_fields_and_resumes,
            import_refuses_events_that_do_not_fit,
            checkpoints_save_load_overwrite_delete,
        );

        #[$crate::conformance::__tokio::test(
            crate = "::seatledger_store::conformance::__tokio",
            flavor = "multi_thread",
            worker_threads = 2
        )]
        async fn recorded_at_never_decreases_and_is_truncated_to_micros() {
            let clock = ::std::sync::Arc::new($crate::conformance::ManualClock::new(
                $crate::conformance::manual_clock_start(),
            ));
            let Some((store, _guard)) = $crate::conformance::$fresh(&$factory, clock.clone()).await else { return };
            $crate::conformance::recorded_at_never_decreases_and_is_truncated_to_micros(store, clock).await;
        }
    };
    (@checks $fresh:ident, $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[$crate::conformance::__tokio::test(
                crate = "::seatledger_store::conformance::__tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $check() {
                let Some((store, _guard)) =
                    $crate::conformance::$fresh(&$factory, $crate::conformance::suite_clock()).await
                else {
                    return;
                };
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Helpers: events to append, and assertions about what comes back.

fn instant(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, nanos).unwrap_or_else(|| panic!("instant {secs}.{nanos} is out of range"))
}

/// Where the [`ManualClock`] of the recorded-at check starts.
pub fn manual_clock_start() -> DateTime<Utc> {
    instant(1_709_287_200, 123_456_789)
}

/// Metadata with an effective time off the microsecond grid: every backend
/// keeps whole microseconds, so it must come back truncated.
pub fn metadata(command_id: Option<Uuid>) -> EventMetadata {
    EventMetadata {
        effective_at: instant(1_704_067_200, 987_654_321),
        actor: "conformance".into(),
        channel: "test".into(),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(Uuid::now_v7()),
        command_id,
    }
}

/// One new event with a fresh id and the given JSON object as payload.
pub fn new_event(payload: &str) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "ConformanceChecked".into(),
        schema_version: 1,
        payload: payload.to_owned(),
        metadata: metadata(None),
    }
}

/// `count` new events tagged `tag`, numbered from 0 in their payloads.
pub fn new_events(tag: &str, count: usize) -> Vec<NewEvent> {
    (0..count).map(|n| new_event(&format!(r#"{{"tag":"{tag}","n":{n}}}"#))).collect()
}

/// The same events, all carrying `command_id`.
pub fn with_command(mut events: Vec<NewEvent>, command_id: Uuid) -> Vec<NewEvent> {
    for e in &mut events {
        e.metadata.command_id = Some(command_id);
    }
    events
}

pub fn stream_append(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend { stream: stream.to_owned(), expected, events }
}

async fn append_ok(
    store: &dyn EventStore,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendOutcome {
    store
        .append(stream_append(stream, expected, events))
        .await
        .unwrap_or_else(|e| panic!("appending to `{stream}` expecting {expected} failed: {e}"))
}

/// Every event of the global log, read in pages.
pub async fn read_everything(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &StoredEvent| e.position);
        let page = store.read_all(after, MAX_READ_COUNT).await.expect("read_all failed");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn read_forwards(store: &dyn EventStore, stream: &str) -> Vec<StoredEvent> {
    store
        .read_stream(stream, 0, Direction::Forwards, MAX_READ_COUNT)
        .await
        .unwrap_or_else(|e| panic!("reading `{stream}` failed: {e}"))
}

/// The stored event is exactly the event that was sent, at the given place.
pub fn assert_stored_as_sent(stored: &StoredEvent, sent: &NewEvent, stream: &str, stream_version: u64) {
    assert_eq!(stored.id, sent.id, "event id changed");
    assert_eq!(stored.stream, stream, "stream of event {}", sent.id);
    assert_eq!(stored.stream_version, stream_version, "stream version of event {}", sent.id);
    assert_eq!(stored.event_type, sent.event_type, "type of event {}", sent.id);
    assert_eq!(stored.schema_version, sent.schema_version, "schema version of event {}", sent.id);
    assert!(stored.payload == sent.payload, "payload of event {} did not round-trip exactly", sent.id);
    let mut metadata = sent.metadata.clone();
    metadata.effective_at = truncate_to_micros(metadata.effective_at);
    assert_eq!(stored.metadata, metadata, "metadata of event {} (effective_at kept to whole microseconds)", sent.id);
    assert_eq!(stored.recorded_at, truncate_to_micros(stored.recorded_at), "recorded_at has sub-microsecond digits");
    assert!(crate::chain::parse_link(&stored.hash).is_some(), "hash {:?} is not 64 hex digits", stored.hash);
}

/// Positions increase strictly along `events`; on a store with gapless
/// positions they are exactly `first`, `first + 1`, ….
fn assert_positions(store: &dyn EventStore, events: &[StoredEvent], first: u64) {
    if store.capabilities().gapless_positions {
        for (offset, e) in events.iter().enumerate() {
            assert_eq!(e.position, first + offset as u64, "global positions must be gapless");
        }
    } else {
        for pair in events.windows(2) {
            assert!(
                pair[1].position > pair[0].position,
                "global positions must increase strictly: {} after {}",
                pair[1].position,
                pair[0].position
            );
        }
        assert!(events.first().is_none_or(|e| e.position > 0), "position 0 means before the first event");
    }
}

/// The log holds exactly `count` events, and the head is the last one's
/// position (on a gapless store: `count` itself).
async fn assert_nothing_written(store: &dyn EventStore, count: u64, what: &str) {
    let all = read_everything(store).await;
    assert_eq!(all.len() as u64, count, "{what} must write nothing");
    let head = store.head_position().await.expect("head_position failed");
    assert_eq!(head, all.last().map_or(0, |e| e.position), "{what} must write nothing (head position)");
    if store.capabilities().gapless_positions {
        assert_eq!(head, count, "{what} must write nothing (head position)");
    }
}

/// The positions of a stream's events, by version, as the store reports them.
async fn positions_of(store: &dyn EventStore, stream: &str) -> Vec<u64> {
    read_forwards(store, stream).await.iter().map(|e| e.position).collect()
}

/// Whether the store finds an event id in whatever stream it is stored
/// ([`EventIdScope::WholeLog`]). A store that knows only the stream it writes
/// to (KurrentDB) recognises a retried event where the append's expected
/// version puts it, which is KurrentDB's own idempotency rule, and the checks
/// below hold it to exactly that.
pub fn finds_event_ids_in_any_stream(store: &dyn EventStore) -> bool {
    store.capabilities().event_ids == crate::EventIdScope::WholeLog
}

/// Whether `append_many` over several streams is atomic; when it is not, the
/// store must refuse such a call with `Unsupported`, writing nothing.
fn atomic_across_streams(store: &dyn EventStore) -> bool {
    store.capabilities().atomic_multi_stream_append
}

fn assert_unsupported<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unsupported(reason)) => assert!(!reason.is_empty(), "{what}: an empty reason"),
        other => {
            panic!("{what}: a store without atomic multi-stream appends must refuse with Unsupported, got {other:?}")
        }
    }
}

/// Append several streams: in one call where that is atomic, else one
/// stream at a time after checking that the one call is refused whole.
async fn append_streams(store: &dyn EventStore, appends: Vec<StreamAppend>) -> Vec<AppendOutcome> {
    if atomic_across_streams(store) {
        return store.append_many(appends).await.expect("append_many failed");
    }
    let before = read_everything(store).await.len() as u64;
    assert_unsupported(store.append_many(appends.clone()).await, "an append_many naming several streams");
    assert_nothing_written(store, before, "a refused append_many").await;
    let mut outcomes = Vec::with_capacity(appends.len());
    for append in appends {
        outcomes.push(store.append(append).await.expect("appending one stream at a time failed"));
    }
    outcomes
}

// ---------------------------------------------------------------------------
// Appending and expected versions.

pub async fn append_to_new_stream_with_no_stream(store: Arc<dyn EventStore>) {
    let events = new_events("first", 2);
    let outcome = append_ok(&*store, "account-1", ExpectedVersion::NoStream, events.clone()).await;
    let stored = read_forwards(&*store, "account-1").await;
    assert_eq!(stored.len(), 2);
    assert_positions(&*store, &stored, 1);
    assert_eq!(
        outcome,
        AppendOutcome {
            stream: "account-1".to_owned(),
            first_version: 0,
            last_version: 1,
            first_position: stored[0].position,
            last_position: stored[1].position,
            deduplicated: false,
        }
    );
    for (version, (s, e)) in stored.iter().zip(&events).enumerate() {
        assert_stored_as_sent(s, e, "account-1", version as u64);
    }
    assert_eq!(store.stream_version("account-1").await.expect("stream_version failed"), Some(1));
    assert_eq!(store.head_position().await.expect("head_position failed"), stored[1].position);
    assert_eq!(read_everything(&*store).await, stored, "read_all and read_stream return the same events");
}

pub async fn append_with_exact_version(store: Arc<dyn EventStore>) {
    append_ok(&*store, "s", ExpectedVersion::NoStream, new_events("a", 1)).await;
    // Another stream in between, so that versions and positions differ.
    append_ok(&*store, "other", ExpectedVersion::NoStream, new_events("o", 1)).await;
    let second = new_events("b", 2);
    let outcome = append_ok(&*store, "s", ExpectedVersion::Exact(0), second.clone()).await;
    assert_eq!((outcome.first_version, outcome.last_version), (1, 2));
    assert!(!outcome.deduplicated);
    let third = append_ok(&*store, "s", ExpectedVersion::Exact(2), new_events("c", 1)).await;
    assert_eq!((third.first_version, third.last_version), (3, 3));
    let stored = read_forwards(&*store, "s").await;
    assert_eq!(stored.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let positions: Vec<u64> = stored.iter().map(|e| e.position).collect();
    assert_eq!((outcome.first_position, outcome.last_position), (positions[1], positions[2]));
    assert_eq!((third.first_position, third.last_position), (positions[3], positions[3]));
    let all = read_everything(&*store).await;
    assert_positions(&*store, &all, 1);
    assert_eq!(
        all.iter().map(|e| (e.stream.as_str(), e.position)).collect::<Vec<_>>(),
        vec![
            ("s", positions[0]),
            ("other", all[1].position),
            ("s", positions[1]),
            ("s", positions[2]),
            ("s", positions[3])
        ],
        "the other stream's event sits between versions 0 and 1 of `s`"
    );
    if store.capabilities().gapless_positions {
        assert_eq!(positions, vec![1, 3, 4, 5]);
    }
    assert_stored_as_sent(&stored[1], &second[0], "s", 1);
    assert_stored_as_sent(&stored[2], &second[1], "s", 2);
}

fn assert_conflict(
    result: Result<AppendOutcome, StoreError>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(StoreError::Conflict { stream: s, expected: e, actual: a }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict details");
        }
        other => {
            panic!("expected a conflict on `{stream}` ({expected} vs {actual:?}), got {other:?}")
        }
    }
}

pub async fn conflict_when_no_stream_expected_but_stream_exists(store: Arc<dyn EventStore>) {
    append_ok(&*store, "s", ExpectedVersion::NoStream, new_events("a", 3)).await;
    let result = store.append(stream_append("s", ExpectedVersion::NoStream, new_events("b", 1))).await;
    assert_conflict(result, "s", ExpectedVersion::NoStream, Some(2));
    assert_nothing_written(&*store, 3, "a conflicting append").await;
}

pub async fn conflict_when_exact_version_is_wrong(store: Arc<dyn EventStore>) {
    append_ok(&*store, "s", ExpectedVersion::NoStream, new_events("a", 3)).await;
    for wrong in [0, 1, 3, 5] {
        let result = store.append(stream_append("s", ExpectedVersion::Exact(wrong), new_events("b", 1))).await;
        assert_conflict(result, "s", ExpectedVersion::Exact(wrong), Some(2));
    }
    assert_nothing_written(&*store, 3, "a conflicting append").await;
    assert_eq!(store.stream_version("s").await.expect("stream_version failed"), Some(2));
}

pub async fn conflict_when_exact_version_on_missing_stream(store: Arc<dyn EventStore>) {
    let result = store.append(stream_append("missing", ExpectedVersion::Exact(0), new_events("a", 1))).await;
    assert_conflict(result, "missing", ExpectedVersion::Exact(0), None);
    assert_eq!(store.stream_version("missing").await.expect("stream_version failed"), None);
    assert_nothing_written(&*store, 0, "a conflicting append").await;
}

pub async fn append_many_is_atomic(store: Arc<dyn EventStore>) {
    append_ok(&*store, "existing", ExpectedVersion::NoStream, new_events("e", 1)).await;
    if !atomic_across_streams(&*store) {
        return append_many_over_streams_is_refused(store).await;
    }
    let result = store
        .append_many(vec![
            stream_append("fresh", ExpectedVersion::NoStream, new_events("f", 2)),
            stream_append("existing", ExpectedVersion::Exact(3), new_events("x", 1)),
        ])
        .await;
    match result {
        Err(StoreError::Conflict { stream, expected, actual }) => {
            assert_eq!((stream.as_str(), expected, actual), ("existing", ExpectedVersion::Exact(3), Some(0)));
        }
        other => panic!("expected the second stream to conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version("fresh").await.expect("stream_version failed"), None, "first stream written");
    assert_nothing_written(&*store, 1, "a batch with one conflicting stream").await;

    // The same batch with the right expectation goes in whole, in order.
    let outcomes = store
        .append_many(vec![
            stream_append("fresh", ExpectedVersion::NoStream, new_events("f", 2)),
            stream_append("existing", ExpectedVersion::Exact(0), new_events("x", 1)),
        ])
        .await
        .expect("appending a valid batch failed");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].stream, "fresh");
    assert_eq!((outcomes[0].first_position, outcomes[0].last_position), (2, 3));
    assert_eq!(outcomes[1].stream, "existing");
    assert_eq!((outcomes[1].first_version, outcomes[1].first_position), (1, 4));
    assert_eq!(store.head_position().await.expect("head_position failed"), 4);
}

/// The weaker promise of a store that appends one stream at a time: a call
/// naming several streams is refused whole, whether or not its expectations
/// hold, and nothing of it is written; the same history then goes in one
/// stream at a time, each atomic, in order.
async fn append_many_over_streams_is_refused(store: Arc<dyn EventStore>) {
    let conflicting = vec![
        stream_append("fresh", ExpectedVersion::NoStream, new_events("f", 2)),
        stream_append("existing", ExpectedVersion::Exact(3), new_events("x", 1)),
    ];
    assert_unsupported(store.append_many(conflicting).await, "a batch over two streams, one conflicting");
    let valid = vec![
        stream_append("fresh", ExpectedVersion::NoStream, new_events("f", 2)),
        stream_append("existing", ExpectedVersion::Exact(0), new_events("x", 1)),
    ];
    assert_unsupported(store.append_many(valid.clone()).await, "a valid batch over two streams");
    assert_eq!(store.stream_version("fresh").await.expect("stream_version failed"), None, "first stream written");
    assert_nothing_written(&*store, 1, "a refused batch").await;

    let outcomes = append_streams(&*store, valid).await;
    assert_eq!((outcomes[0].stream.as_str(), outcomes[0].first_version, outcomes[0].last_version), ("fresh", 0, 1));
    assert_eq!((outcomes[1].stream.as_str(), outcomes[1].first_version), ("existing", 1));
    let all = read_everything(&*store).await;
    assert_positions(&*store, &all, 1);
    let streams: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, vec!["existing", "fresh", "fresh", "existing"]);
    assert_eq!((outcomes[0].first_position, outcomes[0].last_position), (all[1].position, all[2].position));
    assert_eq!(outcomes[1].first_position, all[3].position);
    assert_eq!(store.head_position().await.expect("head_position failed"), all[3].position);
}

/// One call may carry several appends to the same stream (one per
/// command, each with its own command id): each expectation sees the
/// appends before it in the same call, and the whole call stays atomic.
pub async fn one_stream_twice_in_one_call_chains_expectations(store: Arc<dyn EventStore>) {
    let first = with_command(new_events("a", 2), Uuid::from_u128(1));
    let second = with_command(new_events("b", 1), Uuid::from_u128(2));
    let outcomes = store
        .append_many(vec![
            stream_append("ws", ExpectedVersion::NoStream, first),
            stream_append("ws", ExpectedVersion::Exact(1), second),
        ])
        .await
        .expect("two appends to one stream in one call failed");
    assert_eq!((outcomes[0].first_version, outcomes[0].last_version), (0, 1));
    assert_eq!((outcomes[1].first_version, outcomes[1].last_version), (2, 2));
    let positions = positions_of(&*store, "ws").await;
    assert_eq!((outcomes[0].first_position, outcomes[0].last_position), (positions[0], positions[1]));
    assert_eq!((outcomes[1].first_position, outcomes[1].last_position), (positions[2], positions[2]));
    let second_outcome = store.command_outcome(Uuid::from_u128(2)).await.expect("command_outcome failed");
    assert_eq!(second_outcome.map(|o| (o.first_version, o.last_position)), Some((2, positions[2])));
    if store.capabilities().gapless_positions {
        assert_eq!(positions, vec![1, 2, 3]);
    }

    // A later append that expects the state before the earlier one conflicts,
    // and then the earlier one is not written either.
    let result = store
        .append_many(vec![
            stream_append("ws", ExpectedVersion::Exact(2), with_command(new_events("c", 1), Uuid::from_u128(3))),
            stream_append("ws", ExpectedVersion::Exact(2), with_command(new_events("d", 1), Uuid::from_u128(4))),
        ])
        .await;
    match result {
        Err(StoreError::Conflict { stream, expected, actual }) => {
            assert_eq!((stream.as_str(), expected, actual), ("ws", ExpectedVersion::Exact(2), Some(3)));
        }
        other => panic!("expected the second append to see the first, got {other:?}"),
    }
    assert_nothing_written(&*store, 3, "a call whose second append conflicts with its first").await;
}

// ---------------------------------------------------------------------------
// Idempotency.

pub async fn retry_by_command_id_is_deduplicated(store: Arc<dyn EventStore>) {
    append_ok(&*store, "before", ExpectedVersion::NoStream, new_events("b", 1)).await;
    let command_id = Uuid::now_v7();
    let events = with_command(new_events("cmd", 2), command_id);
    let original = append_ok(&*store, "s", ExpectedVersion::NoStream, events.clone()).await;
    assert!(!original.deduplicated);
    let deduplicated = AppendOutcome { deduplicated: true, ..original.clone() };

    // The very same request again: its expectation no longer holds, and that
    // must not matter.
    let retry = append_ok(&*store, "s", ExpectedVersion::NoStream, events).await;
    assert_eq!(retry, deduplicated);
    // A retry that rebuilt its events (new ids) is still the same command.
    let rebuilt = with_command(new_events("cmd-again", 3), command_id);
    let retry = append_ok(&*store, "s", ExpectedVersion::Exact(41), rebuilt).await;
    assert_eq!(retry, deduplicated);
    assert_nothing_written(&*store, 3, "a retried command").await;

    assert_eq!(store.command_outcome(command_id).await.expect("command_outcome failed"), Some(original.clone()));
    assert_eq!(store.command_outcome(Uuid::now_v7()).await.expect("command_outcome failed"), None);

    // A retry inside a batch is answered on its own while the rest is written.
    let outcomes = append_streams(
        &*store,
        vec![
            stream_append("s", ExpectedVersion::NoStream, with_command(new_events("cmd", 2), command_id)),
            stream_append("next", ExpectedVersion::NoStream, new_events("n", 1)),
        ],
    )
    .await;
    assert_eq!(outcomes[0], deduplicated);
    let next = positions_of(&*store, "next").await;
    assert_eq!((outcomes[1].first_position, outcomes[1].deduplicated), (next[0], false));
    assert!(next[0] > original.last_position, "the new event goes after the command's");
    if store.capabilities().gapless_positions {
        assert_eq!(next[0], 4);
    }
}

pub async fn retry_by_event_ids_is_deduplicated(store: Arc<dyn EventStore>) {
    append_ok(&*store, "before", ExpectedVersion::NoStream, new_events("b", 1)).await;
    let events = new_events("ids", 3);
    let original = append_ok(&*store, "s", ExpectedVersion::NoStream, events.clone()).await;
    let retry = append_ok(&*store, "s", ExpectedVersion::NoStream, events.clone()).await;
    assert_eq!(retry, AppendOutcome { deduplicated: true, ..original.clone() });
    // The tail of the same events is found where it was stored.
    let tail = append_ok(&*store, "s", ExpectedVersion::Exact(0), events[1..].to_vec()).await;
    let positions = positions_of(&*store, "s").await;
    assert_eq!(
        tail,
        AppendOutcome {
            stream: "s".to_owned(),
            first_version: 1,
            last_version: 2,
            first_position: positions[1],
            last_position: positions[2],
            deduplicated: true,
        }
    );
    if store.capabilities().gapless_positions {
        assert_eq!(positions, vec![2, 3, 4]);
    }
    assert_nothing_written(&*store, 4, "a retry of stored events").await;
}

fn assert_duplicate(result: Result<AppendOutcome, StoreError>, id: Uuid, stream: &str, stream_version: u64) {
    match result {
        Err(StoreError::DuplicateEventId { id: i, stream: s, stream_version: v }) => {
            assert_eq!((i, s.as_str(), v), (id, stream, stream_version), "duplicate event id details");
        }
        other => panic!("expected DuplicateEventId for {id}, got {other:?}"),
    }
}

pub async fn partial_duplicate_event_ids_are_refused(store: Arc<dyn EventStore>) {
    let stored = new_events("s", 2);
    append_ok(&*store, "s", ExpectedVersion::NoStream, stored.clone()).await;
    let fresh = new_event(r#"{"fresh":true}"#);

    // Where the expectation puts them, stored ids are found by every store.
    let lined_up = vec![stored[1].clone(), fresh.clone()];
    let result = store.append(stream_append("s", ExpectedVersion::Exact(0), lined_up)).await;
    assert_duplicate(result, stored[1].id, "s", 1);
    let lined_up = vec![fresh.clone(), stored[0].clone()];
    let result = store.append(stream_append("s", ExpectedVersion::NoStream, lined_up)).await;
    assert_duplicate(result, stored[0].id, "s", 0);
    let swapped = vec![stored[1].clone(), stored[0].clone()];
    let result = store.append(stream_append("s", ExpectedVersion::NoStream, swapped)).await;
    assert_duplicate(result, stored[1].id, "s", 1);
    if !finds_event_ids_in_any_stream(&*store) {
        assert_nothing_written(&*store, 2, "an append with duplicate event ids").await;
        return;
    }

    let some_stored = vec![stored[1].clone(), fresh.clone()];
    let result = store.append(stream_append("s", ExpectedVersion::Exact(1), some_stored)).await;
    assert_duplicate(result, stored[1].id, "s", 1);

    let new_first = vec![fresh.clone(), stored[0].clone()];
    let result = store.append(stream_append("s", ExpectedVersion::Exact(1), new_first)).await;
    assert_duplicate(result, stored[0].id, "s", 0);

    let out_of_order = vec![stored[1].clone(), stored[0].clone()];
    let result = store.append(stream_append("s", ExpectedVersion::Exact(1), out_of_order)).await;
    assert_duplicate(result, stored[1].id, "s", 1);

    let elsewhere = vec![stored[0].clone()];
    let result = store.append(stream_append("t", ExpectedVersion::NoStream, elsewhere)).await;
    assert_duplicate(result, stored[0].id, "s", 0);

    assert_nothing_written(&*store, 2, "an append with duplicate event ids").await;
    assert_eq!(store.stream_version("t").await.expect("stream_version failed"), None);
}

pub async fn command_id_reused_for_another_stream_is_refused(store: Arc<dyn EventStore>) {
    let command_id = Uuid::now_v7();
    append_ok(&*store, "s", ExpectedVersion::NoStream, with_command(new_events("s", 1), command_id)).await;
    let result =
        store.append(stream_append("t", ExpectedVersion::NoStream, with_command(new_events("t", 1), command_id))).await;
    match result {
        Err(StoreError::CommandIdReused { command_id: c, stream }) => {
            assert_eq!((c, stream.as_str()), (command_id, "s"))
        }
        other => panic!("expected CommandIdReused naming stream `s`, got {other:?}"),
    }

    // One command id belongs to one stream append, within a batch as well.
    let shared = Uuid::now_v7();
    if !atomic_across_streams(&*store) {
        let batch = vec![
            stream_append("x", ExpectedVersion::NoStream, with_command(new_events("x", 1), shared)),
            stream_append("y", ExpectedVersion::NoStream, with_command(new_events("y", 1), shared)),
        ];
        assert_unsupported(store.append_many(batch).await, "a batch over two streams sharing a command id");
        assert_nothing_written(&*store, 1, "a refused batch").await;
        append_ok(&*store, "x", ExpectedVersion::NoStream, with_command(new_events("x", 1), shared)).await;
        let result =
            store.append(stream_append("y", ExpectedVersion::NoStream, with_command(new_events("y", 1), shared))).await;
        match result {
            Err(StoreError::CommandIdReused { command_id: c, stream }) => {
                assert_eq!((c, stream.as_str()), (shared, "x"))
            }
            other => panic!("expected CommandIdReused naming stream `x`, got {other:?}"),
        }
        assert_nothing_written(&*store, 2, "a reused command id").await;
        return;
    }
    let result = store
        .append_many(vec![
            stream_append("x", ExpectedVersion::NoStream, with_command(new_events("x", 1), shared)),
            stream_append("y", ExpectedVersion::NoStream, with_command(new_events("y", 1), shared)),
        ])
        .await;
    match result {
        Err(StoreError::CommandIdReused { command_id: c, stream }) => assert_eq!((c, stream.as_str()), (shared, "x")),
        other => panic!("expected CommandIdReused naming stream `x`, got {other:?}"),
    }
    assert_nothing_written(&*store, 1, "a reused command id").await;
}

// ---------------------------------------------------------------------------
// Reading.

fn versions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.stream_version).collect()
}

pub async fn read_stream_forwards_and_backwards(store: Arc<dyn EventStore>) {
    // Interleave another stream so that positions and versions differ.
    for n in 0..10u64 {
        append_ok(&*store, "s", ExpectedVersion::from_current(n.checked_sub(1)), new_events("s", 1)).await;
        append_ok(&*store, "noise", ExpectedVersion::from_current(n.checked_sub(1)), new_events("noise", 1)).await;
    }
    let read = |from: u64, direction: Direction, max_count: usize| {
        let store = store.clone();
        async move { store.read_stream("s", from, direction, max_count).await.expect("read_stream failed") }
    };
    let page = read(3, Direction::Forwards, 4).await;
    assert_eq!(versions(&page), vec![3, 4, 5, 6]);
    assert!(page.iter().all(|e| e.stream == "s"));
    let all = read_everything(&*store).await;
    assert_eq!(page[0].position, all[6].position, "version 3 of `s` is the 7th event");
    assert_eq!(page, all.iter().filter(|e| e.stream == "s").skip(3).take(4).cloned().collect::<Vec<_>>());
    assert_eq!(versions(&read(8, Direction::Forwards, 100).await), vec![8, 9]);
    assert!(read(10, Direction::Forwards, 100).await.is_empty(), "reading past the end");
    assert!(read(0, Direction::Forwards, 0).await.is_empty(), "max_count 0");

    assert_eq!(versions(&read(u64::MAX, Direction::Backwards, 3).await), vec![9, 8, 7]);
    assert_eq!(versions(&read(5, Direction::Backwards, 100).await), vec![5, 4, 3, 2, 1, 0]);
    assert_eq!(versions(&read(5, Direction::Backwards, 2).await), vec![5, 4]);
    assert_eq!(versions(&read(0, Direction::Backwards, 5).await), vec![0]);
    assert_eq!(versions(&read(0, Direction::Forwards, usize::MAX).await), (0..10).collect::<Vec<_>>());

    for direction in [Direction::Forwards, Direction::Backwards] {
        let unknown = store.read_stream("unknown", 0, direction, 10).await.expect("read_stream failed");
        assert!(unknown.is_empty(), "an unknown stream reads as empty");
    }
}

pub async fn read_all_pages_with_gapless_positions(store: Arc<dyn EventStore>) {
    assert!(store.read_all(0, 10).await.expect("read_all failed").is_empty());
    append_ok(&*store, "a", ExpectedVersion::NoStream, new_events("a", 3)).await;
    append_streams(
        &*store,
        vec![
            stream_append("b", ExpectedVersion::NoStream, new_events("b", 2)),
            stream_append("c", ExpectedVersion::NoStream, new_events("c", 1)),
        ],
    )
    .await;
    append_ok(&*store, "a", ExpectedVersion::Exact(2), new_events("a", 1)).await;

    let all = store.read_all(0, 100).await.expect("read_all failed");
    assert_eq!(all.len(), 7);
    assert_positions(&*store, &all, 1);
    let streams: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, vec!["a", "a", "a", "b", "b", "c", "a"]);

    // Pages start after the position they are given, whatever the spacing.
    let page = store.read_all(all[1].position, 3).await.expect("read_all failed");
    assert_eq!(page, all[2..5].to_vec(), "a page is the same events as the whole read");
    if store.capabilities().gapless_positions {
        assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(store.read_all(1_000, 100).await.expect("read_all failed").is_empty());
    }
    assert_eq!(store.read_all(all[5].position, 100).await.expect("read_all failed"), all[6..].to_vec());
    assert!(store.read_all(all[6].position, 100).await.expect("read_all failed").is_empty());
    assert!(store.read_all(u64::MAX, 100).await.expect("read_all failed").is_empty());
    assert!(store.read_all(0, 0).await.expect("read_all failed").is_empty());
}

pub async fn stream_version_and_head_position(store: Arc<dyn EventStore>) {
    let mut watch = store.head_watch();
    assert_eq!(store.head_position().await.expect("head_position failed"), 0);
    assert_eq!(store.stream_version("s").await.expect("stream_version failed"), None);
    append_ok(&*store, "s", ExpectedVersion::NoStream, new_events("s", 3)).await;
    append_ok(&*store, "t", ExpectedVersion::NoStream, new_events("t", 2)).await;
    assert_eq!(store.stream_version("s").await.expect("stream_version failed"), Some(2));
    assert_eq!(store.stream_version("t").await.expect("stream_version failed"), Some(1));
    assert_eq!(store.stream_version("u").await.expect("stream_version failed"), None);
    let last = read_everything(&*store).await.pop().expect("the log is empty after appends").position;
    assert_eq!(store.head_position().await.expect("head_position failed"), last);
    if store.capabilities().gapless_positions {
        assert_eq!(last, 5);
    }
    assert!(watch.has_changed().expect("the head watch closed while the store is alive"), "head_watch did not move");
    assert_eq!(*watch.borrow_and_update(), last, "head_watch carries the head position");
}

pub async fn recorded_at_never_decreases_and_is_truncated_to_micros(
    store: Arc<dyn EventStore>,
    clock: Arc<ManualClock>,
) {
    let start = manual_clock_start();
    append_ok(&*store, "s", ExpectedVersion::NoStream, new_events("a", 2)).await;
    clock.set(start - Duration::hours(1));
    append_ok(&*store, "s", ExpectedVersion::Exact(1), new_events("b", 1)).await;
    let later = start + Duration::seconds(1) + Duration::nanoseconds(999);
    clock.set(later);
    append_ok(&*store, "t", ExpectedVersion::NoStream, new_events("c", 1)).await;
    clock.set(start);
    append_ok(&*store, "t", ExpectedVersion::Exact(0), new_events("d", 1)).await;

    let all = read_everything(&*store).await;
    let recorded: Vec<DateTime<Utc>> = all.iter().map(|e| e.recorded_at).collect();
    let first = truncate_to_micros(start);
    assert_eq!(recorded, vec![first, first, first, truncate_to_micros(later), truncate_to_micros(later)]);
    assert_eq!(first.timestamp_subsec_nanos() % 1_000, 0, "recorded_at is truncated to microseconds");
    assert!(recorded.windows(2).all(|w| w[0] <= w[1]), "recorded_at went backwards: {recorded:?}");
}

// ---------------------------------------------------------------------------
// Subscriptions.

pub async fn subscription_catches_up_then_follows_live(store: Arc<dyn EventStore>) {
    let early = new_events("early", 3);
    append_ok(&*store, "s", ExpectedVersion::NoStream, early.clone()).await;
    let mut subscription = Subscription::new(store.clone(), 0);
    let mut caught_up = Vec::new();
    for (version, sent) in early.iter().enumerate() {
        let event = tokio::time::timeout(PATIENCE, subscription.next())
            .await
            .expect("catching up timed out")
            .expect("catching up failed");
        assert_stored_as_sent(&event, sent, "s", version as u64);
        caught_up.push(event.position);
    }
    assert_eq!(caught_up, positions_of(&*store, "s").await, "catching up yields the stored positions");
    assert_eq!(subscription.position(), caught_up[2]);
    if store.capabilities().gapless_positions {
        assert_eq!(caught_up, vec![1, 2, 3]);
    }

    let late = new_events("late", 2);
    let writer = {
        let store = store.clone();
        let late = late.clone();
        tokio::spawn(async move {
            // Let the subscription start waiting first, so that it is woken
            // by the append rather than finding it on its first read.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            for (n, event) in late.into_iter().enumerate() {
                let expected = ExpectedVersion::Exact(2 + n as u64);
                store.append(stream_append("s", expected, vec![event])).await.expect("live append failed");
            }
        })
    };
    let mut live = Vec::new();
    for (n, sent) in late.iter().enumerate() {
        let event = tokio::time::timeout(PATIENCE, subscription.next())
            .await
            .expect("waiting for a live event timed out")
            .expect("following live failed");
        assert_stored_as_sent(&event, sent, "s", 3 + n as u64);
        live.push(event.position);
    }
    tokio::time::timeout(PATIENCE, writer).await.expect("the writer task hung").expect("the writer task panicked");
    assert_eq!(live, positions_of(&*store, "s").await[3..].to_vec(), "live events carry the stored positions");
    assert_eq!(subscription.position(), live[1]);
    if store.capabilities().gapless_positions {
        assert_eq!(live, vec![4, 5]);
    }
}

// ---------------------------------------------------------------------------
// Sizes and content.

pub async fn ten_thousand_events_in_one_append(store: Arc<dyn EventStore>) {
    let events = new_events("bulk", MAX_EVENTS_PER_APPEND);
    let outcome = append_ok(&*store, "bulk", ExpectedVersion::NoStream, events.clone()).await;
    let last = MAX_EVENTS_PER_APPEND as u64;
    assert_eq!((outcome.first_version, outcome.last_version), (0, last - 1));

    let stored = store.read_stream("bulk", 0, Direction::Forwards, usize::MAX).await.expect("read_stream failed");
    assert_eq!(stored.len(), MAX_EVENTS_PER_APPEND);
    assert_positions(&*store, &stored, 1);
    assert_eq!((outcome.first_position, outcome.last_position), (stored[0].position, stored[9_999].position));
    for (version, (s, e)) in stored.iter().zip(&events).enumerate() {
        assert_eq!((s.id, s.stream_version), (e.id, version as u64));
    }
    assert_stored_as_sent(&stored[9_999], &events[9_999], "bulk", 9_999);

    // Retrying the whole batch by its ids finds it all.
    let retry = append_ok(&*store, "bulk", ExpectedVersion::NoStream, events).await;
    assert_eq!(retry, AppendOutcome { deduplicated: true, ..outcome });

    // Reads are capped whatever the caller asks for.
    append_ok(&*store, "one-more", ExpectedVersion::NoStream, new_events("more", 1)).await;
    let all = store.read_all(0, usize::MAX).await.expect("read_all failed");
    assert_eq!(all.len(), MAX_READ_COUNT, "read_all returns at most MAX_READ_COUNT events");
    assert_positions(&*store, &all, 1);
    assert_eq!(all, stored, "read_all and read_stream return the same events");
    assert_eq!(store.read_all(outcome.last_position, 10).await.expect("read_all failed")[0].stream, "one-more");
}

pub async fn unicode_and_large_payload_round_trip(store: Arc<dyn EventStore>) {
    let stream = "licence-Zoë-東京-🚀";
    let mut unicode = new_event(r#"{"name":"Zoë 東京 🚀","note":"ñandú \"quoted\" \\ back\nslash","emoji":"👩🏽‍💻"}"#);
    unicode.event_type = "LicenceÜbertragen".into();
    unicode.metadata.actor = "José Ñúñez-Ångström".into();
    unicode.metadata.channel = "portail-réglé".into();

    // About 512 KiB of mixed-width text, escapes included.
    let chunk = "Zoë 東京 🚀 \\\"x\\\" ";
    let blob: String = chunk.repeat(512 * 1024 / chunk.len());
    let large = new_event(&format!(r#"{{"blob":"{blob}","n":1}}"#));
    assert!(large.payload.len() >= 500 * 1024, "the large payload is smaller than intended");

    append_ok(&*store, stream, ExpectedVersion::NoStream, vec![unicode.clone(), large.clone()]).await;
    let stored = read_forwards(&*store, stream).await;
    assert_eq!(stored.len(), 2);
    assert_stored_as_sent(&stored[0], &unicode, stream, 0);
    assert_stored_as_sent(&stored[1], &large, stream, 1);
    assert_eq!(store.stream_version(stream).await.expect("stream_version failed"), Some(1));
    let all = store.read_all(0, 10).await.expect("read_all failed");
    assert_eq!(all, stored, "read_all and read_stream return the same events");
    let verify = store.verify().await.expect("verify failed");
    assert!(verify.is_intact(), "verify found a broken link: {:?}", verify.first_broken);
}

pub async fn invalid_appends_are_refused(store: Arc<dyn EventStore>) {
    let invalid = |result: Result<Vec<AppendOutcome>, StoreError>, what: &str| match result {
        Err(StoreError::InvalidAppend(reason)) => {
            assert!(!reason.is_empty(), "{what}: an empty reason")
        }
        other => panic!("{what}: expected InvalidAppend, got {other:?}"),
    };
    let one = |stream: &str, events: Vec<NewEvent>| vec![stream_append(stream, ExpectedVersion::NoStream, events)];

    invalid(store.append_many(one("", new_events("e", 1))).await, "an empty stream name");
    invalid(store.append_many(one("s", Vec::new())).await, "no events");
    invalid(store.append_many(one("s", vec![new_event("[1,2]")])).await, "an array payload");
    invalid(store.append_many(one("s", vec![new_event("\"text\"")])).await, "a string payload");
    invalid(store.append_many(one("s", vec![new_event("{not json")])).await, "a payload that is not JSON");
    invalid(store.append_many(one("s", new_events("many", MAX_EVENTS_PER_APPEND + 1))).await, "too many events");
    let split = vec![
        stream_append("a", ExpectedVersion::NoStream, new_events("a", MAX_EVENTS_PER_APPEND / 2 + 1)),
        stream_append("b", ExpectedVersion::NoStream, new_events("b", MAX_EVENTS_PER_APPEND / 2)),
    ];
    invalid(store.append_many(split).await, "too many events over two streams");
    // A valid stream followed by an invalid one: nothing of either is written.
    let mixed = vec![
        stream_append("valid", ExpectedVersion::NoStream, new_events("v", 1)),
        stream_append("invalid", ExpectedVersion::NoStream, vec![new_event("[]")]),
    ];
    invalid(store.append_many(mixed).await, "a batch with one invalid stream");
    assert_nothing_written(&*store, 0, "an invalid append").await;
}

// ---------------------------------------------------------------------------
// The hash chain.

pub async fn verify_reports_an_intact_log(store: Arc<dyn EventStore>) {
    let empty = store.verify().await.expect("verify failed");
    assert_eq!((empty.checked, empty.is_intact()), (0, true), "an empty log verifies");
    append_ok(&*store, "a", ExpectedVersion::NoStream, new_events("a", 4)).await;
    append_streams(
        &*store,
        vec![
            stream_append("b", ExpectedVersion::NoStream, new_events("b", 3)),
            stream_append("a", ExpectedVersion::Exact(3), new_events("a", 2)),
        ],
    )
    .await;
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "verify found a broken link in an untouched log: {:?}", report.first_broken);
    assert_eq!(report.checked, 9, "verify counts every event");

    // The stored hashes are the chain's links, from the genesis link on:
    // one chain over the log, or one per stream, as the store declares.
    let all = read_everything(&*store).await;
    match store.capabilities().chain {
        ChainScope::GlobalLog => {
            let mut previous = crate::chain::GENESIS;
            for e in &all {
                assert_eq!(e.hash, crate::chain::link_hex(&previous, e), "hash of position {}", e.position);
                previous = crate::chain::link(&previous, e);
            }
        }
        ChainScope::PerStream => {
            let mut previous = std::collections::HashMap::new();
            for e in &all {
                let before = previous.get(&e.stream).copied().unwrap_or(crate::chain::GENESIS);
                let expected = crate::chain::stream_link_hex(&before, e);
                assert_eq!(e.hash, expected, "hash of version {} of `{}`", e.stream_version, e.stream);
                previous.insert(e.stream.clone(), crate::chain::stream_link(&before, e));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Import.

/// An event as an export from another store would carry it: positions and
/// hashes of that store, which the importer replaces.
fn exported(stream: &str, stream_version: u64, recorded_at: DateTime<Utc>, command_id: Option<Uuid>) -> StoredEvent {
    StoredEvent {
        position: 1_000 + stream_version,
        id: Uuid::now_v7(),
        stream: stream.into(),
        stream_version,
        event_type: "Exported".into(),
        schema_version: 3,
        recorded_at,
        metadata: EventMetadata {
            effective_at: instant(1_600_000_000, 250_000),
            actor: "Zoë the importer".into(),
            channel: "cli".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            command_id,
        },
        payload: format!(r#"{{"stream":"{stream}","version":{stream_version}}}"#),
        hash: "not a hash of this store".to_owned(),
    }
}

fn export_fixture(command_id: Uuid) -> Vec<StoredEvent> {
    let t = |s: i64| instant(1_690_000_000 + s, 123_000);
    vec![
        exported("u-1", 0, t(0), None),
        exported("u-2", 0, t(1), Some(Uuid::now_v7())),
        exported("u-1", 1, t(1), Some(command_id)),
        exported("u-1", 2, t(1), Some(command_id)),
        exported("u-3", 0, t(5), None),
        exported("u-2", 1, t(6), None),
        exported("u-1", 3, t(9), None),
        exported("u-3", 1, t(9), None),
    ]
}

fn assert_imported_as_exported(store: &dyn EventStore, stored: &[StoredEvent], exported: &[StoredEvent]) {
    assert_eq!(stored.len(), exported.len());
    assert_positions(store, stored, 1);
    for (s, e) in stored.iter().zip(exported) {
        assert_eq!(
            (s.id, &s.stream, s.stream_version, &s.event_type, s.schema_version),
            (e.id, &e.stream, e.stream_version, &e.event_type, e.schema_version),
            "identity of imported event {}",
            e.id
        );
        assert_eq!(s.recorded_at, e.recorded_at, "recorded_at of imported event {}", e.id);
        assert_eq!(s.metadata, e.metadata, "metadata of imported event {}", e.id);
        assert_eq!(s.payload, e.payload, "payload of imported event {}", e.id);
    }
}

pub async fn import_keeps_fields_and_resumes(store: Arc<dyn EventStore>) {
    let command_id = Uuid::now_v7();
    let export = export_fixture(command_id);
    let first = store.import(export[..5].to_vec()).await.expect("importing the first part failed");
    assert_eq!(first, ImportOutcome { imported: 5, skipped: 0 });
    // Resuming an interrupted import: the part already stored is skipped.
    let rest = store.import(export.clone()).await.expect("resuming the import failed");
    assert_eq!(rest, ImportOutcome { imported: 3, skipped: 5 });
    let again = store.import(export.clone()).await.expect("importing again failed");
    assert_eq!(again, ImportOutcome { imported: 0, skipped: 8 });

    let stored = read_everything(&*store).await;
    assert_imported_as_exported(&*store, &stored, &export);
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "imported events must be re-chained: {:?}", report.first_broken);
    assert_eq!(report.checked, 8);
    assert_eq!(store.stream_version("u-1").await.expect("stream_version failed"), Some(3));
    assert_eq!(store.head_position().await.expect("head_position failed"), stored[7].position);

    // The imported command ids still make retries idempotent.
    let recorded = store.command_outcome(command_id).await.expect("command_outcome failed");
    let expected = AppendOutcome {
        stream: "u-1".to_owned(),
        first_version: 1,
        last_version: 2,
        first_position: stored[2].position,
        last_position: stored[3].position,
        deduplicated: false,
    };
    if store.capabilities().gapless_positions {
        assert_eq!((expected.first_position, expected.last_position), (3, 4));
    }
    assert_eq!(recorded, Some(expected.clone()));
    let retry =
        append_ok(&*store, "u-1", ExpectedVersion::Exact(1), with_command(new_events("r", 1), command_id)).await;
    assert_eq!(retry, AppendOutcome { deduplicated: true, ..expected });

    // Appends go on after the imported events, never earlier than them.
    let next = append_ok(&*store, "u-1", ExpectedVersion::Exact(3), new_events("next", 1)).await;
    assert_eq!(next.first_version, 4);
    assert!(next.first_position > stored[7].position, "an append goes after the imported events");
    if store.capabilities().gapless_positions {
        assert_eq!(next.first_position, 9);
    }
    let last = read_everything(&*store).await.pop().expect("the log is empty after an append");
    assert!(last.recorded_at >= export[7].recorded_at);
}

fn assert_invalid_import(result: Result<ImportOutcome, StoreError>, id: Uuid, what: &str) {
    match result {
        Err(StoreError::InvalidImport { id: i, reason }) => {
            assert_eq!(i, id, "{what}: the error names the wrong event ({reason})");
            assert!(!reason.is_empty(), "{what}: an empty reason");
        }
        other => panic!("{what}: expected InvalidImport for {id}, got {other:?}"),
    }
}

pub async fn import_refuses_events_that_do_not_fit(store: Arc<dyn EventStore>) {
    let t = |s: i64| instant(1_690_000_000 + s, 0);
    let start = exported("g", 0, t(10), None);
    let gap = exported("g", 2, t(11), None);
    let result = store.import(vec![start.clone(), gap.clone()]).await;
    assert_invalid_import(result, gap.id, "a version gap");
    assert_nothing_written(&*store, 0, "a refused import").await;

    let late_start = exported("late", 3, t(10), None);
    assert_invalid_import(store.import(vec![late_start.clone()]).await, late_start.id, "a stream not starting at 0");

    assert_eq!(store.import(vec![start.clone()]).await.expect("a valid import failed").imported, 1);
    let taken = exported("g", 0, t(12), None);
    assert_invalid_import(store.import(vec![taken.clone()]).await, taken.id, "a version already taken");

    let earlier = exported("h", 0, t(9), None);
    assert_invalid_import(store.import(vec![earlier.clone()]).await, earlier.id, "recorded_at going backwards");

    if finds_event_ids_in_any_stream(&*store) {
        let mut moved = start.clone();
        moved.stream = "elsewhere".into();
        assert_invalid_import(store.import(vec![moved]).await, start.id, "an id stored in another stream");
    }

    let mut not_object = exported("j", 0, t(20), None);
    not_object.payload = "[1]".to_owned();
    assert_invalid_import(store.import(vec![not_object.clone()]).await, not_object.id, "an array payload");

    assert_nothing_written(&*store, 1, "a refused import").await;
}

// ---------------------------------------------------------------------------
// Checkpoints.

pub async fn checkpoints_save_load_overwrite_delete(store: Arc<dyn EventStore>) {
    assert_eq!(store.load_checkpoint("licences").await.expect("load_checkpoint failed"), None);
    let first = Checkpoint { position: 5, state: Some(r#"{"seats":{"Zoë":3}}"#.to_owned()) };
    store.save_checkpoint("licences", &first).await.expect("save_checkpoint failed");
    assert_eq!(store.load_checkpoint("licences").await.expect("load_checkpoint failed"), Some(first.clone()));

    let second = Checkpoint { position: 9, state: None };
    store.save_checkpoint("licences", &second).await.expect("overwriting a checkpoint failed");
    assert_eq!(store.load_checkpoint("licences").await.expect("load_checkpoint failed"), Some(second.clone()));

    let other = Checkpoint { position: 1, state: Some("{}".to_owned()) };
    store.save_checkpoint("invoices-東京", &other).await.expect("save_checkpoint failed");
    store.delete_checkpoint("licences").await.expect("delete_checkpoint failed");
    assert_eq!(store.load_checkpoint("licences").await.expect("load_checkpoint failed"), None);
    assert_eq!(store.load_checkpoint("invoices-東京").await.expect("load_checkpoint failed"), Some(other));
    store.delete_checkpoint("never-saved").await.expect("deleting a missing checkpoint must succeed");
    assert_eq!(store.head_position().await.expect("head_position failed"), 0, "checkpoints are not events");
}
