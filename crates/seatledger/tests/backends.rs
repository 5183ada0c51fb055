//! One history, every backend: a ledger built on SQLite is migrated to
//! PostgreSQL and to KurrentDB (the in-repo protocol double), and every read
//! the CLI offers — licence state, change log, audit log, invoices, reports,
//! the reporting data — must print the same bytes on each.
//!
//! The only field allowed to differ is the global position on KurrentDB,
//! whose positions are the server's commit positions rather than 1, 2, 3, …:
//! there, positions are replaced by their rank before comparing.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn run(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seatledger"))
        .args(args)
        .env("SEATLEDGER_STORE", store)
        .env_remove("SEATLEDGER_LOG")
        .output()
        .unwrap()
}

fn ok(store: &str, args: &[&str]) -> String {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "{args:?} on {store} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(path).display().to_string()
}

/// The seed scenarios, golden scenario 12 with March issued and then
/// corrected by a debit note, on a fresh SQLite file.
fn sqlite_ledger(dir: &Path) -> String {
    let store = format!("sqlite:{}", dir.join("ledger.db").display());
    ok(&store, &["demo"]);
    ok(&store, &["apply", &fixture("invoices/12-dispute/commands.jsonl")]);
    ok(&store, &["invoice", "issue", "--workspace", "dispute", "--account", "dsp", "--period", "2024-03"]);
    let change = dir.join("change.jsonl");
    std::fs::write(
        &change,
        r#"{"command":"change_quantity","workspace":"dispute","at":"2024-03-17T00:00:00Z","actor":"ops@golden.example","channel":"portal","subscription":"s","quantity":5,"order":{"ordered_by":"ops@golden.example"},"subscription_channel":"portal"}"#,
    )
    .unwrap();
    ok(&store, &["apply", change.to_str().unwrap()]);
    ok(&store, &["invoice", "correct", "dispute-dsp-2024-03"]);
    store
}

/// Every read compared across backends, with `--json`.
const READS: &[&[&str]] = &[
    &["state", "--at", "2024-03-31"],
    &["changelog"],
    &["audit", "--limit", "1000"],
    &["invoice", "show", "dispute-dsp-2024-03"],
    &["invoice", "reproduce", "dispute-dsp-2024-03"],
    &["invoice", "diff", "dispute-dsp-2024-03"],
    &["invoice", "preview", "--workspace", "dispute", "--period", "2024-03"],
    &["invoice", "preview", "--workspace", "fabrikam", "--period", "2024-03"],
    &["licences", "list", "--workspace", "contoso-lm", "--at", "2024-03-31"],
    &["report", "licences", "--workspace", "contoso-lm", "--sku", "HYBRID-SEAT", "--month", "2024-02"],
    &["report", "additions", "--workspace", "contoso-lm", "--month", "2024-02"],
    &["overview"],
    &["licensing-report", "--version", "4.0"],
    &["licensing-report", "--version", "3.5"],
];

fn reads(store: &str, which: &[&[&str]]) -> Vec<String> {
    which.iter().map(|args| ok(store, &[*args, &["--json"][..]].concat())).collect()
}

/// Replace every global position in a JSON document by its rank among all
/// positions the ledger holds, so that two backends with different position
/// schemes compare on what the positions mean.
fn ranked(text: &str, positions: &[u64], stored_documents: bool) -> Value {
    fn walk(v: &mut Value, positions: &[u64], stored_documents: bool) {
        match v {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    // An issued document keeps the position it was computed
                    // at in the issuing ledger's numbering: compared as is.
                    let kept = stored_documents && key == "computed_at_position";
                    let is_position = !kept
                        && (key == "position"
                            || key.ends_with("_position")
                            || key == "after"
                            || key == "next_after"
                            || key == "cursor");
                    match value {
                        Value::Number(n) if is_position => {
                            if let Some(p) = n.as_u64() {
                                let rank = positions.partition_point(|q| *q < p) as u64 + u64::from(p > 0);
                                *value = Value::from(rank);
                            }
                        }
                        _ => walk(value, positions, stored_documents),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, positions, stored_documents)),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    walk(&mut v, positions, stored_documents);
    v
}

fn exported_positions(store: &str, dir: &Path, name: &str) -> Vec<u64> {
    let out = dir.join(name);
    ok(store, &["export", "--out", out.to_str().unwrap()]);
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["position"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_print_the_same_bytes_after_a_migration_and_an_import() {
    let Some(db) = seatledger_store_postgres::testing::fresh_database("cli_backends").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_ledger(dir.path());
    let postgres = db.url().to_owned();
    let migrated = ok(&sqlite, &["migrate", "--from", &sqlite, "--to", &postgres, "--json"]);
    let report: Value = serde_json::from_str(&migrated).unwrap();
    let copied = report["copied"].as_u64().unwrap();
    assert!(copied > 100, "{report}");
    assert_eq!(report["source_events"], report["copied"]);

    let (on_sqlite, on_postgres) = (reads(&sqlite, READS), reads(&postgres, READS));
    for ((args, a), b) in READS.iter().zip(&on_sqlite).zip(&on_postgres) {
        assert_eq!(a, b, "`{}` differs between SQLite and PostgreSQL", args.join(" "));
    }
    assert!(ok(&postgres, &["verify"]).contains("hash chain intact"));

    // The same through a file: export from SQLite, import into another database.
    let Some(db2) = seatledger_store_postgres::testing::fresh_database("cli_backends_import").await else { return };
    let file = dir.path().join("export.jsonl");
    ok(&sqlite, &["export", "--out", file.to_str().unwrap()]);
    let imported = ok(db2.url(), &["import", file.to_str().unwrap(), "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&imported).unwrap()["imported"].as_u64(), Some(copied));
    for ((args, a), b) in READS.iter().zip(&on_sqlite).zip(reads(db2.url(), READS)) {
        assert_eq!(*a, b, "`{}` differs between SQLite and PostgreSQL after export and import", args.join(" "));
    }

    // Migrating again copies nothing.
    let again: Value =
        serde_json::from_str(&ok(&sqlite, &["migrate", "--from", &sqlite, "--to", &postgres, "--json"])).unwrap();
    assert_eq!((again["copied"].as_u64(), again["source_events"].as_u64()), (Some(0), Some(copied)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_kurrentdb_give_the_same_reads_up_to_position_numbering() {
    let double = kurrentdb_double::Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_ledger(dir.path());
    let kurrent = double.connection_string();
    let migrated: Value =
        serde_json::from_str(&ok(&sqlite, &["migrate", "--from", &sqlite, "--to", &kurrent, "--json"])).unwrap();
    assert_eq!(migrated["source_events"], migrated["copied"]);

    let sqlite_positions = exported_positions(&sqlite, dir.path(), "sqlite.jsonl");
    let kurrent_positions = exported_positions(&kurrent, dir.path(), "kurrent.jsonl");
    assert_eq!(sqlite_positions.len(), kurrent_positions.len());
    for ((args, a), b) in READS.iter().zip(reads(&sqlite, READS)).zip(reads(&kurrent, READS)) {
        // An issued invoice records the position it was computed at in the
        // numbering of the ledger that issued it (here SQLite's), and its
        // reproduction carries that same position: compared as is.
        let stored = args.starts_with(&["invoice", "show"]) || args.starts_with(&["invoice", "reproduce"]);
        assert_eq!(
            ranked(&a, &sqlite_positions, stored),
            ranked(&b, &kurrent_positions, stored),
            "`{}` differs between SQLite and KurrentDB",
            args.join(" ")
        );
    }
    assert!(ok(&kurrent, &["verify"]).contains("hash chain intact"));
}

#[test]
fn an_unreachable_server_is_a_clear_error_within_a_bounded_time() {
    // Port 1 on loopback: nothing listens there.
    for store in ["postgres://seatledger@127.0.0.1:1/ledger", "kurrentdb://127.0.0.1:1?tls=false"] {
        let started = std::time::Instant::now();
        let out = run(store, &["state"]);
        let elapsed = started.elapsed();
        assert!(!out.status.success(), "{store}: state succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("127.0.0.1:1"), "{store}: the error names the server: {stderr}");
        assert!(stderr.contains("unavailable"), "{store}: the error says the store is unavailable: {stderr}");
        assert!(elapsed < std::time::Duration::from_secs(20), "{store}: took {elapsed:?}");
    }
}

#[test]
fn passwords_never_appear_in_errors() {
    let out = run("postgres://seatledger:hunter2@127.0.0.1:1/ledger", &["state"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("seatledger:***@127.0.0.1:1"), "{stderr}");
}
