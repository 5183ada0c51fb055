//! The `seatledger` binary end to end, on real SQLite files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Ledger {
    dir: tempfile::TempDir,
}

impl Ledger {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn store(&self) -> String {
        format!("sqlite:{}", self.dir.path().join("ledger.db").display())
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_seatledger"))
            .args(args)
            .env("SEATLEDGER_STORE", self.store())
            .env_remove("SEATLEDGER_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn head(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["verify", "--json"])).unwrap();
        v["checked"].as_u64().unwrap()
    }
}

const SETUP: &str = r#"{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}
{"command":"set_price","at":"2024-01-02T08:00:00Z","sku":"SEAT","price":{"price_list":"std","selling_per_unit":{"amount":"31","currency":"EUR"},"cost_per_unit":{"amount":"20","currency":"EUR"}}}
{"command":"create_workspace","workspace":"acme","at":"2024-03-01T09:00:00Z","actor":"ops@acme.example","name":"Acme","billing_mode":"single","created_on":"2024-03-01"}
{"command":"open_billing_account","workspace":"acme","at":"2024-03-01T09:00:00Z","account":"main","name":"Acme","currency":"EUR","tax_rate":"21"}
{"command":"create_organization","workspace":"acme","at":"2024-03-01T09:00:00Z","org":"hq","name":"HQ"}
{"command":"create_subscription","workspace":"acme","at":"2024-03-01T09:00:00Z","subscription":"s1","account":"main","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":2,"order":{"ordered_by":"ops@acme.example","order_reference":"SO-1"},"price_list":"std","currency":"EUR"}
"#;

fn user(id: &str) -> String {
    format!(
        r#"{{"command":"add_user","workspace":"acme","at":"2024-03-02T09:00:00Z","user":"{id}","org":"hq","profile":{{"first_name":"F","last_name":"L","email":"{id}@acme.example","username":"{id}"}}}}"#
    )
}

fn assign(id: &str) -> String {
    format!(
        r#"{{"command":"assign_module","workspace":"acme","at":"2024-03-02T10:00:00Z","sku":"SEAT","target":{{"user":"{id}"}}}}"#
    )
}

#[test]
fn apply_then_inspect_state_changelog_audit_and_verify() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    let out = l.ok(&["apply", setup.to_str().unwrap()]);
    assert!(out.contains("6 command(s) applied (7 events)"), "{out}");
    let users = l.file("users.jsonl", &[user("u1"), user("u2"), assign("u1")].join("\n"));
    l.ok(&["apply", users.to_str().unwrap()]);

    let state: serde_json::Value = serde_json::from_str(&l.ok(&["state", "--json", "--at", "2024-03-31"])).unwrap();
    let pool = &state["pools"][0];
    assert_eq!(
        (pool["sku"].as_str(), pool["total"].as_u64(), pool["assigned"].as_u64(), pool["available"].as_u64()),
        (Some("SEAT"), Some(2), Some(1), Some(1))
    );

    let log: serde_json::Value = serde_json::from_str(&l.ok(&["changelog", "--json"])).unwrap();
    assert_eq!(log[0]["to"], 2);
    assert_eq!(log[0]["order_reference"], "SO-1");

    let page: serde_json::Value = serde_json::from_str(&l.ok(&["audit", "--json", "--entity", "user:u1"])).unwrap();
    let types: Vec<&str> =
        page["entries"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["UserAdded", "ModuleAssigned"]);

    let text = l.ok(&["verify"]);
    assert!(text.contains("hash chain intact: 10 events verified"), "{text}");
    let table = l.ok(&["state", "--at", "2024-03-31"]);
    assert!(table.contains("SEAT") && table.contains("Available"), "{table}");
}

#[test]
fn applying_the_same_file_twice_appends_nothing_new() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    let head = l.head();
    let out = l.ok(&["apply", setup.to_str().unwrap()]);
    assert!(out.contains("0 command(s) applied (0 events), 6 already applied"), "{out}");
    assert_eq!(l.head(), head);
}

/// Each bad line is named with its file, line and field, and the whole
/// file appends nothing.
#[test]
fn bad_command_lines_are_named_and_nothing_is_appended() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    let head = l.head();
    let cases: &[(&str, &str)] = &[
        (r#"{"command":"add_user","workspace":"acme""#, "malformed JSON"),
        (r#"{"command":"teleport","workspace":"acme"}"#, "field `command`: unknown command `teleport`"),
        (
            r#"{"command":"create_group","workspace":"acme","at":"2024-03-02T09:00:00Z"}"#,
            "field `group`: missing field `group`",
        ),
        (
            r#"{"command":"change_quantity","workspace":"acme","at":"2024-03-02T09:00:00Z","subscription":"s1","quantity":-1,"order":{"ordered_by":"x"},"subscription_channel":"portal"}"#,
            "field `quantity`",
        ),
        (
            r#"{"command":"open_billing_account","workspace":"acme","at":"2024-03-02T09:00:00Z","account":"b","name":"B","currency":"EUX"}"#,
            "field `currency`: currency \"EUX\" is not an ISO 4217 currency code",
        ),
        (
            r#"{"command":"open_billing_account","workspace":"acme","at":"2024-03-02T09:00:00Z","account":"b","name":"B","currency":"EUR","tax_rate":"2l"}"#,
            "field `tax_rate`",
        ),
        (
            r#"{"command":"create_workspace","workspace":"w2","at":"2024-03-02T09:00:00Z","name":"W","billing_mode":"single","created_on":"2024-02-30"}"#,
            "field `created_on`",
        ),
        (
            r#"{"command":"create_organization","workspace":"acme","at":"2024-03-02T09:00:00Z","org":"hq","name":"Again"}"#,
            "organization `hq` already exists",
        ),
        (
            r#"{"command":"change_quantity","workspace":"acme","at":"2024-03-02T09:00:00Z","subscription":"s1","quantity":2000000,"order":{"ordered_by":"x"},"subscription_channel":"portal"}"#,
            "quantity 2000000 is above the limit",
        ),
    ];
    for (bad, message) in cases {
        let text = [user("u9").as_str(), bad].join("\n");
        let file = l.file("bad.jsonl", &text);
        let out = l.run(&["apply", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        let expected = format!("{}:2: {message}", file.display());
        assert!(stderr.contains(&expected), "for {bad}\nexpected {expected:?}\nin {stderr}");
        assert!(stderr.contains("nothing was appended"), "{stderr}");
        assert_eq!(l.head(), head, "{bad}: the good line before it was appended");
    }
}

#[test]
fn continue_on_error_reports_every_refused_line_and_applies_the_rest() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    let text =
        [user("u1"), user("u2"), user("u3"), assign("u1"), assign("u2"), assign("u3"), "{oops".to_owned()].join("\n");
    let file = l.file("mixed.jsonl", &text);
    let out = l.run(&["apply", "--continue-on-error", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(":6: no seat is free in pool `SEAT` on 2024-03-02: 0 available, 1 needed"), "{stderr}");
    assert!(stderr.contains(":7: malformed JSON"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 command(s) applied (5 events)") && stdout.contains("2 refused"), "{stdout}");
}

fn export(l: &Ledger) -> String {
    l.ok(&["export"])
}

#[test]
fn export_then_import_gives_the_same_bytes_and_an_intact_chain() {
    let a = Ledger::new();
    let setup = a.file("setup.jsonl", SETUP);
    a.ok(&["apply", setup.to_str().unwrap()]);
    let users = a.file("users.jsonl", &[user("u1"), assign("u1")].join("\n"));
    a.ok(&["apply", users.to_str().unwrap()]);
    let exported = export(&a);
    assert_eq!(exported.lines().count(), 9);

    let b = Ledger::new();
    let file = b.file("events.jsonl", &exported);
    let out = b.ok(&["import", file.to_str().unwrap()]);
    assert!(out.contains("9 events imported, 0 already present"), "{out}");
    // Same ids, versions, timestamps, positions and therefore the same links.
    assert_eq!(export(&b), exported);
    // Importing again is a resume: nothing new.
    let out = b.ok(&["import", file.to_str().unwrap()]);
    assert!(out.contains("0 events imported, 9 already present"), "{out}");
    assert!(b.ok(&["verify"]).contains("intact: 9 events"));
}

#[test]
fn bad_event_lines_are_named_and_nothing_is_imported() {
    let a = Ledger::new();
    let setup = a.file("setup.jsonl", SETUP);
    a.ok(&["apply", setup.to_str().unwrap()]);
    let lines: Vec<String> = export(&a).lines().map(str::to_owned).collect();
    let edit = |n: usize, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&lines[n]).unwrap();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{not json".to_owned(), "not a stored event"),
        (edit(2, &|v| v["type"] = "SeatsTeleported".into()), "unknown event type `SeatsTeleported`"),
        (
            edit(2, &|v| {
                v.as_object_mut().unwrap().remove("stream");
            }),
            "missing field `stream`",
        ),
        (edit(2, &|v| v["stream_version"] = 5.into()), "continues at version 5"),
        (edit(2, &|v| v["payload"]["billing_mode"] = "shared".into()), "field `billing_mode`"),
        (
            edit(2, &|v| v["id"] = lines[1].split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().into()),
            "repeats line 2",
        ),
    ];
    for (bad, message) in cases {
        let b = Ledger::new();
        let mut all = lines.clone();
        all[2] = bad.clone();
        let file = b.file("events.jsonl", &all.join("\n"));
        let out = b.run(&["import", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was imported");
        assert!(stderr.contains(&format!("{}:3: ", file.display())) && stderr.contains(message), "{message}: {stderr}");
        assert!(stderr.contains("nothing was imported"), "{stderr}");
        assert_eq!(export(&b), "", "{message}: something was imported");
    }
}

#[test]
fn importing_over_different_history_is_a_version_conflict_and_imports_nothing() {
    let a = Ledger::new();
    let setup = a.file("setup.jsonl", SETUP);
    a.ok(&["apply", setup.to_str().unwrap()]);
    let b = Ledger::new();
    let other = b.file("other.jsonl", &SETUP.replace("Acme", "Other Acme"));
    b.ok(&["apply", other.to_str().unwrap()]);
    let before = export(&b);
    let file = b.file("events.jsonl", &export(&a));
    let out = b.run(&["import", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(":1: field `stream_version`: version conflict: stream `catalog` already holds event"),
        "{stderr}"
    );
    assert_eq!(export(&b), before);
}

#[test]
fn a_wrong_store_url_is_a_clear_error() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_seatledger")).args(["--store", "mysql://db", "verify"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown store `mysql://db`"));
}

#[test]
fn rebuild_reports_the_events_folded() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&l.ok(&["rebuild", "--json"])).unwrap();
    assert_eq!((v["events"].as_u64(), v["position"].as_u64()), (Some(7), Some(7)));
}

/// Open the ledger file in this process and do `f` with it.
fn with_store<T>(l: &Ledger, f: impl AsyncFnOnce(&dyn seatledger_store::EventStore) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let path = l.dir.path().join("ledger.db");
        let clock = std::sync::Arc::new(seatledger_store::SystemClock);
        let store = seatledger_store_sqlite::SqliteStore::open(&path, clock).unwrap();
        f(&store).await
    })
}

/// The checkpoints saved in the ledger file, by name.
fn checkpoints(l: &Ledger) -> Vec<String> {
    with_store(l, async |store| {
        let mut names = vec![];
        for name in ["licence-state", "change-log", "audit-log"] {
            if store.load_checkpoint(name).await.unwrap().is_some() {
                names.push(name.to_owned());
            }
        }
        names
    })
}

#[test]
fn audit_and_demo_keep_no_audit_log_checkpoint_and_rebuild_drops_the_one_older_versions_saved() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    l.ok(&["audit", "--limit", "2"]);
    assert!(!checkpoints(&l).contains(&"audit-log".to_owned()), "audit saved the whole log beside a checkpoint");
    l.ok(&["demo"]);
    assert!(!checkpoints(&l).contains(&"audit-log".to_owned()), "the demo saved the whole audit log");
    // What earlier versions' `audit` left behind: the whole log beside a checkpoint.
    with_store(&l, async |store| {
        let old = seatledger_store::Checkpoint { position: 7, state: Some(r#"{"entries":[]}"#.into()) };
        store.save_checkpoint("audit-log", &old).await.unwrap();
    });
    assert!(checkpoints(&l).contains(&"audit-log".to_owned()));
    l.ok(&["rebuild"]);
    assert_eq!(
        checkpoints(&l),
        ["licence-state", "change-log"],
        "rebuild keeps its own checkpoints and drops the audit log's"
    );
}

#[allow(dead_code)]
fn unused(_: &Path) {}

#[test]
fn the_demo_runs_on_the_named_store_and_a_second_run_changes_nothing() {
    let l = Ledger::new();
    let first = l.ok(&["demo"]);
    assert!(first.contains("hash chain intact"), "{first}");
    assert!(first.contains("refused as the rules demand"), "{first}");
    let head = l.head();
    assert!(head > 100, "the demo wrote only {head} events");
    // One audit entry per event; the last twelve are shown.
    assert!(first.contains(&format!("audit log, last 12 of {head} entries")), "{first}");
    // The other commands see what the demo wrote.
    assert!(l.ok(&["state", "--at", "2024-03-31"]).contains("HYBRID-SEAT"));
    let second = l.ok(&["demo"]);
    assert_eq!(second.matches("already in the ledger; nothing new").count(), 5, "{second}");
    assert_eq!(l.head(), head, "a second demo run appended events");
}

/// `state --at` shows the pool as it stood on that business day: licences
/// and seats alike (the seat was assigned on March 2nd).
#[test]
fn state_at_a_past_day_shows_the_seats_of_that_day() {
    let l = Ledger::new();
    let setup = l.file("setup.jsonl", SETUP);
    l.ok(&["apply", setup.to_str().unwrap()]);
    let users = l.file("users.jsonl", &[user("u1"), assign("u1")].join("\n"));
    l.ok(&["apply", users.to_str().unwrap()]);
    let pool = |day: &str| -> (u64, u64, u64) {
        let v: serde_json::Value = serde_json::from_str(&l.ok(&["state", "--json", "--at", day])).unwrap();
        let p = &v["pools"][0];
        (p["total"].as_u64().unwrap(), p["assigned"].as_u64().unwrap(), p["available"].as_u64().unwrap())
    };
    assert_eq!(pool("2024-03-01"), (2, 0, 2));
    assert_eq!(pool("2024-03-02"), (2, 1, 1));
    assert_eq!(pool("2024-02-28"), (0, 0, 0), "before the subscription started");
}
