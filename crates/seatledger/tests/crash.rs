//! A process killed in the middle of an import leaves the store at a clean
//! batch boundary, with an intact chain, and the same import resumes.

use seatledger_store::{EventStore, SystemClock};
use seatledger_store_sqlite::SqliteStore;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: usize = 300_000;
const BATCH: u64 = seatledger_app::transfer::IMPORT_BATCH as u64;

/// An export file: one workspace stream with many groups.
fn write_history(path: &std::path::Path) -> Vec<String> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ids = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128);
        let (ty, payload) = if i == 0 {
            ("WorkspaceCreated", r#"{"workspace":"big","name":"Big","billing_mode":"single","created_on":"2024-01-05","legacy_plan":null}"#.to_owned())
        } else {
            ("GroupCreated", format!(r#"{{"group":"g{i}","name":"Group {i}"}}"#))
        };
        writeln!(
            out,
            r#"{{"position":{p},"id":"{id}","stream":"workspace-big","stream_version":{i},"type":"{ty}","schema_version":1,"recorded_at":"2024-01-05T10:00:00Z","effective_at":"2024-01-05T10:00:00Z","actor":"gen","channel":"system","correlation_id":"{id}","causation_id":null,"command_id":null,"payload":{payload},"hash":"00"}}"#,
            p = i + 1
        )
        .unwrap();
        ids.push(id.to_string());
    }
    out.flush().unwrap();
    ids
}

async fn head_of(db: &std::path::Path) -> u64 {
    let store = SqliteStore::open(db, Arc::new(SystemClock)).unwrap();
    store.head_position().await.unwrap()
}

/// While the child creates the file, opening it may fail (schema not there
/// yet, or the creating transaction holds the lock): that is "not yet".
async fn head_if_ready(db: &std::path::Path) -> Option<u64> {
    let store = SqliteStore::open(db, Arc::new(SystemClock)).ok()?;
    store.head_position().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_stops_at_a_batch_boundary_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let db = dir.path().join("ledger.db");
    let ids = write_history(&file);
    let store_url = format!("sqlite:{}", db.display());

    let mut child = Command::new(env!("CARGO_BIN_EXE_seatledger"))
        .args(["--store", &store_url, "import", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are committed, then kill it without warning.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "the import never started writing");
        assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed; raise EVENTS");
        if db.exists() && head_if_ready(&db).await.is_some_and(|head| head >= 3 * BATCH) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = SqliteStore::open(&db, Arc::new(SystemClock)).unwrap();
    let head = store.head_position().await.unwrap();
    assert!(head > 0 && head < EVENTS as u64, "killed at {head}");
    assert_eq!(head % BATCH, 0, "the store stopped inside a batch: {head} events");
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, head);
    // What is there is exactly the first `head` events of the file.
    let stored = store.read_all(head - 5, 10).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(), ids[head as usize - 5..head as usize]);
    drop(store);

    // Running the same import again writes the rest and skips the rest.
    let out = Command::new(env!("CARGO_BIN_EXE_seatledger"))
        .args(["--store", &store_url, "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("{} events imported, {head} already present", EVENTS as u64 - head);
    assert!(stdout.contains(&expected), "{stdout}");
    assert_eq!(head_of(&db).await, EVENTS as u64);
}
