//! What only a file-backed store can get wrong: reopening, tampering with the
//! file behind the store's back, the group commit under concurrency, and the
//! schema version check.

use seatledger_store::conformance::{new_event, new_events, stream_append, with_command};
use seatledger_store::{
    AppendOutcome, Clock, Direction, EventStore, ExpectedVersion, StoreError, StoredEvent, SystemClock, MAX_READ_COUNT,
};
use seatledger_store_sqlite::{SqliteStore, SCHEMA_VERSION};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn open(path: &Path) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(path, clock()).expect("opening the sqlite store"))
}

async fn everything(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut all: Vec<StoredEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.position);
        let page = store.read_all(after, MAX_READ_COUNT).await.expect("read_all failed");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Append `count` single-event appends, spread over three streams, each
/// payload carrying its own number so that a test can find it in the file.
async fn append_numbered(store: &dyn EventStore, count: u64) {
    for n in 0..count {
        let stream = format!("seat-{}", n % 3);
        let current = store.stream_version(&stream).await.expect("stream_version failed");
        let event = new_event(&format!(r#"{{"n":{n},"note":"seat"}}"#));
        store
            .append(stream_append(&stream, ExpectedVersion::from_current(current), vec![event]))
            .await
            .expect("append failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_everything_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let before = {
        let store = open(&path);
        append_numbered(&*store, 10).await;
        store
            .save_checkpoint("licences", &seatledger_store::Checkpoint { position: 10, state: None })
            .await
            .expect("save_checkpoint failed");
        everything(&*store).await
    };
    assert_eq!(before.len(), 10);

    let store = open(&path);
    assert_eq!(store.head_position().await.expect("head_position failed"), 10);
    assert_eq!(*store.head_watch().borrow(), 10, "the head watch starts at the stored head");
    assert_eq!(everything(&*store).await, before, "reopening changed the stored events");
    assert_eq!(store.stream_version("seat-0").await.expect("stream_version failed"), Some(3));
    assert_eq!(store.load_checkpoint("licences").await.expect("load_checkpoint failed").map(|c| c.position), Some(10));

    let outcome = store
        .append(stream_append("seat-0", ExpectedVersion::Exact(3), new_events("after", 2)))
        .await
        .expect("appending after reopening failed");
    assert_eq!((outcome.first_position, outcome.last_position, outcome.first_version), (11, 12, 4));
    let after = everything(&*store).await;
    assert!(after[10].recorded_at >= before[9].recorded_at);
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "the chain broke across a reopen: {:?}", report.first_broken);
    assert_eq!(report.checked, 12);
}

/// Change the stored file directly, as an attacker with write access would.
fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("opening the file to tamper with it");
    let changed = conn.execute(sql, []).expect("tampering failed");
    assert_eq!(changed, 1, "the tampering statement changed {changed} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_tampered_payload() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    append_numbered(&*open(&path), 20).await;

    // One character of the payload of position 7 (its number 6 becomes 7),
    // still valid JSON, so only the chain can tell.
    tamper(&path, r#"UPDATE events SET payload = replace(payload, '"n":6,', '"n":7,') WHERE position = 7"#);

    let store = open(&path);
    let event = store.read_all(6, 1).await.expect("read_all failed").remove(0);
    assert_eq!(event.payload, r#"{"n":7,"note":"seat"}"#, "the tampering did not take");
    let report = store.verify().await.expect("verify failed");
    let broken = report.first_broken.expect("verify missed a tampered payload");
    assert_eq!(broken.position, 7);
    assert_eq!(broken.event_id, event.id);
    assert_eq!(report.checked, 6, "every event before the broken link is checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_tampered_hash() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    append_numbered(&*open(&path), 20).await;

    // A well-formed hash that is not the link: flip its first hex digit.
    tamper(
        &path,
        "UPDATE events SET hash = unhex((CASE substr(hex(hash), 1, 1) WHEN '0' THEN '1' ELSE '0' END) \
         || substr(hex(hash), 2)) WHERE position = 5",
    );

    let report = open(&path).verify().await.expect("verify failed");
    let broken = report.first_broken.expect("verify missed a tampered hash");
    assert_eq!((broken.position, broken.stream_version), (5, 1));
    assert_eq!(report.checked, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_is_refused_naming_its_position_and_column() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    append_numbered(&*open(&path), 5).await;

    tamper(&path, "UPDATE events SET correlation_id = X'c0ffee' WHERE position = 3");
    let store = open(&path);
    let error = store.read_all(0, 10).await.expect_err("a row whose correlation id is not a uuid was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(
        message.contains("correlation id of the event at position 3") && message.contains("3 bytes (c0ffee)"),
        "the message does not say which value of which event is damaged: {message}"
    );
    drop(store);

    tamper(&path, "UPDATE events SET correlation_id = randomblob(16), hash = X'00' WHERE position = 3");
    let error = open(&path).read_all(0, 10).await.expect_err("a row whose link is one byte was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(
        message.contains("the hash of the event at position 3 is stored as 1 byte (00), not a 32-byte link"),
        "the message does not name the value and the event: {message}"
    );

    // The table is STRICT, so SQLite itself refuses a value of the wrong
    // type; what it lets through is a value of the right type that is wrong.
    tamper(&path, "UPDATE events SET hash = randomblob(32), stream_version = -1 WHERE position = 3");
    let error = open(&path).read_all(2, 10).await.expect_err("a negative stream version was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(
        message.contains("the stream version of the event at position 3 is stored as -1"),
        "the message does not name the value and the event: {message}"
    );

    tamper(&path, "UPDATE events SET recorded_at_us = 9223372036854775807 WHERE position = 4");
    let error =
        open(&path).read_stream("seat-0", 1, Direction::Forwards, 10).await.expect_err("a time out of range was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(message.contains("recorded_at of the event at position 4"), "{message}");
}

/// What one racer saw.
#[derive(Debug)]
enum Attempt {
    Won(u64),
    Lost { expected: ExpectedVersion, actual: Option<u64> },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_under_concurrency() {
    const DISTINCT: usize = 64;
    const EVENTS_EACH: usize = 3;
    const RACERS: usize = 16;
    const ATTEMPTS_EACH: usize = 4;

    let dir = tempfile::tempdir().expect("creating a temp dir");
    let store = open(&dir.path().join("events.db"));
    let start = Arc::new(tokio::sync::Barrier::new(DISTINCT + RACERS));

    let mut distinct = Vec::new();
    for n in 0..DISTINCT {
        let (store, start) = (store.clone(), start.clone());
        distinct.push(tokio::spawn(async move {
            start.wait().await;
            let stream = format!("distinct-{n}");
            store.append(stream_append(&stream, ExpectedVersion::NoStream, new_events(&stream, EVENTS_EACH))).await
        }));
    }
    let mut racers = Vec::new();
    for n in 0..RACERS {
        let (store, start) = (store.clone(), start.clone());
        racers.push(tokio::spawn(async move {
            start.wait().await;
            let mut attempts = Vec::new();
            for _ in 0..ATTEMPTS_EACH {
                let current = store.stream_version("race").await.expect("stream_version failed");
                let expected = ExpectedVersion::from_current(current);
                let event = new_event(&format!(r#"{{"racer":{n}}}"#));
                match store.append(stream_append("race", expected, vec![event])).await {
                    Ok(outcome) => {
                        assert_eq!(outcome.first_version, expected.next_version(), "a win at an unexpected version");
                        attempts.push(Attempt::Won(outcome.first_version));
                    }
                    Err(StoreError::Conflict { stream, expected, actual }) => {
                        assert_eq!(stream, "race");
                        attempts.push(Attempt::Lost { expected, actual });
                    }
                    Err(other) => panic!("racer {n} got {other}"),
                }
            }
            attempts
        }));
    }

    let mut positions = BTreeSet::new();
    for task in distinct {
        let outcome = task.await.expect("an appending task panicked").expect("an append to a fresh stream failed");
        assert_eq!((outcome.first_version, outcome.last_version), (0, EVENTS_EACH as u64 - 1));
        assert_eq!(outcome.last_position - outcome.first_position, EVENTS_EACH as u64 - 1, "a batch was split");
        positions.extend(outcome.first_position..=outcome.last_position);
    }
    let mut won = Vec::new();
    let mut lost = 0;
    for task in racers {
        for attempt in task.await.expect("a racing task panicked") {
            match attempt {
                Attempt::Won(version) => won.push(version),
                Attempt::Lost { expected, actual } => {
                    assert!(
                        !expected.matches(actual),
                        "a conflict where the expectation held: {expected} vs {actual:?}"
                    );
                    lost += 1;
                }
            }
        }
    }
    won.sort_unstable();
    assert!(!won.is_empty(), "no racer ever won");
    assert_eq!(won, (0..won.len() as u64).collect::<Vec<_>>(), "wins must get distinct, contiguous versions");
    assert_eq!(won.len() + lost, RACERS * ATTEMPTS_EACH);
    assert_eq!(store.stream_version("race").await.expect("stream_version failed"), Some(won.len() as u64 - 1));

    let all = everything(&*store).await;
    let total = DISTINCT * EVENTS_EACH + won.len();
    assert_eq!(all.len(), total);
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "gaps in the log"
    );
    assert!(positions.iter().all(|p| all[*p as usize - 1].stream.starts_with("distinct-")));
    let race_versions: Vec<u64> = all.iter().filter(|e| e.stream == "race").map(|e| e.stream_version).collect();
    assert_eq!(race_versions, (0..won.len() as u64).collect::<Vec<_>>(), "the race stream is out of order in the log");
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "the chain broke under concurrency: {:?}", report.first_broken);
    assert_eq!(report.checked, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_busy_writer_share_one_commit() {
    const GOOD: usize = 40;
    const BAD: usize = 10;
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let sqlite = Arc::new(SqliteStore::open(&path, clock()).expect("opening the sqlite store"));
    let store: Arc<dyn EventStore> = sqlite.clone();
    store
        .append(stream_append("warm-up", ExpectedVersion::NoStream, new_events("w", 1)))
        .await
        .expect("warm-up failed");
    let before = sqlite.write_stats();

    // Another connection holds the write lock, so the writer stalls on its
    // first group and everything else queues up behind it.
    let blocker = rusqlite::Connection::open(&path).expect("opening a second connection");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("taking the write lock");
    let mut good = Vec::new();
    for n in 0..GOOD {
        let store = store.clone();
        good.push(tokio::spawn(async move {
            let stream = format!("good-{n}");
            store.append(stream_append(&stream, ExpectedVersion::NoStream, new_events(&stream, 1))).await
        }));
    }
    let mut bad = Vec::new();
    for n in 0..BAD {
        let store = store.clone();
        bad.push(tokio::spawn(async move {
            let stream = format!("bad-{n}");
            store.append(stream_append(&stream, ExpectedVersion::Exact(5), new_events(&stream, 1))).await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sqlite.write_stats(), before, "the writer committed while the file was locked");
    blocker.execute_batch("ROLLBACK").expect("releasing the write lock");

    for task in good {
        task.await.expect("an appending task panicked").expect("an append in the group failed");
    }
    for task in bad {
        match task.await.expect("an appending task panicked") {
            Err(StoreError::Conflict { actual: None, .. }) => {}
            other => panic!("expected a conflict for a missing stream, got {other:?}"),
        }
    }
    let after = sqlite.write_stats();
    assert_eq!(after.requests - before.requests, (GOOD + BAD) as u64);
    // The first request may have been taken alone before the lock stalled
    // it; everything queued behind it shares the next commit.
    assert!(
        after.commits - before.commits <= 2,
        "{} commits for {} requests",
        after.commits - before.commits,
        GOOD + BAD
    );
    assert_eq!(store.head_position().await.expect("head_position failed"), 1 + GOOD as u64);
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "a failed request in a group broke the chain: {:?}", report.first_broken);
    assert_eq!(report.checked, 1 + GOOD as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_retried_after_reopening_is_deduplicated() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let command_id = Uuid::now_v7();
    let events = with_command(new_events("order", 2), command_id);
    let original = open(&path)
        .append(stream_append("order-1", ExpectedVersion::NoStream, events.clone()))
        .await
        .expect("the first append failed");

    let store = open(&path);
    let retry = store
        .append(stream_append("order-1", ExpectedVersion::NoStream, events))
        .await
        .expect("the retried append failed");
    assert!(retry.deduplicated);
    assert_eq!(retry, seatledger_store::AppendOutcome { deduplicated: true, ..original.clone() });
    assert_eq!(store.command_outcome(command_id).await.expect("command_outcome failed"), Some(original));
    assert_eq!(store.head_position().await.expect("head_position failed"), 2, "a retry wrote events");
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    drop(open(&path));
    let newer = SCHEMA_VERSION + 1;
    set_schema_version(&path, newer);
    match SqliteStore::open(&path, clock()) {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains(&format!("schema version {newer}")), "unclear error: {message}");
            assert!(message.contains("newer"), "unclear error: {message}");
        }
        other => panic!("expected a newer schema to be refused, got {other:?}"),
    }
}

/// Schema version 1 kept each stream's last version in a `streams` table as
/// well; version 2 drops it and reads the version from the end of the
/// stream's range in the `(stream, stream_version)` index. A version 1 file
/// (made here as version 1 left it: the same events, the table, user_version
/// 1, no record of migration 2) opens, migrates, and its streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_migrated_and_its_streams_go_on() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let before = {
        let store = open(&path);
        append_numbered(&*store, 7).await;
        everything(&*store).await
    };
    back_to_version_1(&path);

    let store = open(&path);
    assert_eq!(everything(&*store).await, before, "migrating changed the events");
    // Seven appends round-robin over three streams: seat-0 got n = 0, 3, 6
    // (versions 0 to 2), seat-1 and seat-2 two each (versions 0 and 1).
    for (stream, last) in [("seat-0", 2), ("seat-1", 1), ("seat-2", 1)] {
        assert_eq!(store.stream_version(stream).await.expect("stream_version failed"), Some(last), "{stream}");
    }
    assert_eq!(store.stream_version("seat-3").await.expect("stream_version failed"), None);
    let stale = store.append(stream_append("seat-0", ExpectedVersion::Exact(1), new_events("late", 1))).await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { actual: Some(2), .. })),
        "a stale version was not refused: {stale:?}"
    );
    let next = store
        .append(stream_append("seat-0", ExpectedVersion::Exact(2), new_events("next", 2)))
        .await
        .expect("appending after the migration failed");
    assert_eq!((next.first_version, next.last_version, next.first_position), (3, 4, 8));
    drop(store);

    assert_migrated(&path);
}

/// Schema version 3 keeps a stream's number in `events` and its name once in
/// `streams`. A version 2 file (made here as version 2 left it: the stream's
/// name in every row) opens, migrates with every event and link as it was,
/// and its streams go on; new streams get numbers after the migrated ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_file_is_migrated_with_every_event_and_link_as_it_was() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let command = Uuid::now_v7();
    let before = {
        let store = open(&path);
        append_numbered(&*store, 7).await;
        // Two more, with a command id and no causation id.
        let mut events = with_command(new_events("commanded", 2), command);
        events.iter_mut().for_each(|e| e.metadata.causation_id = None);
        store.append(stream_append("commanded", ExpectedVersion::NoStream, events)).await.expect("commanded");
        everything(&*store).await
    };
    /// A row's id, correlation id, causation id, command id and link, as text.
    type Spelled = (String, String, Option<String>, Option<String>, String);
    let spelled: Vec<Spelled> = rusqlite::Connection::open(&path)
        .and_then(|conn| {
            conn.prepare("SELECT id, correlation_id, causation_id, command_id, hash FROM event_log ORDER BY position")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect()
        })
        .expect("reading the event_log view");
    let expected: Vec<_> = before
        .iter()
        .map(|e| {
            let m = &e.metadata;
            let text = |id: Option<Uuid>| id.map(|id| id.to_string());
            (e.id.to_string(), m.correlation_id.to_string(), text(m.causation_id), text(m.command_id), e.hash.clone())
        })
        .collect();
    assert_eq!(spelled, expected, "the event_log view does not spell the rows as the store reads them");
    back_to_version_2(&path);
    let as_text: i64 = rusqlite::Connection::open(&path)
        .and_then(|conn| conn.query_row("SELECT COUNT(*) FROM events WHERE typeof(stream) = 'text'", [], |r| r.get(0)))
        .expect("counting the rows that name their stream");
    assert_eq!(as_text, 9, "the version 2 file does not name its streams in its rows");

    let store = open(&path);
    assert_eq!(everything(&*store).await, before, "migrating changed the events");
    assert!(store.verify().await.expect("verify failed").is_intact(), "the chain broke in the migration");
    let seat_1: Vec<u64> = store
        .read_stream("seat-1", 0, Direction::Forwards, 10)
        .await
        .expect("reading seat-1")
        .iter()
        .map(|e| e.position)
        .collect();
    // Seven appends round-robin over three streams: seat-1 got n = 1 and 4.
    assert_eq!(seat_1, [2, 5]);
    store
        .append(stream_append("seat-1", ExpectedVersion::Exact(1), new_events("seat-1", 1)))
        .await
        .expect("appending to a migrated stream failed");
    store
        .append(stream_append("seat-9", ExpectedVersion::NoStream, new_events("seat-9", 1)))
        .await
        .expect("appending to a new stream failed");
    drop(store);

    assert_migrated(&path);
    let conn = rusqlite::Connection::open(&path).expect("opening the file");
    let streams: Vec<(i64, String)> = conn
        .prepare("SELECT number, name FROM streams ORDER BY number")
        .and_then(|mut stmt| stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
        .expect("reading the streams");
    let numbered: Vec<(i64, String)> = ["seat-0", "seat-1", "seat-2", "commanded", "seat-9"]
        .iter()
        .zip(1..)
        .map(|(name, n)| (n, (*name).to_owned()))
        .collect();
    // Numbered in the order the streams first appear in the log.
    assert_eq!(streams, numbered);
    let (command_ids, causation_ids): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(command_id), COUNT(causation_id) FROM events WHERE length(id) = 16 AND length(hash) = 32",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("counting converted rows");
    // All 11 events converted: the 7 numbered ones and the 2 appended after
    // the migration carry a causation id, the 2 commanded ones a command id
    // and no causation id.
    assert_eq!((command_ids, causation_ids), (2, 9));
    // The view an auditor reads shows every event with its stream's name.
    let log: Vec<(i64, String, i64)> = conn
        .prepare("SELECT position, stream, stream_version FROM event_log ORDER BY position")
        .and_then(|mut stmt| stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect())
        .expect("reading the event_log view");
    assert_eq!(log.len(), 11);
    assert_eq!(log[1], (2, "seat-1".to_owned(), 0));
    assert_eq!(log[8], (9, "commanded".to_owned(), 1));
    assert_eq!(log[9], (10, "seat-1".to_owned(), 2));
    assert_eq!(log[10], (11, "seat-9".to_owned(), 0));
}

/// A version 2 file that something else wrote a damaged id into still opens
/// and migrates; the damaged value is kept as text with a marker (so that it
/// can never pass for a uuid), and reading its event says which event and
/// which column, as before the migration. So is a uuid spelled otherwise
/// than the store writes it (upper case here), which must not be converted
/// into an id the store never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_id_survives_the_migration_and_is_named() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    append_numbered(&*open(&path), 5).await;
    back_to_version_2(&path);
    tamper(&path, "UPDATE events SET correlation_id = 'not-a-uuid' WHERE position = 3");
    tamper(&path, "UPDATE events SET id = upper(id) WHERE position = 4");

    let store = open(&path);
    let error = store.read_all(0, 10).await.expect_err("a row whose correlation id is not a uuid was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(
        message.contains("correlation id of the event at position 3")
            && message.contains(r#"43 bytes, the text "not as seatledger writes a uuid: not-a-uuid""#),
        "the message does not say which value of which event is damaged: {message}"
    );
    assert_eq!(store.read_all(0, 2).await.expect("the events before it").len(), 2);
    let error = store.read_all(3, 10).await.expect_err("an id in upper case was read");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(
        message.contains("the id of the event at position 4 is stored as 69 bytes, the text \"not as seatledger"),
        "{message}"
    );
    drop(store);
    assert_migrated(&path);
}

/// An event whose stream has no row in `streams` is reported, naming its
/// position, not skipped by the join. SQLite refuses to delete a stream's
/// row while events refer to it (the foreign key); something else writing
/// the file with foreign keys off is how it could happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_stream_has_no_row_is_reported_not_skipped() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let command = Uuid::now_v7();
    {
        let store = open(&path);
        append_numbered(&*store, 3).await;
        append_commanded(store.as_ref(), "gone", command).await.expect("a commanded append");
    }
    let conn = rusqlite::Connection::open(&path).expect("opening the file to tamper with it");
    let refused = conn.execute("DELETE FROM streams WHERE name = 'seat-1'", []);
    assert!(refused.is_err(), "a stream's row was deleted under its events: {refused:?}");
    conn.execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM streams WHERE name IN ('seat-1', 'gone');")
        .expect("tampering");
    drop(conn);
    let store = open(&path);
    let error = store.read_all(0, 10).await.expect_err("an event with no stream was read or skipped");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(message.contains("the stream of the event at position 2 has no row in `streams`"), "{message}");
    // The command's lookup finds its events, and says their stream is gone
    // rather than that the command is new (which would append it again).
    let error = store.command_outcome(command).await.expect_err("a command with no stream was taken for new");
    let StoreError::Corrupt(message) = &error else { panic!("expected Corrupt, got {error:?}") };
    assert!(message.contains(&format!("the stream of the events of command {command} has no row")), "{message}");
}

/// An imported event at `version` of `stream`, of `command` if any,
/// recorded `second` seconds after a fixed past instant.
fn imported(stream: &str, version: u64, second: i64, command: Option<Uuid>) -> StoredEvent {
    let recorded_at = chrono::DateTime::from_timestamp(1_700_000_000 + second, 0).expect("a valid instant");
    let mut event = new_event(r#"{"imported":true}"#);
    event.metadata.command_id = command;
    StoredEvent::unplaced(stream, version, recorded_at, event)
}

/// A command's outcome derived from its runs (schema version 4) is what
/// the lookup derived from all its events before (version 3): the first
/// stream the command wrote to owns it, with the versions and positions of
/// all its events there, however its events were spread over streams and
/// imports. The same file migrated from version 3 derives the same
/// outcomes. And a run is what the index holds: one entry for consecutive
/// events of one command on one stream, an event already stored and
/// skipped in between or not, and none for an event without a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_belongs_to_the_first_stream_it_wrote_to_across_imports_and_the_migration() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let (c, d, e) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Positions 1 to 6, in this order: c on a, c on b, c on a; then, in a
    // second import, c on b again and d twice on b. A third import sends e
    // twice on s (positions 7 and 8), the first event of all again (stored,
    // so skipped), e on s once more (9), and an event of s without a
    // command (10).
    let first = vec![imported("a", 0, 0, Some(c)), imported("b", 0, 1, Some(c)), imported("a", 1, 2, Some(c))];
    let second = vec![imported("b", 1, 3, Some(c)), imported("b", 2, 4, Some(d)), imported("b", 3, 5, Some(d))];
    let third = vec![
        imported("s", 0, 6, Some(e)),
        imported("s", 1, 7, Some(e)),
        first[0].clone(),
        imported("s", 2, 8, Some(e)),
        imported("s", 3, 9, None),
    ];
    // Worked out by hand: c wrote to a first (position 1), and its events on
    // a are versions 0 and 1 at positions 1 and 3; its events on b
    // (positions 2 and 4, the last one after all of c's events on a) do not
    // change that. d is versions 2 and 3 of b, at positions 5 and 6. e is
    // versions 0 to 2 of s, at positions 7 to 9, one run of three.
    let owned_by = |stream: &str, versions: (u64, u64), positions: (u64, u64)| AppendOutcome {
        stream: stream.to_owned(),
        first_version: versions.0,
        last_version: versions.1,
        first_position: positions.0,
        last_position: positions.1,
        deduplicated: false,
    };
    let expected =
        [(c, owned_by("a", (0, 1), (1, 3))), (d, owned_by("b", (2, 3), (5, 6))), (e, owned_by("s", (0, 2), (7, 9)))];
    {
        let store = open(&path);
        assert_eq!(store.import(first).await.expect("the first import").imported, 3);
        assert_eq!(store.import(second).await.expect("the second import").imported, 3);
        let outcome = store.import(third).await.expect("the third import");
        assert_eq!((outcome.imported, outcome.skipped), (4, 1));
        for (command, outcome) in &expected {
            let found = store.command_outcome(*command).await.expect("command_outcome failed");
            assert_eq!(found.as_ref(), Some(outcome), "command {command}, as the writer recorded it");
        }
    }
    // The index's entries: c's four runs of one (a, b, a, b), d's run of
    // two, e's run of three.
    let conn = rusqlite::Connection::open(&path).expect("opening the file");
    let runs = |command: Uuid| -> Vec<i64> {
        conn.prepare("SELECT command_run FROM events WHERE command_id = ?1 AND command_run IS NOT 0 ORDER BY position")
            .and_then(|mut stmt| stmt.query_map([&command.as_bytes()[..]], |row| row.get(0))?.collect())
            .expect("reading a command's runs")
    };
    assert_eq!((runs(c), runs(d), runs(e)), (vec![1, 1, 1, 1], vec![2], vec![3]));
    drop(conn);
    back_to_version_3(&path);
    let store = open(&path);
    assert_migrated(&path);
    for (command, outcome) in &expected {
        let found = store.command_outcome(*command).await.expect("command_outcome failed");
        assert_eq!(found.as_ref(), Some(outcome), "command {command}, as the migration derived it");
    }
    // A retry of c is answered from a; c on another stream is refused.
    let retry = store
        .append(stream_append("a", ExpectedVersion::Exact(7), with_command(new_events("retry", 1), c)))
        .await
        .expect("a retried command");
    assert_eq!(retry, AppendOutcome { deduplicated: true, ..expected[0].1.clone() });
    assert_command_reuse_refused(store.as_ref(), "elsewhere", c, "a", "after the migration").await;
    assert_eq!(store.head_position().await.expect("head_position failed"), 10, "a retry or a refusal wrote");
}

/// Spawns one request.
type Spawn<T> = Box<dyn FnOnce() -> tokio::task::JoinHandle<T>>;

/// The store behind a write lock held by another connection, so that what is
/// queued meanwhile shares one group: the writer takes `first` alone and
/// waits for the lock with it, and the requests spawned after it (in that
/// order, 20 ms apart) queue behind and make its next group. Returns each
/// request's answer, and the commits the writer made for all of them.
async fn in_one_group<T: Send + 'static>(
    path: &Path,
    sqlite: &SqliteStore,
    first: Spawn<T>,
    after: Vec<Spawn<T>>,
) -> (T, Vec<T>, u64) {
    let before = sqlite.write_stats();
    let blocker = rusqlite::Connection::open(path).expect("opening a second connection");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("taking the write lock");
    let first = first();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut tasks = Vec::new();
    for spawn in after {
        tasks.push(spawn());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    blocker.execute_batch("ROLLBACK").expect("releasing the write lock");
    let first = first.await.expect("a task panicked");
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("a task panicked"));
    }
    (first, answers, sqlite.write_stats().commits - before.commits)
}

/// [`a_stream_number_rolled_back_is_forgotten`] inside a group: the refused
/// append ran in a savepoint, whose rollback took the new stream's number
/// back while the rest of the group went on. The next request of the same
/// group creates a stream and is given that number; a writer that still
/// remembered it for the refused stream would file that stream's later
/// events under the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_number_rolled_back_in_a_group_is_forgotten() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let (store, answers) = refused_beside_kept(
        &dir.path().join("events.db"),
        vec![stream_append("first", ExpectedVersion::NoStream, new_events("first", 1))],
        vec![stream_append("second", ExpectedVersion::NoStream, new_events("second", 2))],
    )
    .await;
    answers[1].as_ref().expect("the second stream's append");
    store
        .append(stream_append("first", ExpectedVersion::NoStream, new_events("first", 3)))
        .await
        .expect("the first stream, refused before, is still new");
    let versions = |stream: &'static str| {
        let store = store.clone();
        async move {
            let read = store.read_stream(stream, 0, Direction::Forwards, 10).await.expect("reading a stream");
            read.iter().map(|e| (e.stream.to_string(), e.stream_version)).collect::<Vec<_>>()
        }
    };
    assert_eq!(versions("second").await, [("second".to_owned(), 0), ("second".to_owned(), 1)]);
    assert_eq!(versions("first").await.len(), 3);
}

/// A request's answer.
type Answer = Result<Vec<AppendOutcome>, StoreError>;

/// A store at `path` holding stream `old` (position 1) and `warm` (2), whose
/// writer then takes two requests in one group: `refused` with an append
/// to `old` as new after it, which refuses the whole request after
/// `refused` has written, and `kept`. Returns the store and both answers,
/// the first checked to be the conflict.
async fn refused_beside_kept(
    path: &Path,
    refused: Vec<seatledger_store::StreamAppend>,
    kept: Vec<seatledger_store::StreamAppend>,
) -> (Arc<dyn EventStore>, Vec<Answer>) {
    let sqlite = Arc::new(SqliteStore::open(path, clock()).expect("opening the sqlite store"));
    let store: Arc<dyn EventStore> = sqlite.clone();
    store.append(stream_append("old", ExpectedVersion::NoStream, new_events("old", 1))).await.expect("first append");
    let spawn = |appends: Vec<seatledger_store::StreamAppend>| -> Spawn<Answer> {
        let store = store.clone();
        Box::new(move || tokio::spawn(async move { store.append_many(appends).await }))
    };
    let mut refused = refused;
    refused.push(stream_append("old", ExpectedVersion::NoStream, new_events("old again", 1)));
    let first = spawn(vec![stream_append("warm", ExpectedVersion::NoStream, new_events("warm", 1))]);
    let (warm, answers, commits) = in_one_group(path, &sqlite, first, vec![spawn(refused), spawn(kept)]).await;
    warm.expect("the first append");
    assert!(matches!(&answers[0], Err(StoreError::Conflict { .. })), "not refused: {:?}", answers[0]);
    assert!(commits <= 2, "{commits} commits: the requests did not share a group");
    (store, answers)
}

/// A request that wrote its command's run and was then refused, inside a
/// group, leaves no trace of the command: it is new when it comes again, and
/// the request that shared the group keeps its own (the savepoint's
/// rollback takes the run with the events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_of_a_request_refused_in_a_group_is_not_recorded() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let (refused, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let (store, answers) = refused_beside_kept(
        &dir.path().join("events.db"),
        vec![stream_append("commanded", ExpectedVersion::NoStream, with_command(new_events("c", 2), refused))],
        vec![stream_append("kept", ExpectedVersion::NoStream, with_command(new_events("k", 1), kept))],
    )
    .await;
    let kept_outcome = answers[1].as_ref().expect("the kept command's append")[0].clone();
    assert_eq!(store.command_outcome(refused).await.expect("command_outcome failed"), None);
    assert_eq!(store.command_outcome(kept).await.expect("command_outcome failed"), Some(kept_outcome.clone()));
    // Positions: 1 old, 2 warm, 3 kept; the refused command comes again
    // and is written after them, not answered from rolled-back positions.
    let again = store
        .append(stream_append("commanded", ExpectedVersion::NoStream, with_command(new_events("c", 2), refused)))
        .await
        .expect("the refused command, new again");
    assert_eq!(
        (again.deduplicated, again.first_position, again.last_position, kept_outcome.first_position),
        (false, 4, 5, 3)
    );
}

/// A one-stream append writes its new stream's row just before its first
/// event. When that event is refused by SQL (a trigger here, as a full disk
/// would), the request has written although the head has not moved: in a
/// group, the whole group must be rolled back, and no row of the refused
/// stream may be left in `streams`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_streams_row_written_before_a_failing_event_dooms_the_group() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let sqlite = Arc::new(SqliteStore::open(&path, clock()).expect("opening the sqlite store"));
    let store: Arc<dyn EventStore> = sqlite.clone();
    store.append(stream_append("old", ExpectedVersion::NoStream, new_events("old", 1))).await.expect("first append");
    rusqlite::Connection::open(&path)
        .and_then(|conn| {
            conn.execute_batch(
                "CREATE TRIGGER doomed BEFORE INSERT ON events WHEN NEW.stream_version = 0 \
                 AND NEW.stream = (SELECT number FROM streams WHERE name = 'doomed') \
                 BEGIN SELECT RAISE(ABORT, 'the test refuses this stream'); END;",
            )
        })
        .expect("creating the trigger");
    type Answer = Result<seatledger_store::AppendOutcome, StoreError>;
    let spawn = |stream: &'static str| -> Spawn<Answer> {
        let store = store.clone();
        Box::new(move || {
            tokio::spawn(async move {
                store.append(stream_append(stream, ExpectedVersion::NoStream, new_events(stream, 1))).await
            })
        })
    };
    let first = spawn("warm");
    let (warm, answers, _) =
        in_one_group(&path, &sqlite, first, vec![spawn("good-0"), spawn("doomed"), spawn("good-1")]).await;
    warm.expect("the first append");
    for answer in &answers {
        assert!(
            matches!(answer, Err(e) if e.to_string().contains("the test refuses this stream")),
            "a request of the doomed group was not told: {answer:?}"
        );
    }
    let conn = rusqlite::Connection::open(&path).expect("opening the file");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM streams WHERE name IN ('doomed', 'good-0', 'good-1')", [], |r| r.get(0))
        .expect("counting stream rows");
    assert_eq!(rows, 0, "the rolled-back group left stream rows behind");
    conn.execute_batch("DROP TRIGGER doomed").expect("dropping the trigger");
    let after = store
        .append(stream_append("doomed", ExpectedVersion::NoStream, new_events("doomed", 1)))
        .await
        .expect("the refused stream, now allowed");
    assert_eq!((after.first_version, after.first_position), (0, 3));
}

/// A new stream's number is given inside the append's transaction. When the
/// append is refused after that (a conflict on a later stream of the same
/// atomic append), the number goes back with the transaction, and the
/// writer must forget it too: SQLite gives it to the next new stream, and a
/// writer that remembered it would file the first stream's later events
/// under the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_number_rolled_back_is_forgotten() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let store = open(&path);
    store.append(stream_append("old", ExpectedVersion::NoStream, new_events("old", 1))).await.expect("first append");
    let refused = store
        .append_many(vec![
            stream_append("first", ExpectedVersion::NoStream, new_events("first", 1)),
            stream_append("old", ExpectedVersion::NoStream, new_events("old again", 1)),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "the stale second stream was not refused: {refused:?}"
    );
    assert_eq!(store.stream_version("first").await.expect("stream_version"), None, "the refused append left events");
    store.append(stream_append("second", ExpectedVersion::NoStream, new_events("second", 2))).await.expect("second");
    store
        .append(stream_append("first", ExpectedVersion::NoStream, new_events("first", 3)))
        .await
        .expect("the first stream, refused before, is still new");
    let versions =
        |events: Vec<StoredEvent>| events.iter().map(|e| (e.stream.to_string(), e.stream_version)).collect::<Vec<_>>();
    let read = |stream: &'static str| {
        let store = store.clone();
        async move { store.read_stream(stream, 0, Direction::Forwards, 10).await.expect("reading a stream") }
    };
    assert_eq!(versions(read("second").await), [("second".to_owned(), 0), ("second".to_owned(), 1)]);
    assert_eq!(
        versions(read("first").await),
        [("first".to_owned(), 0), ("first".to_owned(), 1), ("first".to_owned(), 2)]
    );
    drop(store);
    // Reopened, with nothing remembered, the file says the same.
    let store = open(&path);
    assert_eq!(store.stream_version("first").await.expect("stream_version"), Some(2));
    assert_eq!(store.stream_version("second").await.expect("stream_version"), Some(1));
}

/// Two processes opening a version 1 file at once: one migrates it, the
/// other finds it migrated, and both append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_opening_a_version_1_file_at_once_both_work() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    drop(open(&path));
    back_to_version_1(&path);
    let opening: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::open(&path, clock()))
        })
        .collect();
    let stores: Vec<SqliteStore> = opening
        .into_iter()
        .map(|t| t.join().expect("an opening thread panicked").expect("opening the version 1 file"))
        .collect();
    for (n, store) in stores.iter().enumerate() {
        let stream = format!("opened-{n}");
        store
            .append(stream_append(&stream, ExpectedVersion::NoStream, new_events(&stream, 1)))
            .await
            .expect("appending after the migration failed");
    }
    drop(stores);
    assert_migrated(&path);
}

/// Set the file's schema version behind the store's back, as a newer build
/// migrating it would.
fn set_schema_version(path: &Path, version: i64) {
    rusqlite::Connection::open(path)
        .and_then(|conn| conn.execute_batch(&format!("PRAGMA user_version = {version}")))
        .expect("setting the schema version");
}

/// Turn a file this build wrote into what schema version 3 left on disk: no
/// `command_run` column, every event's command id in `events_by_command_id`,
/// user_version 3, and no record of migration 4. The SQL without
/// `BEGIN`/`COMMIT`, for [`BACK_TO_VERSION_2`] to start from.
const BACK_TO_VERSION_3: &str = "
    DROP INDEX events_by_command_run;
    ALTER TABLE events DROP COLUMN command_run;
    CREATE INDEX events_by_command_id ON events (command_id) WHERE command_id IS NOT NULL;
    DELETE FROM schema_migrations WHERE version >= 4;
    PRAGMA user_version = 3;";

fn back_to_version_3(path: &Path) {
    back_to(path, 3, BACK_TO_VERSION_3);
}

/// Run `sql` on the file in one transaction, as what schema `version` left.
fn back_to(path: &Path, version: i64, sql: &str) {
    rusqlite::Connection::open(path)
        .and_then(|conn| conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} COMMIT;")))
        .unwrap_or_else(|e| panic!("turning the file back into what version {version} wrote: {e}"));
}

/// Turn a file this build wrote into what schema version 2 left on disk:
/// `events` naming each row's stream, ids and links as text (spelled by the
/// `event_log` view, as version 2 wrote them), no `streams` table or
/// `event_log` view, user_version 2, and no record of migration 3. The SQL without
/// `BEGIN`/`COMMIT`, for [`back_to_version_1`] to add to.
const BACK_TO_VERSION_2: &str = "
    CREATE TABLE events_v2 (
        position        INTEGER PRIMARY KEY,
        id              TEXT    NOT NULL UNIQUE,
        stream          TEXT    NOT NULL,
        stream_version  INTEGER NOT NULL,
        type            TEXT    NOT NULL,
        schema_version  INTEGER NOT NULL,
        recorded_at_us  INTEGER NOT NULL,
        effective_at_us INTEGER NOT NULL,
        actor           TEXT    NOT NULL,
        channel         TEXT    NOT NULL,
        correlation_id  TEXT    NOT NULL,
        causation_id    TEXT,
        command_id      TEXT,
        payload         TEXT    NOT NULL,
        hash            TEXT    NOT NULL,
        UNIQUE (stream, stream_version)
    ) STRICT;
    INSERT INTO events_v2 SELECT * FROM event_log ORDER BY position;
    DROP VIEW event_log;
    DROP TABLE events;
    DROP TABLE streams;
    ALTER TABLE events_v2 RENAME TO events;
    CREATE INDEX events_by_command_id ON events (command_id) WHERE command_id IS NOT NULL;
    DELETE FROM schema_migrations WHERE version >= 3;
    PRAGMA user_version = 2;";

fn back_to_version_2(path: &Path) {
    back_to(path, 2, &format!("{BACK_TO_VERSION_3} {BACK_TO_VERSION_2}"));
}

/// Turn a file this build wrote into what schema version 1 left on disk:
/// the same events, a `streams` table holding each stream's last version,
/// user_version 1, and no record of migrations 2 and 3.
fn back_to_version_1(path: &Path) {
    back_to(
        path,
        1,
        &format!(
            "{BACK_TO_VERSION_3} {BACK_TO_VERSION_2}
             CREATE TABLE streams (stream TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL) STRICT, WITHOUT ROWID;
             INSERT INTO streams (stream, version) SELECT stream, MAX(stream_version) FROM events GROUP BY stream;
             DELETE FROM schema_migrations WHERE version = 2;
             PRAGMA user_version = 1;"
        ),
    );
}

/// The file is at this build's schema version, each migration recorded once,
/// with a `streams` table of numbered names (version 3's, not version 1's)
/// and the command-id index over runs of events (version 4's).
fn assert_migrated(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("opening the file");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).expect("reading user_version");
    assert_eq!((version, SCHEMA_VERSION), (4, 4));
    let recorded: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("reading migrations");
    assert_eq!(recorded, [1, 2, 3, 4], "each migration recorded once");
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("reading the events' indexes");
    assert_eq!(indexes, ["events_by_command_run"], "the command-id index is not version 4's");
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('streams') ORDER BY cid")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("reading the streams table's columns");
    assert_eq!(columns, ["number", "name"], "the streams table is not version 3's");
    let text_streams: i64 = conn
        .query_row("SELECT COUNT(*) FROM events WHERE typeof(stream) <> 'integer'", [], |row| row.get(0))
        .expect("counting rows that name their stream");
    assert_eq!(text_streams, 0, "rows still name their stream");
}

/// A process still running this build when a newer one migrates the file
/// must stop writing, and say why, instead of failing on tables that are
/// gone in SQLite's words. Here "the newer build" bumps the schema version
/// behind the open store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_migrated_by_a_newer_build_while_open_is_no_longer_written() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let store = open(&path);
    append_numbered(&*store, 2).await;
    let newer = SCHEMA_VERSION + 1;
    set_schema_version(&path, newer);
    // Refused, and refused again: the store does not write on after its
    // first refusal.
    for attempt in 0..2 {
        let refused = store.append(stream_append("seat-0", ExpectedVersion::Exact(0), new_events("late", 1))).await;
        match &refused {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains(&format!("schema version is now {newer}")), "unclear error: {message}");
                assert!(message.contains("restart"), "unclear error: {message}");
            }
            other => panic!("expected append {attempt} to be refused, got {other:?}"),
        }
    }
    assert_eq!(store.head_position().await.expect("head_position failed"), 2, "a refused append wrote");
}

#[tokio::test]
async fn a_foreign_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .and_then(|conn| conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
        .expect("making a foreign database");
    match SqliteStore::open(&path, clock()) {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("not a seatledger event store"), "unclear error: {message}");
        }
        other => panic!("expected a foreign file to be refused, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(&path).expect("reopening the foreign database");
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'", [], |row| row.get(0))
        .expect("counting tables");
    assert_eq!(tables, 1, "opening a foreign file must not add tables to it");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("reading journal_mode");
    assert_eq!(mode, "delete", "opening a foreign file must not change its journal mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_are_durable() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("opening the file");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("reading journal_mode");
    assert_eq!(mode, "wal", "the store must leave the file in WAL mode");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).expect("reading user_version");
    assert_eq!(version, SCHEMA_VERSION);
    let recorded: i64 =
        conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |row| row.get(0)).expect("reading migrations");
    assert_eq!(recorded, SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_closes_the_file() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let wal = dir.path().join("events.db-wal");
    let store = open(&path);
    append_numbered(&*store, 3).await;
    assert!(wal.exists(), "an open store in WAL mode has a -wal file");
    drop(store);
    // SQLite folds the WAL back and deletes it when the last connection
    // closes: so once drop returns, the writer thread has ended and every
    // connection is closed.
    assert!(!wal.exists(), "the -wal file is still there: a connection outlived the store");
    let conn = rusqlite::Connection::open(&path).expect("opening the file");
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0)).expect("counting events");
    assert_eq!(count, 3, "appends before the drop are on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_keep_one_chain() {
    // Two stores stand in for two processes: each writer must notice the
    // other's commits before it extends the log.
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let first = open(&path);
    let second = open(&path);
    for n in 0..6u64 {
        let (writer, stream) = if n % 2 == 0 { (&first, "left") } else { (&second, "right") };
        let current = writer.stream_version(stream).await.expect("stream_version failed");
        let outcome = writer
            .append(stream_append(stream, ExpectedVersion::from_current(current), new_events(stream, 2)))
            .await
            .expect("an interleaved append failed");
        assert_eq!(outcome.first_position, 2 * n + 1, "a writer reused a position");
    }
    // An expectation checked by one store sees what the other wrote.
    match first.append(stream_append("right", ExpectedVersion::Exact(1), new_events("late", 1))).await {
        Err(StoreError::Conflict { actual: Some(5), .. }) => {}
        other => panic!("expected a conflict against the other store's appends, got {other:?}"),
    }
    for store in [&first, &second] {
        let report = store.verify().await.expect("verify failed");
        assert!(report.is_intact(), "two writers broke the chain: {:?}", report.first_broken);
        assert_eq!(report.checked, 12);
    }
}

/// The writer's commits never checkpoint; the checkpointer thread copies the
/// WAL back into the database file soon after, while the store stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let sqlite = Arc::new(SqliteStore::open(&path, clock()).expect("opening the sqlite store"));
    let store: Arc<dyn EventStore> = sqlite.clone();
    let empty_file = std::fs::metadata(&path).expect("file size").len();
    // 40 appends of 100 events with 1 KiB notes: about 4 MiB of rows.
    let note = "x".repeat(1_024);
    for batch in 0..40 {
        let events: Vec<_> = (0..100).map(|n| new_event(&format!(r#"{{"n":{n},"note":"{note}"}}"#))).collect();
        let expected = ExpectedVersion::from_current(store.stream_version("bulk").await.expect("version"));
        store.append(stream_append("bulk", expected, events)).await.unwrap_or_else(|e| panic!("batch {batch}: {e}"));
    }
    // The last commit nudged the checkpointer; it runs within its pause.
    // 4,000 rows of over 1 KiB are over 4,000 KiB once in the file.
    let wanted = empty_file + 4_000 * 1_024;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let file = std::fs::metadata(&path).expect("file size").len();
        if file >= wanted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 10 s the database file is {file} bytes (empty: {empty_file}): the rows are still only in the \
             WAL ({:?})",
            sqlite.checkpoint_stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(sqlite.checkpoint_stats().runs > 0);
    assert_eq!(everything(store.as_ref()).await.len(), 4_000);
}

/// Under a steady load the background checkpoint never copies the whole
/// WAL (commits keep arriving while it copies), so SQLite would never start
/// the WAL over and it would grow with everything written. The writer lets
/// it restart once it passes 1,000 frames: it stays bounded, well below
/// what was written (without the restart it reaches all of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_a_steady_load() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let wal = dir.path().join("events.db-wal");
    let sqlite = Arc::new(SqliteStore::open(&path, clock()).expect("opening the sqlite store"));
    let store: Arc<dyn EventStore> = sqlite.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (wal, done) = (wal.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut largest = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            largest
        })
    };
    // 16 appenders, 150 appends of 20 events of 3 KiB each: 48,000 rows of
    // one 4 KiB page each, about 200 MB of WAL frames in all.
    let note = "y".repeat(3 * 1_024);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (store, note) = (Arc::clone(&store), note.clone());
            tokio::spawn(async move {
                let stream = format!("load-{t}");
                for batch in 0..150u64 {
                    let events: Vec<_> =
                        (0..20).map(|n| new_event(&format!(r#"{{"n":{n},"note":"{note}"}}"#))).collect();
                    let expected = ExpectedVersion::from_current(batch.checked_sub(1).map(|b| b * 20 + 19));
                    store.append(stream_append(&stream, expected, events)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an appender panicked");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let largest = watcher.await.expect("the watcher panicked");
    let stats = sqlite.checkpoint_stats();
    let total: u64 = std::fs::metadata(&path).expect("size").len();
    assert!(total >= 48_000 * 3 * 1_024, "the rows are not in the database file: {total} bytes ({stats:?})");
    assert!(stats.restarts > 0, "{stats:?}");
    assert!(
        largest < 100 * 1_024 * 1_024,
        "the WAL reached {largest} bytes while about 200 MB were written ({stats:?}): it does not restart"
    );
}

/// Opening a current file reads its header without the write lock, so it
/// does not wait behind another process that is writing (during a long
/// import that process commits back to back and the lock is nearly always
/// taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_does_not_wait_for_another_writer() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let store = open(&path);
    append_numbered(&*store, 3).await;
    drop(store);

    let other = rusqlite::Connection::open(&path).expect("opening the file");
    other.execute_batch("BEGIN IMMEDIATE").expect("taking the write lock");
    let started = std::time::Instant::now();
    let store = SqliteStore::open(&path, clock()).expect("opening while another connection holds the write lock");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "opening waited {:?}", started.elapsed());
    assert_eq!(store.head_position().await.expect("head"), 3);
    other.execute_batch("COMMIT").expect("releasing the write lock");
}

/// A one-stream append runs without a savepoint of its own in a group: it is
/// refused, if at all, before it writes. SQL that fails after it has begun
/// writing (here a trigger refuses the second event of stream `doomed`,
/// after its first went in) must leave nothing of it behind: alone, its
/// transaction is rolled back; in a group, the whole group is, and every
/// request of it is answered with the error. Whatever a request is told, the
/// file agrees with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_after_it_began_writing_leaves_nothing_behind() {
    const GOOD: usize = 12;
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let store = open(&path);
    append_numbered(&*store, 1).await;
    let other = rusqlite::Connection::open(&path).expect("opening a second connection");
    other
        .execute_batch(
            "CREATE TRIGGER doomed BEFORE INSERT ON events WHEN NEW.stream_version = 1 \
             AND NEW.stream = (SELECT number FROM streams WHERE name = 'doomed') \
             BEGIN SELECT RAISE(ABORT, 'the test refuses this stream'); END;",
        )
        .expect("creating the trigger");
    let doomed = || stream_append("doomed", ExpectedVersion::NoStream, new_events("doomed", 2));

    // Alone in its transaction.
    let alone = store.append(doomed()).await;
    assert!(matches!(&alone, Err(e) if e.to_string().contains("the test refuses this stream")), "{alone:?}");
    assert_eq!(store.head_position().await.expect("head_position failed"), 1);

    // Queued behind a held write lock, so that it shares a group: the
    // writer takes what came first and waits for the lock with it; the
    // doomed append and the good ones after it queue up behind, and the
    // writer takes them all as its next group.
    other.execute_batch("BEGIN IMMEDIATE").expect("taking the write lock");
    let mut tasks = Vec::new();
    let spawn_good = |n: usize, tasks: &mut Vec<_>| {
        let (good, stream) = (store.clone(), format!("good-{n}"));
        let append = stream_append(&stream, ExpectedVersion::NoStream, new_events(&stream, 1));
        tasks.push((stream, tokio::spawn(async move { good.append(append).await })));
    };
    for n in 0..GOOD / 2 {
        spawn_good(n, &mut tasks);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let bad = store.clone();
    tasks.push(("doomed".to_owned(), tokio::spawn(async move { bad.append(doomed()).await })));
    for n in GOOD / 2..GOOD {
        spawn_good(n, &mut tasks);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other.execute_batch("ROLLBACK").expect("releasing the write lock");

    let mut answered_ok = BTreeSet::new();
    for (stream, task) in tasks {
        match task.await.expect("an appending task panicked") {
            Ok(outcome) => {
                assert_eq!(outcome.stream, stream);
                answered_ok.insert(stream);
            }
            Err(e) => assert!(e.to_string().contains("the test refuses this stream"), "{stream}: {e}"),
        }
    }
    assert!(!answered_ok.contains("doomed"), "the doomed append was answered as written");
    // The good appends queued after it shared its group and its fate.
    for n in GOOD / 2..GOOD {
        assert!(!answered_ok.contains(&format!("good-{n}")), "good-{n} was committed with the doomed append's group");
    }
    let stored: BTreeSet<String> =
        everything(&*store).await.into_iter().skip(1).map(|e| e.stream.to_string()).collect();
    assert_eq!(stored, answered_ok, "the file and the answers disagree");
    for n in 0..GOOD {
        let stream = format!("good-{n}");
        let expected = store.stream_version(&stream).await.expect("stream_version failed");
        assert_eq!(expected.is_some(), answered_ok.contains(&stream), "the version of {stream}");
        // Refused or not, every good stream can be written now.
        store
            .append(stream_append(&stream, ExpectedVersion::from_current(expected), new_events(&stream, 1)))
            .await
            .expect("appending after the failed group");
    }
    assert_eq!(store.stream_version("doomed").await.expect("stream_version failed"), None);
    let report = store.verify().await.expect("verify failed");
    assert!(report.is_intact(), "the chain broke: {:?}", report.first_broken);
    assert_eq!(report.checked, 1 + answered_ok.len() as u64 + GOOD as u64);
}

/// One event under `command` appended to `stream`, a new stream.
async fn append_commanded(
    store: &dyn EventStore,
    stream: &str,
    command: Uuid,
) -> Result<seatledger_store::AppendOutcome, StoreError> {
    store.append(stream_append(stream, ExpectedVersion::NoStream, with_command(new_events(stream, 1), command))).await
}

/// `command`, stored on `owner`, reused on the new stream `stream`: refused,
/// naming `owner`. Command ids have no unique index behind them, so a reuse
/// the writer did not look up would be stored silently.
async fn assert_command_reuse_refused(store: &dyn EventStore, stream: &str, command: Uuid, owner: &str, case: &str) {
    match append_commanded(store, stream, command).await {
        Err(StoreError::CommandIdReused { stream, .. }) if stream == owner => {}
        other => panic!("{case}: a command id reused on another stream was not refused: {other:?}"),
    }
}

/// The writer skips looking an event id or a command id up only for a uuid
/// v7 id above the greatest v7 id stored (lever 18 in docs/benchmarks.md).
/// Ids another store wrote after this writer last looked, ids that sort
/// below the greatest, and ids of other versions must still be found: a
/// retry is deduplicated and a reused id refused, never stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_command_ids_are_found_whoever_wrote_them_and_however_they_sort() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let first = open(&path);
    let second = open(&path);
    first.append(stream_append("a", ExpectedVersion::NoStream, new_events("a", 1))).await.expect("the first append");

    // Newer ids, written by the other store: with a command id, and without.
    let command_id = Uuid::now_v7();
    let commanded = with_command(new_events("b", 2), command_id);
    let original = second
        .append(stream_append("b", ExpectedVersion::NoStream, commanded.clone()))
        .await
        .expect("the other store's append with a command id");
    let plain = new_events("c", 1);
    let original_plain =
        second.append(stream_append("c", ExpectedVersion::NoStream, plain.clone())).await.expect("the plain append");
    assert_command_reuse_refused(first.as_ref(), "f", command_id, "b", "written by the other store").await;
    let retry = first
        .append(stream_append("b", ExpectedVersion::NoStream, commanded))
        .await
        .expect("retrying by command id through the first store");
    assert_eq!(retry, seatledger_store::AppendOutcome { deduplicated: true, ..original });
    let retry = first
        .append(stream_append("c", ExpectedVersion::NoStream, plain))
        .await
        .expect("retrying by event id through the first store");
    assert_eq!(retry, seatledger_store::AppendOutcome { deduplicated: true, ..original_plain });

    // An id far below every uuid v7: stored, deduplicated on retry, and
    // refused on another stream.
    let mut low = new_event(r#"{"low":true}"#);
    low.id = Uuid::from_u128(7);
    let stored =
        first.append(stream_append("d", ExpectedVersion::NoStream, vec![low.clone()])).await.expect("a low id");
    let again =
        first.append(stream_append("d", ExpectedVersion::NoStream, vec![low.clone()])).await.expect("a low id again");
    assert_eq!(again, seatledger_store::AppendOutcome { deduplicated: true, ..stored });
    match first.append(stream_append("e", ExpectedVersion::NoStream, vec![low])).await {
        Err(StoreError::DuplicateEventId { .. }) => {}
        other => panic!("a low id reused on another stream was not refused: {other:?}"),
    }

    // A hashed (version 8) command id, as automatic top-ups use, sorts above
    // every v7 id today: it is looked up all the same, and v7 ids after it
    // still are when they must be.
    let hashed = uuid::Builder::from_custom_bytes([0xfe; 16]).into_uuid();
    append_commanded(first.as_ref(), "g", hashed).await.expect("an append with a hashed command id");
    assert_command_reuse_refused(first.as_ref(), "h", hashed, "g", "a hashed id").await;
    let later = Uuid::now_v7();
    append_commanded(first.as_ref(), "i", later).await.expect("a v7 command id after a hashed one");
    assert_command_reuse_refused(first.as_ref(), "j", later, "i", "a v7 id after a hashed one").await;
    assert_eq!(first.head_position().await.expect("head_position failed"), 7, "an id was stored twice");
    let report = first.verify().await.expect("verify failed");
    assert!(report.is_intact(), "the chain broke: {:?}", report.first_broken);
}

/// Values the store did not write at the top of an id index (a uuid with a
/// byte before it sorts above every id the store writes; so do bytes that
/// are no uuid at all) neither stop the store opening nor hide the ids
/// below them from the lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_the_store_did_not_write_hide_none_of_those_it_did() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("events.db");
    let (older, newer) = (Uuid::now_v7(), Uuid::now_v7());
    {
        let store = open(&path);
        for (stream, command) in [("a", older), ("b", newer)] {
            append_commanded(store.as_ref(), stream, command).await.expect("an append");
        }
    }
    const A: &str = "stream = (SELECT number FROM streams WHERE name = 'a')";
    tamper(&path, &format!("UPDATE events SET command_id = unhex('ff' || hex(command_id)) WHERE {A}"));
    tamper(&path, &format!("UPDATE events SET id = CAST('zz-not-a-uuid' AS BLOB) WHERE {A}"));
    let store = open(&path);
    assert_command_reuse_refused(store.as_ref(), "c", newer, "b", "below values the store did not write").await;
    assert_eq!(store.head_position().await.expect("head_position failed"), 2, "a reused command id was stored");
}
