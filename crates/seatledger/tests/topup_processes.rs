//! Two OS processes running the top-up manager at once on one SQLite file
//! never top up twice for the same trigger.

use std::process::{Command, Output};

fn seatledger(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seatledger")).args(args).env("SEATLEDGER_STORE", store).output().unwrap()
}

fn ok(store: &str, args: &[&str]) -> String {
    let out = seatledger(store, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const SETUP: &str = r#"{"command":"define_product","at":"2024-03-01T08:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}
{"command":"create_workspace","workspace":"w","at":"2024-03-01T08:00:00Z","name":"W","billing_mode":"single","created_on":"2024-03-01"}
{"command":"open_billing_account","workspace":"w","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}
{"command":"create_organization","workspace":"w","at":"2024-03-01T08:00:00Z","org":"hq","name":"HQ"}
{"command":"create_subscription","workspace":"w","at":"2024-03-01T08:00:00Z","subscription":"s","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":3,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"31","cost_per_unit":"0"}
{"command":"configure_licences","workspace":"w","at":"2024-03-01T08:00:00Z","sku":"SEAT","settings":{"top_up":{"vacant_seat_threshold":2,"max_per_top_up":5,"max_per_month":20}}}
{"command":"add_user","workspace":"w","at":"2024-03-01T08:00:00Z","user":"u1","org":"hq","profile":{"first_name":"A","last_name":"B","email":"u1@w.example","username":"u1"}}
{"command":"add_user","workspace":"w","at":"2024-03-01T08:00:00Z","user":"u2","org":"hq","profile":{"first_name":"C","last_name":"D","email":"u2@w.example","username":"u2"}}
"#;

const DRAIN: &str = r#"{"command":"assign_module","workspace":"w","at":"2024-03-02T09:00:00Z","sku":"SEAT","target":{"user":"u1"}}
{"command":"assign_module","workspace":"w","at":"2024-03-02T09:05:00Z","sku":"SEAT","target":{"user":"u2"}}
"#;

#[test]
fn two_manager_processes_racing_on_one_file_top_up_each_trigger_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let setup = dir.path().join("setup.jsonl");
    std::fs::write(&setup, SETUP).unwrap();
    ok(&store, &["apply", setup.to_str().unwrap()]);
    // The manager acts on live events only: its first run only marks the head.
    ok(&store, &["licences", "top-up", "--run-once"]);
    // Two seats of three taken: 1 free, below the threshold of 2.
    let drain = dir.path().join("drain.jsonl");
    std::fs::write(&drain, DRAIN).unwrap();
    ok(&store, &["apply", drain.to_str().unwrap()]);

    // Two processes at once, from the same checkpoint.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_seatledger"))
            .args(["licences", "top-up", "--run-once"])
            .env("SEATLEDGER_STORE", &store)
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());

    let log: serde_json::Value = serde_json::from_str(&ok(&store, &["changelog", "--json", "--sku", "SEAT"])).unwrap();
    let top_ups: Vec<&serde_json::Value> =
        log.as_array().unwrap().iter().filter(|e| e["reason"] == "automatic_top_up").collect();
    assert_eq!(top_ups.len(), 1, "one top-up for one shortage: {log:#}");
    assert_eq!(
        (top_ups[0]["from"].as_u64(), top_ups[0]["to"].as_u64()),
        (Some(3), Some(4)),
        "1 licence restores 2 free"
    );
    let state: serde_json::Value =
        serde_json::from_str(&ok(&store, &["state", "--json", "--at", "2024-03-02"])).unwrap();
    assert_eq!(state["pools"][0]["available"], 2);
}
