//! Servers that cannot be reached, refuse us, drop us mid-write, or go
//! away and come back: every failure is a clear `Unavailable` in bounded
//! time, nothing is ever half-written, and retrying with the same command
//! id appends exactly once.

use seatledger_store::conformance::{new_events, read_everything, stream_append, with_command};
use seatledger_store::{EventStore, ExpectedVersion, StoreError, Subscription, SystemClock};
use seatledger_store_postgres::testing::{TestServer, PASSWORD_ROLE};
use seatledger_store_postgres::{fresh_database_or_skip, PostgresOptions, PostgresStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> String {
    match result {
        Err(StoreError::Unavailable(message)) => {
            eprintln!("{what}: {message}");
            message
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unavailable_at_once_naming_the_server_but_not_the_password() {
    let port = free_port();
    let url = format!("postgres://ledger:hunter2@127.0.0.1:{port}/books");
    let options = PostgresOptions::default().connect_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let message = unavailable(
        PostgresStore::connect_with(&url, Arc::new(SystemClock), options).await,
        "connecting to a closed port",
    );
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(message.contains(&format!("ledger@127.0.0.1:{port}/books")), "{message}");
    assert!(!message.contains("hunter2"), "the password leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_within_the_connect_timeout() {
    // The kernel completes the TCP handshake for a listening socket even if
    // nobody accepts: the startup message then goes unanswered.
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://ledger@127.0.0.1:{port}/books");
    let options = PostgresOptions::default().connect_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let message = unavailable(
        PostgresStore::connect_with(&url, Arc::new(SystemClock), options).await,
        "connecting to a silent server",
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(message.contains("no answer within 1s"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}/books")), "{message}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_databases_and_wrong_passwords_say_what_is_wrong() {
    let db = fresh_database_or_skip!("credentials");
    let clock = Arc::new(SystemClock);
    let base = url_parts(db.url());

    let no_user = format!("postgres://nobody_by_that_name@{}/{}", base.0, db.name());
    let message = unavailable(PostgresStore::connect(&no_user, clock.clone()).await, "an unknown user");
    assert!(message.contains("role \"nobody_by_that_name\" does not exist"), "{message}");

    let no_db = format!("postgres://{}@{}/no_such_ledger", base.1, base.0);
    let message = unavailable(PostgresStore::connect(&no_db, clock.clone()).await, "an unknown database");
    assert!(message.contains("database \"no_such_ledger\" does not exist"), "{message}");
    assert!(message.contains("/no_such_ledger"), "{message}");

    if !db.is_private_server() {
        eprintln!("note: the password check needs a private test server; skipped on {}", db.url());
        return;
    }
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PASSWORD_ROLE}') THEN
                     CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'correct-horse';
                 END IF;
             END $$;
             GRANT CREATE ON DATABASE \"{}\" TO {PASSWORD_ROLE};",
            db.name()
        ))
        .await
        .unwrap();
    let wrong = format!("postgres://{PASSWORD_ROLE}:battery-staple@{}/{}", base.0, db.name());
    let message = unavailable(PostgresStore::connect(&wrong, clock.clone()).await, "a wrong password");
    assert!(message.contains(&format!("password authentication failed for user \"{PASSWORD_ROLE}\"")), "{message}");
    assert!(!message.contains("battery-staple"), "the password leaked: {message}");
    // The right password gets in: it was the password that was wrong.
    let right = format!("postgres://{PASSWORD_ROLE}:correct-horse@{}/{}", base.0, db.name());
    let store = PostgresStore::connect(&right, clock).await.expect("connecting with the right password");
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 1))).await.unwrap();
}

/// `host:port` and the user of a `postgres://user@host:port/db` URL.
fn url_parts(url: &str) -> (String, String) {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let (user, host) = authority.rsplit_once('@').unwrap();
    (host.to_owned(), user.split(':').next().unwrap().to_owned())
}

/// The pid of the backend serving one of the store's connections, waiting
/// until it is in the given state.
async fn backend_pid(admin: &tokio_postgres::Client, application_name: &str, wait_event: Option<&str>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                 AND ($2::text IS NULL OR wait_event = $2)",
                &[&application_name, &wait_event],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no backend {application_name} waiting on {wait_event:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn backend_pids(admin: &tokio_postgres::Client, application_name: &str) -> Vec<i32> {
    let sql = "SELECT pid FROM pg_stat_activity WHERE application_name = $1";
    let rows = admin.query(sql, &[&application_name]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

async fn terminate(admin: &tokio_postgres::Client, pid: i32) {
    let done: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(done, "pg_terminate_backend({pid}) failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_append_writes_nothing_and_the_retry_appends_once() {
    let db = fresh_database_or_skip!("killed");
    let options = PostgresOptions::default().application_name("fault");
    let store = PostgresStore::connect_with(db.url(), Arc::new(SystemClock), options).await.unwrap();
    store.append(stream_append("before", ExpectedVersion::NoStream, new_events("before", 2))).await.unwrap();

    // Make the second stream's insert hang, after the first stream's events
    // are already inserted in the same transaction.
    let admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE FUNCTION public.hang() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
             CREATE TRIGGER hang AFTER INSERT ON seatledger.events
                 FOR EACH ROW WHEN (NEW.stream = 'slow') EXECUTE FUNCTION public.hang();",
        )
        .await
        .unwrap();
    let (fast_cmd, slow_cmd) = (Uuid::now_v7(), Uuid::now_v7());
    let batch = vec![
        stream_append("fast", ExpectedVersion::NoStream, with_command(new_events("fast", 3), fast_cmd)),
        stream_append("slow", ExpectedVersion::NoStream, with_command(new_events("slow", 1), slow_cmd)),
    ];
    let started = Instant::now();
    let pending = {
        let store = Arc::new(store);
        let batch = batch.clone();
        let task_store = store.clone();
        (store, tokio::spawn(async move { task_store.append_many(batch).await }))
    };
    let (store, pending) = pending;
    let pid = backend_pid(&admin, "fault/writer", Some("PgSleep")).await;
    terminate(&admin, pid).await;
    let message = unavailable(pending.await.unwrap(), "an append whose connection was killed");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(message.contains("terminating connection") || message.contains("connection closed"), "{message}");
    admin.batch_execute("DROP TRIGGER hang ON seatledger.events").await.unwrap();

    // Nothing of the batch is stored: not the first stream either.
    assert_eq!(store.head_position().await.unwrap(), 2);
    assert_eq!(read_everything(&*store).await.len(), 2);
    assert_eq!(store.stream_version("fast").await.unwrap(), None);
    assert_eq!(store.command_outcome(fast_cmd).await.unwrap(), None);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact() && report.checked == 2, "{report:?}");

    // The retry, with the same command ids, appends once; the writer has
    // reconnected by itself.
    let outcomes = store.append_many(batch.clone()).await.expect("retrying after the connection was killed");
    assert!(outcomes.iter().all(|o| !o.deduplicated));
    assert_eq!((outcomes[0].first_position, outcomes[1].last_position), (3, 6));
    assert_eq!(store.write_stats().connects, 2, "the writer opened exactly one new connection");
    let again = store.append_many(batch).await.unwrap();
    assert!(again.iter().all(|o| o.deduplicated));
    assert_eq!(again[1].last_position, 6);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact() && report.checked == 6, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_while_idle_are_replaced_without_an_error() {
    let db = fresh_database_or_skip!("idle_kill");
    let options = PostgresOptions::default().application_name("idle");
    let store = PostgresStore::connect_with(db.url(), Arc::new(SystemClock), options).await.unwrap();
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 1))).await.unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
    let admin = db.admin().await;
    for name in ["idle/writer", "idle/reader"] {
        backend_pid(&admin, name, None).await;
        for pid in backend_pids(&admin, name).await {
            terminate(&admin, pid).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The writer reconnects before its next group; a read meeting a dead
    // pooled connection tries once more on a fresh one.
    store.append(stream_append("s", ExpectedVersion::Exact(0), new_events("s", 1))).await.unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
    assert_eq!(store.write_stats().connects, 2);

    // The listener reconnects too, and still hears other processes.
    let pid = backend_pid(&admin, "idle/listener", None).await;
    terminate(&admin, pid).await;
    let other = PostgresStore::connect(db.url(), Arc::new(SystemClock)).await.unwrap();
    let mut watch = store.head_watch();
    watch.borrow_and_update();
    tokio::time::sleep(Duration::from_millis(500)).await;
    other.append(stream_append("t", ExpectedVersion::NoStream, new_events("t", 1))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), watch.changed())
        .await
        .expect("the listener did not come back")
        .unwrap();
    assert_eq!(*watch.borrow(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_is_unavailable_and_everything_recovers_when_it_is_back() {
    let Some(server) = TestServer::start("stopped").await else { return };
    let url = server.create_database("ledger").await;
    let options = PostgresOptions::default().connect_timeout(Duration::from_secs(2)).application_name("stopped");
    let store: Arc<dyn EventStore> =
        Arc::new(PostgresStore::connect_with(&url, Arc::new(SystemClock), options).await.unwrap());
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 1))).await.unwrap();

    server.stop().await;
    let command_id = Uuid::now_v7();
    let append = stream_append("s", ExpectedVersion::Exact(0), with_command(new_events("s", 2), command_id));
    let started = Instant::now();
    let message = unavailable(store.append(append.clone()).await, "appending while the server is down");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(message.contains(&format!("127.0.0.1:{}/ledger", server.port())), "{message}");
    unavailable(store.read_all(0, 10).await, "reading while the server is down");
    unavailable(store.head_position().await, "reading the head while the server is down");

    server.restart().await;
    // The same command again: it never reached the server, so it appends now.
    let outcome = store.append(append.clone()).await.expect("appending once the server is back");
    assert_eq!((outcome.first_position, outcome.last_position, outcome.deduplicated), (2, 3, false));
    let retry = store.append(append).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(read_everything(&*store).await.len(), 3);

    // The listener found the server again: another process's append wakes
    // a subscription that would otherwise poll once a minute.
    let other = PostgresStore::connect(&url, Arc::new(SystemClock)).await.unwrap();
    let mut subscription = Subscription::new(store.clone(), 3).with_poll_interval(Duration::from_secs(60));
    let follower = tokio::spawn(async move { subscription.next().await });
    // Wait for the listener to be back: connected, listening, and idle
    // after reading the head once.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'stopped/listener' AND state = 'idle' \
             AND query LIKE 'SELECT position, hash FROM%'",
            &[],
        )
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the listener did not reconnect within 10 s of the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other.append(stream_append("t", ExpectedVersion::NoStream, new_events("t", 1))).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("the subscription was not woken after the restart")
        .unwrap()
        .unwrap();
    assert_eq!((event.position, event.stream.as_str()), (4, "t"));
    let report = store.verify().await.unwrap();
    assert!(report.is_intact() && report.checked == 4, "{report:?}");
}
