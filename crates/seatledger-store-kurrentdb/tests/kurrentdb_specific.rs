//! What the conformance suite cannot show about the KurrentDB backend: that
//! it really speaks gRPC to a node, how it fails when the node is away or a
//! call is cut off, how it finds the leader of a cluster, and the limits of
//! a node. All against the protocol double, which is NOT a real server: it
//! runs the real client over real gRPC, with the behaviours documented in
//! the `kurrentdb-double` crate and docs/kurrentdb.md.

use kurrentdb_double::{Double, DoubleConfig, Fault, SERVER_DEFAULT_MAX_APPEND_SIZE};
use seatledger_store::conformance::{new_event, new_events, read_everything, stream_append, with_command, PATIENCE};
use seatledger_store::{
    AppendOutcome, EventStore, ExpectedVersion, StoreError, StoredEvent, Subscription, SystemClock,
};
use seatledger_store_kurrentdb::{KurrentDbOptions, KurrentDbStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn connect(url: &str) -> KurrentDbStore {
    KurrentDbStore::connect(url, Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("connecting to {url} failed: {e}"))
}

async fn connect_with(url: &str, namespace: &str, timeout: Duration) -> Result<KurrentDbStore, StoreError> {
    let options = KurrentDbOptions { namespace: namespace.to_owned(), timeout };
    KurrentDbStore::connect_with_options(url, options, Arc::new(SystemClock)).await
}

/// The ledger events the double holds for stream `s` of the default namespace.
fn stored_ids(double: &Double, stream: &str) -> Vec<Uuid> {
    let server_stream = format!("seatledger-{stream}");
    double.records().into_iter().filter(|r| r.stream == server_stream).map(|r| r.id).collect()
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> String {
    match result {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The wire.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_talks_grpc_to_the_double_as_to_an_older_node() {
    let double = Double::start().await;
    let store: Arc<dyn EventStore> = Arc::new(connect(&double.connection_string()).await);
    let events = new_events("wire", 3);
    store.append(stream_append("s", ExpectedVersion::NoStream, events.clone())).await.expect("append failed");
    let mut subscription = Subscription::new(store.clone(), 0);
    let first = tokio::time::timeout(PATIENCE, subscription.next()).await.expect("subscription hung").expect("read");
    assert_eq!(first.id, events[0].id);

    let calls = double.calls();
    assert!(calls.server_features >= 1, "the client probed the node's features: {calls:?}");
    assert!(calls.appends >= 1 && calls.reads >= 1, "appends and reads went over gRPC: {calls:?}");
    assert!(calls.subscriptions >= 1, "the store follows the log with subscribe_to_all: {calls:?}");
    assert_eq!(calls.unimplemented, 0, "a node without the feature probe gets the legacy append only: {calls:?}");
    assert_eq!(stored_ids(&double, "s"), events.iter().map(|e| e.id).collect::<Vec<_>>(), "ids are the event ids");

    // The probe was answered UNIMPLEMENTED, so the client sees an old node
    // that reported no version and no features.
    let settings: kurrentdb::ClientSettings = double.connection_string().parse().expect("connection string");
    let client = kurrentdb::Client::new(settings).expect("client");
    let info = client.server_info().await.expect("server info");
    assert_eq!(info.version().to_string(), "0.0.0", "no version reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_with_seatledger_metadata_and_the_servers_conventions() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    let mut event = new_event(r#"{"seats":3}"#);
    event.metadata.command_id = Some(Uuid::now_v7());
    store.append(stream_append("pool-ws42", ExpectedVersion::NoStream, vec![event.clone()])).await.expect("append");

    let settings: kurrentdb::ClientSettings = double.connection_string().parse().expect("connection string");
    let client = kurrentdb::Client::new(settings).expect("client");
    let mut read = client.read_stream("seatledger-pool-ws42", &Default::default()).await.expect("read");
    let raw = read.next().await.expect("read").expect("one event");
    let raw = raw.get_original_event();
    assert_eq!((raw.id, raw.revision, raw.event_type.as_str()), (event.id, 0, "ConformanceChecked"));
    assert!(raw.is_json, "content type JSON");
    assert_eq!(&raw.data[..], event.payload.as_bytes(), "the payload byte for byte");
    let metadata: serde_json::Value = serde_json::from_slice(&raw.custom_metadata).expect("metadata is JSON");
    assert_eq!(metadata["$correlationId"], event.metadata.correlation_id.to_string());
    assert_eq!(metadata["$causationId"], event.metadata.causation_id.expect("causation").to_string());
    assert_eq!(metadata["command_id"], event.metadata.command_id.expect("command").to_string());
    for key in ["schema_version", "recorded_at", "effective_at", "actor", "channel", "correlation_id", "hash"] {
        assert!(metadata.get(key).is_some(), "metadata has no `{key}`: {metadata}");
    }
}

// ---------------------------------------------------------------------------
// A node that is not there.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_unavailable_at_once_and_names_the_url_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("kurrentdb://admin:s3cret@127.0.0.1:{port}?tls=false");
    let started = Instant::now();
    let message = assert_unavailable(connect_with(&url, "seatledger", Duration::from_secs(5)).await, "refused");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(message.contains(&format!("admin:***@127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("s3cret"), "the password leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_is_unavailable_within_the_timeout() {
    // Accepts connections and says nothing, like a hung node or a firewall
    // that swallows packets after the handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let result = connect_with(&format!("kurrentdb://{addr}?tls=false"), "seatledger", Duration::from_secs(1)).await;
    let message = assert_unavailable(result, "a silent node");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(message.contains("did not answer within 1s"), "{message}");
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_is_unavailable_within_the_timeout() {
    let started = Instant::now();
    let result =
        connect_with("kurrentdb://no-such-node.invalid:2113?tls=false", "seatledger", Duration::from_secs(2)).await;
    let message = assert_unavailable(result, "an unknown host");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(message.contains("no-such-node.invalid"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connection_strings_and_namespaces_are_refused_clearly() {
    fn invalid_config(result: Result<KurrentDbStore, StoreError>, what: &str) -> String {
        match result {
            Err(StoreError::InvalidConfig(message)) => message,
            Err(other) => panic!("{what}: expected InvalidConfig, got {other}"),
            Ok(_) => panic!("{what}: connected"),
        }
    }
    for url in ["http://localhost:2113", "kurrentdb://", "kurrentdb://admin:s3cret@node:notaport", "not a url"] {
        let message = invalid_config(connect_with(url, "seatledger", Duration::from_secs(1)).await, url);
        assert!(message.contains("invalid KurrentDB connection string"), "{url}: {message}");
        assert!(!message.contains("s3cret"), "the password leaked: {message}");
    }
    let message = invalid_config(
        connect_with("kurrentdb://127.0.0.1:1?tls=false", "not-a-namespace", Duration::from_secs(1)).await,
        "a namespace with a dash",
    );
    assert!(message.contains("invalid KurrentDB namespace"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_down_gives_unavailable_and_the_store_recovers_when_it_is_back() {
    let mut double = Double::start().await;
    let options = KurrentDbOptions { timeout: Duration::from_secs(3), ..KurrentDbOptions::default() };
    let store = KurrentDbStore::connect_with_options(&double.connection_string(), options, Arc::new(SystemClock))
        .await
        .expect("connect");
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("before", 2))).await.expect("append");

    double.stop();
    let started = Instant::now();
    let down = store.append(stream_append("s", ExpectedVersion::Exact(1), new_events("down", 1))).await;
    assert_unavailable(down, "an append while the node is down");
    assert_unavailable(store.read_all(0, 10).await, "a read while the node is down");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());

    double.restart();
    let back = store.append(stream_append("s", ExpectedVersion::Exact(1), new_events("back", 1))).await;
    assert_eq!(back.expect("appending once the node is back").first_version, 2);
    assert_eq!(read_everything(&store).await.len(), 3, "nothing was lost or half-written");
}

// ---------------------------------------------------------------------------
// A call cut off in flight.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_before_the_write_writes_nothing_and_the_retry_appends_once() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("first", 1))).await.expect("append");
    let command_id = Uuid::now_v7();
    let events = with_command(new_events("cmd", 3), command_id);

    double.fail_next_append_to("seatledger-s", Fault::DropConnectionBeforeWrite);
    let cut = store.append(stream_append("s", ExpectedVersion::Exact(0), events.clone())).await;
    let message = assert_unavailable(cut, "an append whose connection dropped");
    assert!(message.contains("may or may not have happened, and retrying it with the same command id"), "{message}");
    assert_eq!(stored_ids(&double, "s").len(), 1, "none of the batch was written");
    assert_eq!(store.command_outcome(command_id).await.expect("command_outcome"), None, "the command never landed");

    let retry = store.append(stream_append("s", ExpectedVersion::Exact(0), events.clone())).await.expect("retry");
    assert_eq!((retry.first_version, retry.last_version, retry.deduplicated), (1, 3, false));
    let again = store
        .append(stream_append("s", ExpectedVersion::Exact(0), with_command(new_events("rebuilt", 3), command_id)))
        .await
        .expect("a second retry");
    assert_eq!(again, AppendOutcome { deduplicated: true, ..retry });
    let mut expected: Vec<Uuid> = vec![stored_ids(&double, "s")[0]];
    expected.extend(events.iter().map(|e| e.id));
    assert_eq!(stored_ids(&double, "s"), expected, "the batch is stored once, whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_the_write_is_recognised_by_the_retry() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    let command_id = Uuid::now_v7();
    let events = with_command(new_events("cmd", 3), command_id);

    double.fail_next_append_to("seatledger-s", Fault::DropConnectionAfterWrite);
    assert_unavailable(
        store.append(stream_append("s", ExpectedVersion::NoStream, events.clone())).await,
        "an append whose answer was lost",
    );
    assert_eq!(stored_ids(&double, "s"), events.iter().map(|e| e.id).collect::<Vec<_>>(), "stored whole");
    let landed = store.command_outcome(command_id).await.expect("command_outcome").expect("the command landed");
    assert_eq!((landed.first_version, landed.last_version), (0, 2));

    // The caller rebuilt its events (new ids) but kept the command id.
    let rebuilt = with_command(new_events("rebuilt", 3), command_id);
    let retry = store.append(stream_append("s", ExpectedVersion::NoStream, rebuilt)).await.expect("retry");
    assert_eq!(retry, AppendOutcome { deduplicated: true, ..landed });
    assert_eq!(stored_ids(&double, "s").len(), 3, "the retry wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_command_id_the_retry_is_recognised_by_its_event_ids() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    let events = new_events("ids", 2);
    double.fail_next_append_to("seatledger-s", Fault::DropConnectionAfterWrite);
    assert_unavailable(store.append(stream_append("s", ExpectedVersion::NoStream, events.clone())).await, "cut");
    let retry = store.append(stream_append("s", ExpectedVersion::NoStream, events)).await.expect("retry");
    assert!(retry.deduplicated, "the retry found the events it had sent");
    assert_eq!(stored_ids(&double, "s").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_cut_off_in_flight_is_safe_to_retry() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    let command_id = Uuid::now_v7();
    let events = with_command(new_events("cmd", 2), command_id);
    double.fail_next_append_to(&format!("seatledger~command-{command_id}"), Fault::DropConnectionAfterWrite);
    assert_unavailable(store.append(stream_append("s", ExpectedVersion::NoStream, events.clone())).await, "cut");
    assert!(stored_ids(&double, "s").is_empty(), "the events were never sent");
    let retry = store.append(stream_append("s", ExpectedVersion::NoStream, events)).await.expect("retry");
    assert_eq!((retry.first_version, retry.last_version, retry.deduplicated), (0, 1, false));
    assert_eq!(stored_ids(&double, "s").len(), 2);
}

// ---------------------------------------------------------------------------
// Clusters (of doubles: one leader and followers sharing one in-memory log,
// which is no replication; what runs for real is the client's discovery,
// node selection and not-leader handling).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_seeds_and_discovery_find_the_node() {
    let double = Double::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let seeds = format!("esdb://{dead},{}?tls=false&nodePreference=leader", double.addr());
    let store = connect(&seeds).await;
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("seeds", 1))).await.expect("append");
    let discover = format!("kurrentdb+discover://{}?tls=false&nodePreference=leader", double.addr());
    let store = connect(&discover).await;
    store.append(stream_append("s", ExpectedVersion::Exact(0), new_events("discover", 1))).await.expect("append");
    assert!(double.calls().gossip >= 2, "both connections asked gossip for the members: {:?}", double.calls());
    assert_eq!(stored_ids(&double, "s").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_the_client_to_the_leader_and_the_store_retries_there() {
    let leader = Double::start().await;
    let follower = Double::start_follower_of(&leader).await;

    // Pointed straight at the follower.
    let store = connect(&follower.connection_string()).await;
    let outcome =
        store.append(stream_append("s", ExpectedVersion::NoStream, new_events("f", 2))).await.expect("append");
    assert_eq!((outcome.first_version, outcome.last_version), (0, 1));
    assert!(follower.calls().not_leader >= 1, "the follower refused: {:?}", follower.calls());
    assert!(leader.calls().appends >= 1, "the append went to the leader: {:?}", leader.calls());

    // Through gossip, preferring a follower: writes still reach the leader.
    let seeds = format!("esdb://{},{}?tls=false&nodePreference=follower", leader.addr(), follower.addr());
    let store = connect(&seeds).await;
    store.append(stream_append("s", ExpectedVersion::Exact(1), new_events("g", 1))).await.expect("append");
    assert_eq!(read_everything(&store).await.len(), 3);
}

// ---------------------------------------------------------------------------
// Several processes, several ledgers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_append_wakes_a_subscription_through_subscribe_to_all() {
    let double = Double::start().await;
    let reader: Arc<dyn EventStore> = Arc::new(connect(&double.connection_string()).await);
    let writer = connect(&double.connection_string()).await;
    // Polling is off: only the head watch, moved by the store's `$all`
    // subscription, can wake this subscription.
    let mut subscription = Subscription::new(reader.clone(), 0).with_poll_interval(Duration::from_secs(3600));
    assert!(subscription.try_next().await.expect("read").is_none());
    let waiting = tokio::spawn(async move { subscription.next().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = new_events("other", 1);
    writer.append(stream_append("s", ExpectedVersion::NoStream, sent.clone())).await.expect("append");
    let event = tokio::time::timeout(PATIENCE, waiting).await.expect("not woken").expect("task").expect("read");
    assert_eq!(event.id, sent[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_ledgers_apart_and_bookkeeping_out_of_the_log() {
    let double = Double::start().await;
    let url = double.connection_string();
    let alpha = connect_with(&url, "alpha", Duration::from_secs(10)).await.expect("connect alpha");
    let beta = connect_with(&url, "beta", Duration::from_secs(10)).await.expect("connect beta");
    let command = with_command(new_events("a", 1), Uuid::now_v7());
    alpha.append(stream_append("s", ExpectedVersion::NoStream, command)).await.expect("append");
    beta.append(stream_append("s", ExpectedVersion::NoStream, new_events("b", 2))).await.expect("append");
    alpha.save_checkpoint("licences", &seatledger_store::Checkpoint { position: 1, state: None }).await.expect("save");

    let streams: Vec<String> = double.records().into_iter().map(|r| r.stream).collect();
    assert!(streams.iter().any(|s| s.starts_with("alpha~command-")), "{streams:?}");
    assert!(streams.iter().any(|s| s == "alpha~checkpoint-licences"), "{streams:?}");
    let alpha_log = read_everything(&alpha).await;
    assert_eq!(alpha_log.len(), 1, "alpha sees its one event, no bookkeeping, nothing of beta");
    assert_eq!(read_everything(&beta).await.len(), 2);
    assert_eq!(alpha.stream_version("s").await.expect("version"), Some(0));
    assert_eq!(beta.stream_version("s").await.expect("version"), Some(1));
    assert_eq!(alpha.head_position().await.expect("head"), alpha_log[0].position);

    // The connection string may name the namespace (seatledger's own parameter).
    let named = connect(&format!("{url}&namespace=beta")).await;
    assert_eq!((named.namespace(), read_everything(&named).await.len()), ("beta", 2));
    let both = connect_with(&format!("{url}&namespace=beta"), "alpha", Duration::from_secs(10)).await;
    assert!(matches!(both, Err(StoreError::InvalidConfig(ref m)) if m.contains("give one")), "{both:?}");
}

// ---------------------------------------------------------------------------
// Limits of a node, verification, import.

/// An event as an export from another store carries it.
fn exported(stream: &str, stream_version: u64, second: i64, payload: String) -> StoredEvent {
    let at = chrono::DateTime::from_timestamp(1_700_000_000 + second, 0).expect("instant");
    let event = new_event("{}");
    StoredEvent {
        position: 0,
        id: Uuid::now_v7(),
        stream: stream.into(),
        stream_version,
        event_type: "Exported".into(),
        schema_version: 1,
        recorded_at: at,
        metadata: event.metadata,
        payload,
        hash: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_larger_than_the_node_accepts_is_refused_whole_and_an_import_of_it_fits() {
    let double = Double::start_with(DoubleConfig { max_append_size: SERVER_DEFAULT_MAX_APPEND_SIZE }).await;
    let store = connect(&double.connection_string()).await;
    let blob = "x".repeat(600 * 1024);
    let big = vec![new_event(&format!(r#"{{"blob":"{blob}"}}"#)), new_event(&format!(r#"{{"blob":"{blob}"}}"#))];
    match store.append(stream_append("s", ExpectedVersion::NoStream, big)).await {
        Err(StoreError::InvalidAppend(message)) => {
            assert!(message.contains("larger than the server accepts"), "{message}")
        }
        other => panic!("expected InvalidAppend for an append over the node's limit, got {other:?}"),
    }
    assert!(stored_ids(&double, "s").is_empty(), "nothing of it was written");

    let export: Vec<StoredEvent> =
        (0..2).map(|v| exported("s", v, v as i64, format!(r#"{{"blob":"{blob}","v":{v}}}"#))).collect();
    let imported = store.import(export).await.expect("an import is cut into appends the node accepts");
    assert_eq!(imported.imported, 2);
    assert!(store.verify().await.expect("verify").is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_by_skipping_what_is_stored() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    let export: Vec<StoredEvent> = (0..600)
        .map(|v| exported("a", v, v as i64, format!(r#"{{"v":{v}}}"#)))
        .chain((0..600).map(|v| exported("b", v, 600 + v as i64, format!(r#"{{"v":{v}}}"#))))
        .collect();
    double.fail_next_append_to("seatledger-b", Fault::DropConnectionBeforeWrite);
    assert_unavailable(store.import(export.clone()).await, "an import cut off in flight");
    assert_eq!((stored_ids(&double, "a").len(), stored_ids(&double, "b").len()), (600, 0));

    let resumed = store.import(export.clone()).await.expect("resuming the import");
    assert_eq!((resumed.imported, resumed.skipped), (600, 600));
    let all = read_everything(&store).await;
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), export.iter().map(|e| e.id).collect::<Vec<_>>());
    let report = store.verify().await.expect("verify");
    assert_eq!((report.checked, report.is_intact()), (1_200, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_an_event_written_behind_the_stores_back() {
    let double = Double::start().await;
    let store = connect(&double.connection_string()).await;
    store.append(stream_append("s", ExpectedVersion::NoStream, new_events("s", 2))).await.expect("append");
    let genuine = read_everything(&store).await.pop().expect("an event");

    // A forged event: the metadata of a genuine one, another payload.
    let settings: kurrentdb::ClientSettings = double.connection_string().parse().expect("connection string");
    let client = kurrentdb::Client::new(settings).expect("client");
    let mut read = client.read_stream("seatledger-s", &Default::default()).await.expect("read");
    let mut metadata = Vec::new();
    while let Some(e) = read.next().await.expect("read") {
        metadata = e.get_original_event().custom_metadata.to_vec();
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata).expect("metadata");
    let payload = serde_json::json!({"forged": true});
    let forged = kurrentdb::EventData::json("ConformanceChecked", &payload)
        .and_then(|e| e.metadata_as_json(&metadata))
        .expect("event")
        .id(Uuid::now_v7());
    let options = kurrentdb::AppendToStreamOptions::default().stream_state(kurrentdb::StreamState::StreamRevision(1));
    client.append_to_stream("seatledger-s", &options, forged).await.expect("forging");

    let report = store.verify().await.expect("verify");
    let broken = report.first_broken.expect("the forged event was not found");
    assert_eq!((broken.stream.as_str(), broken.stream_version, report.checked), ("s", 2, 2));
    assert!(broken.position > genuine.position);
}
