//! What protects the log's history, and the schema that holds it: the
//! trigger that keeps events forever, `verify` finding tampering done behind
//! the store's back, and migrations applied once however many processes
//! start at the same time.

use seatledger_store::conformance::{new_events, stream_append};
use seatledger_store::{EventStore, ExpectedVersion, StoreError, SystemClock};
use seatledger_store_postgres::{fresh_database_or_skip, PostgresOptions, PostgresStore, SCHEMA_VERSION};
use std::sync::Arc;

async fn store(url: &str) -> PostgresStore {
    PostgresStore::connect(url, Arc::new(SystemClock)).await.expect("connecting")
}

/// Five events over two streams.
async fn five_events(store: &PostgresStore) {
    store.append(stream_append("a", ExpectedVersion::NoStream, new_events("a", 3))).await.unwrap();
    store.append(stream_append("b", ExpectedVersion::NoStream, new_events("b", 2))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_forever_updates_deletes_and_truncates_are_refused() {
    let db = fresh_database_or_skip!("forever");
    let store = store(db.url()).await;
    five_events(&store).await;
    let admin = db.admin().await;
    for sql in [
        r#"UPDATE seatledger.events SET payload = '{"tampered":true}' WHERE position = 3"#,
        "DELETE FROM seatledger.events WHERE position = 5",
        "TRUNCATE seatledger.events",
    ] {
        let error = admin.batch_execute(sql).await.expect_err(sql);
        let db_error = error.as_db_error().expect("a server error");
        assert!(db_error.message().starts_with("events are forever"), "{sql}: {db_error}");
    }
    let report = store.verify().await.unwrap();
    assert!(report.is_intact() && report.checked == 5, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_event_changed_behind_the_stores_back() {
    let db = fresh_database_or_skip!("tamper");
    let store = store(db.url()).await;
    five_events(&store).await;
    let admin = db.admin().await;
    admin
        .batch_execute(
            r#"ALTER TABLE seatledger.events DISABLE TRIGGER events_are_forever;
               UPDATE seatledger.events SET payload = '{"tag":"a","n":99}' WHERE position = 3;
               UPDATE seatledger.events SET actor = 'mallory' WHERE position = 4;
               ALTER TABLE seatledger.events ENABLE TRIGGER events_are_forever;"#,
        )
        .await
        .unwrap();
    let report = store.verify().await.unwrap();
    let broken = report.first_broken.expect("verify missed a changed payload");
    assert_eq!((broken.position, broken.stream.as_str(), broken.stream_version), (3, "a", 2));
    assert_eq!(report.checked, 2, "the events before the change still verify");
    let event = store.read_all(2, 1).await.unwrap().remove(0);
    assert_eq!(broken.event_id, event.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_notices_the_tail_of_the_log_removed() {
    let db = fresh_database_or_skip!("truncated");
    let store = store(db.url()).await;
    five_events(&store).await;
    let admin = db.admin().await;
    admin
        .batch_execute(
            "ALTER TABLE seatledger.events DISABLE TRIGGER events_are_forever;
             DELETE FROM seatledger.events WHERE position = 5;
             ALTER TABLE seatledger.events ENABLE TRIGGER events_are_forever;",
        )
        .await
        .unwrap();
    // Every remaining link holds; only the head row knows there was more.
    let report = store.verify().await.unwrap();
    let broken = report.first_broken.expect("verify missed the removed tail");
    assert_eq!(broken.position, 5);
    assert!(broken.reason.contains("events were removed"), "{}", broken.reason);
    assert_eq!(report.checked, 4);
}

async fn migration_rows(db_url: &str, schema: &str) -> Vec<(i32, String)> {
    let (client, connection) = tokio_postgres::connect(db_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(&format!("SELECT version, description FROM {schema}.schema_migrations ORDER BY version"), &[])
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_starting_together_apply_the_schema_once() {
    let db = fresh_database_or_skip!("migrate");
    let url = db.url().to_owned();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url, Arc::new(SystemClock)).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().expect("a store starting alongside others failed"));
    }
    let rows = migration_rows(db.url(), "seatledger").await;
    assert_eq!(rows.len(), SCHEMA_VERSION as usize, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // All of them share one log.
    stores[0].append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 1))).await.unwrap();
    stores[3].append(stream_append("s", ExpectedVersion::Exact(0), new_events("s", 1))).await.unwrap();
    assert_eq!(stores[1].head_position().await.unwrap(), 2);

    // Opening again changes nothing.
    drop(stores);
    let again = store(db.url()).await;
    assert_eq!(migration_rows(db.url(), "seatledger").await, rows);
    assert_eq!(again.head_position().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_and_a_foreign_schema_are_refused() {
    let db = fresh_database_or_skip!("refuse");
    drop(store(db.url()).await);
    let admin = db.admin().await;
    admin
        .batch_execute(
            "INSERT INTO seatledger.schema_migrations (version, description) VALUES (99, 'from the future');
             CREATE SCHEMA someone_else; CREATE TABLE someone_else.orders (id int);",
        )
        .await
        .unwrap();
    match PostgresStore::connect(db.url(), Arc::new(SystemClock)).await {
        Err(StoreError::Backend(message)) => assert!(message.contains("has version 99, newer than"), "{message}"),
        other => panic!("expected a newer schema to be refused, got {other:?}"),
    }
    let options = PostgresOptions::default().schema("someone_else");
    match PostgresStore::connect_with(db.url(), Arc::new(SystemClock), options).await {
        Err(StoreError::Backend(message)) => assert!(message.contains("not a seatledger store"), "{message}"),
        other => panic!("expected a foreign schema to be refused, got {other:?}"),
    }
    // Nothing was added to it.
    let count: i64 =
        admin.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'someone_else'", &[]).await.unwrap().get(0);
    assert_eq!(count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ledgers_in_two_schemas_of_one_database_are_independent() {
    let db = fresh_database_or_skip!("schemas");
    let clock = Arc::new(SystemClock);
    let a = PostgresStore::connect_with(db.url(), clock.clone(), PostgresOptions::default().schema("ledger_a"))
        .await
        .unwrap();
    let b = PostgresStore::connect_with(db.url(), clock, PostgresOptions::default().schema("ledger_b")).await.unwrap();
    assert_ne!(a.notify_channel(), b.notify_channel());
    let mut b_watch = b.head_watch();
    a.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 2))).await.unwrap();
    b.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 1))).await.unwrap();
    assert_eq!((a.head_position().await.unwrap(), b.head_position().await.unwrap()), (2, 1));
    // Long enough for a notification on a shared channel to have arrived.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(*b_watch.borrow_and_update(), 1, "ledger b's watch followed ledger a");
    assert_eq!(migration_rows(db.url(), "ledger_a").await.len(), SCHEMA_VERSION as usize);
    assert!(a.verify().await.unwrap().is_intact() && b.verify().await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_utf8_is_refused() {
    let db = fresh_database_or_skip!("encoding");
    let admin = db.admin().await;
    let name = format!("{}_ascii", db.name());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .unwrap();
    let url = db.url().replace(&format!("/{}", db.name()), &format!("/{name}"));
    match PostgresStore::connect(&url, Arc::new(SystemClock)).await {
        Err(StoreError::Backend(message)) => assert!(message.contains("encoded in SQL_ASCII"), "{message}"),
        other => panic!("expected a SQL_ASCII database to be refused, got {other:?}"),
    }
    admin.batch_execute(&format!("DROP DATABASE \"{name}\"")).await.unwrap();
}
