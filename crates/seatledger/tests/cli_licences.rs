//! `licences …` and `notifications …`, called the way the binary will call
//! them (parsed by clap, then `run_licences` / `run_notifications`) on an
//! in-memory store, writing into a buffer.
//!
//! The ledger: workspace `w` (single mode) holds subscription `s1` of 5
//! `SEAT` licences from 2024-03-01; users `u1`…`u6` exist and `u1`…`u3` hold
//! a seat, so 2 are free. `OTHER` is in the catalog but not subscribed to.

use clap::{CommandFactory, Parser, Subcommand};
use seatledger::licence_cli::{run_licences, run_notifications, LicencesCmd, NotificationsCmd};
use seatledger_app::{CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::Command;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use serde_json::Value;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "seatledger")]
struct Cli {
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    Licences {
        #[command(subcommand)]
        cmd: LicencesCmd,
    },
    Notifications {
        #[command(subcommand)]
        cmd: NotificationsCmd,
    },
}

const SETUP: &str = r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}
{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"OTHER","name":"Other seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}
{"command":"create_workspace","workspace":"w","at":"2024-03-01T08:00:00Z","name":"W","billing_mode":"single","created_on":"2024-03-01"}
{"command":"open_billing_account","workspace":"w","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}
{"command":"create_organization","workspace":"w","at":"2024-03-01T08:00:00Z","org":"hq","name":"HQ"}
{"command":"create_subscription","workspace":"w","at":"2024-03-01T08:00:00Z","actor":"ops@w.example","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{"ordered_by":"ops@w.example","order_reference":"SO-1"},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}"#;

struct Ledger {
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
    n: u128,
}

impl Ledger {
    async fn new() -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000)));
        let mut l = Self { store, handler, n: 0 };
        for line in SETUP.lines() {
            l.apply(line).await;
        }
        for u in 1..=6 {
            l.apply(&format!(
                r#"{{"command":"add_user","workspace":"w","at":"2024-03-01T09:00:00Z","user":"u{u}","org":"hq","profile":{{"first_name":"U","last_name":"{u}","email":"u{u}@w.example","username":"u{u}"}}}}"#
            ))
            .await;
        }
        for u in 1..=3 {
            l.assign(u, "2024-03-02T09:00:00Z").await;
        }
        l
    }

    async fn apply(&mut self, line: &str) {
        let env = parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        self.n += 1;
        let cmd = Command { at: env.at.unwrap(), body: env.body };
        let meta = CommandMeta::new(
            env.actor.unwrap_or_else(|| "ops@w.example".into()),
            "portal",
            uuid::Uuid::from_u128(self.n),
        );
        self.handler.handle(&cmd, &meta).await.unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    async fn assign(&mut self, user: u32, at: &str) {
        self.apply(&format!(
            r#"{{"command":"assign_module","workspace":"w","at":"{at}","sku":"SEAT","target":{{"user":"u{user}"}}}}"#
        ))
        .await;
    }

    async fn head(&self) -> u64 {
        self.store.head_position().await.unwrap()
    }

    /// Parse and run `args`; the exit code and what was written, or the error.
    async fn try_run(&self, args: &[&str]) -> Result<(ExitCode, String), String> {
        let cli = Cli::try_parse_from(std::iter::once("seatledger").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let code = match cli.cmd {
            Top::Licences { cmd } => run_licences(cmd, self.store.clone(), cli.json, &mut out).await,
            Top::Notifications { cmd } => run_notifications(cmd, self.store.clone(), cli.json, &mut out).await,
        }
        .map_err(|e| format!("{e:#}"))?;
        Ok((code, String::from_utf8(out).unwrap()))
    }

    async fn ok(&self, args: &[&str]) -> String {
        match self.try_run(args).await {
            Ok((code, out)) => {
                assert_eq!(code, ExitCode::SUCCESS, "{args:?}: {out}");
                out
            }
            Err(e) => panic!("{args:?} failed: {e}"),
        }
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
    }

    /// Run `args`, which must be refused without appending anything; the error.
    async fn refused(&self, args: &[&str]) -> String {
        let head = self.head().await;
        let err = match self.try_run(args).await {
            Ok((code, out)) => panic!("{args:?} succeeded ({code:?}): {out}"),
            Err(e) => e,
        };
        assert_eq!(self.head().await, head, "{args:?} appended something");
        err
    }
}

#[test]
fn the_command_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[tokio::test]
async fn list_shows_pools_with_total_assigned_available_and_settings() {
    let l = Ledger::new().await;
    l.ok(&[
        "licences",
        "settings",
        "--workspace",
        "w",
        "--sku",
        "SEAT",
        "--alert-threshold",
        "1",
        "--top-up-threshold",
        "2",
        "--cap-per-top-up",
        "3",
        "--cap-per-month",
        "6",
        "--at",
        "2024-03-02T10:00:00Z",
    ])
    .await;

    let v = l.json(&["licences", "list", "--workspace", "w", "--at", "2024-03-10"]).await;
    assert_eq!(v["on"], "2024-03-10");
    let pools = v["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{v}");
    let p = &pools[0];
    assert_eq!(
        (p["sku"].as_str(), p["total"].as_u64(), p["assigned"].as_u64(), p["available"].as_u64()),
        (Some("SEAT"), Some(5), Some(3), Some(2))
    );
    assert_eq!(p["alert_threshold"], 1);
    assert_eq!(p["alert_raised"], false);
    assert_eq!(p["top_up"]["vacant_seat_threshold"], 2);
    assert_eq!(p["top_up"]["max_per_top_up"], 3);
    assert_eq!(p["top_up"]["max_per_month"], 6);
    assert_eq!(p["top_up"]["topped_up_this_month"], 0);

    // Before the subscription starts the pool holds nothing.
    let before = l.json(&["licences", "list", "--at", "2024-02-28"]).await;
    assert_eq!(before["pools"][0]["total"], 0);

    let table = l.ok(&["licences", "list", "--workspace", "w", "--at", "2024-03-10"]).await;
    assert!(table.starts_with("licence pools on 2024-03-10"), "{table}");
    for text in ["SEAT", "(workspace)", "at ≤ 1", "to 2 free, ≤ 3/top-up, 0 of 6 this month"] {
        assert!(table.contains(text), "{text:?} missing in\n{table}");
    }
    let err = l.refused(&["licences", "list", "--workspace", "nope"]).await;
    assert_eq!(err, "workspace `nope` does not exist");
}

#[tokio::test]
async fn add_records_a_manual_addition_and_log_shows_the_timestamped_history() {
    let mut l = Ledger::new().await;
    let v = l
        .json(&[
            "licences",
            "add",
            "--workspace",
            "w",
            "--sku",
            "SEAT",
            "--quantity",
            "2",
            "--ordered-by",
            "it.admin@w.example",
            "--order-reference",
            "LM-7",
            "--at",
            "2024-03-12T11:00:00Z",
        ])
        .await;
    assert_eq!(v["events"][0]["type"], "QuantityChanged");
    let summary = v["events"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("changed 5 → 7 by it.admin@w.example") && summary.contains("licences added manually"),
        "{summary}"
    );
    let pools = l.json(&["licences", "list", "--at", "2024-03-12"]).await;
    assert_eq!(pools["pools"][0]["total"], 7);
    assert_eq!(pools["pools"][0]["available"], 4);

    // Another workspace with a SEAT subscription of the same id: none of
    // its history belongs in w's log.
    for line in [
        r#"{"command":"create_workspace","workspace":"w2","at":"2024-03-01T08:00:00Z","name":"W2","billing_mode":"single","created_on":"2024-03-01"}"#,
        r#"{"command":"open_billing_account","workspace":"w2","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}"#,
        r#"{"command":"create_subscription","workspace":"w2","at":"2024-03-01T08:00:00Z","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":2,"order":{"ordered_by":"ops@w.example","order_reference":"SO-2"},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}"#,
    ] {
        l.apply(line).await;
    }
    let log = l.json(&["licences", "log", "--workspace", "w", "--sku", "SEAT"]).await;
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["workspace"] == "w" && e["stream"] == "workspace-w"), "{log}");
    let types: Vec<&str> = entries.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "SubscriptionCreated",
            "QuantityChanged",
            "ModuleAssigned",
            "ModuleAssigned",
            "ModuleAssigned",
            "QuantityChanged"
        ]
    );
    let last = entries.last().unwrap();
    assert_eq!(last["effective_at"], "2024-03-12T11:00:00Z");
    assert_eq!(last["actor"], "cli");
    assert!(last["recorded_at"].as_str().is_some());
    let positions: Vec<u64> = entries.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in recorded order");

    // The SKU's subscription events are in its log too, and other SKUs are not.
    let table = l.ok(&["licences", "log", "--workspace", "w", "--sku", "SEAT"]).await;
    assert!(table.starts_with("licence log of SEAT in workspace w"), "{table}");
    assert!(table.contains("2024-03-12 11:00") && table.contains("QuantityChanged"), "{table}");
    let other = l.ok(&["licences", "log", "--workspace", "w", "--sku", "OTHER"]).await;
    assert!(other.contains("no licence history yet"), "{other}");
    let err = l.refused(&["licences", "log", "--workspace", "w", "--sku", "NOPE"]).await;
    assert_eq!(err, "product `NOPE` is not in the catalog");
}

#[tokio::test]
async fn bad_input_is_refused_with_clear_errors_and_nothing_appended() {
    let l = Ledger::new().await;
    let add = |q: &'static str| {
        [
            "licences",
            "add",
            "--workspace",
            "w",
            "--sku",
            "SEAT",
            "--quantity",
            q,
            "--ordered-by",
            "me",
            "--at",
            "2024-03-12T11:00:00Z",
        ]
    };
    let err = l.refused(&add("-3")).await;
    assert!(err.contains("invalid value '-3' for '--quantity <QUANTITY>'") && err.contains("-3 is negative"), "{err}");
    let err = l.refused(&add("two")).await;
    assert!(err.contains("\"two\" is not a whole number of 0 or more"), "{err}");
    let err = l.refused(&add("0")).await;
    assert_eq!(err, "quantity must be at least 1 to add licences; nothing was recorded");

    let err = l
        .refused(&["licences", "add", "--workspace", "w", "--sku", "NOPE", "--quantity", "1", "--ordered-by", "me"])
        .await;
    assert_eq!(err, "product `NOPE` is not in the catalog; nothing was recorded");
    let err = l
        .refused(&["licences", "add", "--workspace", "nope", "--sku", "SEAT", "--quantity", "1", "--ordered-by", "me"])
        .await;
    assert_eq!(err, "workspace `nope` does not exist");
    let err = l
        .refused(&["licences", "add", "--workspace", "w", "--sku", "OTHER", "--quantity", "1", "--ordered-by", "me"])
        .await;
    assert_eq!(err, "pool `OTHER` has no live subscription to add licences to; nothing was recorded");
    let err = l
        .refused(&[
            "licences",
            "add",
            "--workspace",
            "w",
            "--sku",
            "SEAT",
            "--organization",
            "hq",
            "--quantity",
            "1",
            "--ordered-by",
            "me",
        ])
        .await;
    assert!(err.contains("organizations link to billing accounts only in assigned mode"), "{err}");
    let err = l
        .refused(&["licences", "add", "--workspace", "w:x y", "--sku", "SEAT", "--quantity", "1", "--ordered-by", "me"])
        .await;
    assert!(err.starts_with("--workspace \"w:x y\" is not a workspace id"), "{err}");

    let settings = |extra: &[&'static str]| {
        let mut v = vec!["licences", "settings", "--workspace", "w", "--sku", "SEAT", "--at", "2024-03-12T11:00:00Z"];
        v.extend_from_slice(extra);
        v
    };
    let err = l.refused(&settings(&["--top-up-threshold", "2", "--cap-per-top-up", "5", "--cap-per-month", "2"])).await;
    assert_eq!(err, "cap per month 2 is below the cap per top-up of 5; nothing was recorded");
    let err = l.refused(&settings(&["--top-up-threshold", "0", "--cap-per-top-up", "1", "--cap-per-month", "2"])).await;
    assert!(err.starts_with("vacant seat threshold must be at least 1"), "{err}");
    let err = l.refused(&settings(&["--cap-per-month", "-1"])).await;
    assert!(err.contains("-1 is negative"), "{err}");
    let err = l.refused(&settings(&["--alert-threshold", "-2"])).await;
    assert!(err.contains("invalid value '-2' for '--alert-threshold <N>'"), "{err}");
    let err = l.refused(&settings(&["--top-up-threshold", "2"])).await;
    assert_eq!(
        err,
        "the pool SEAT has no automatic top-up yet: switching it on needs --top-up-threshold, --cap-per-top-up and \
         --cap-per-month (missing: --cap-per-top-up, --cap-per-month); nothing was recorded"
    );
    let err = l.refused(&settings(&[])).await;
    assert!(err.starts_with("nothing to change"), "{err}");
    let err = l.refused(&settings(&["--alert-threshold", "2", "--no-alert"])).await;
    assert!(err.contains("cannot be used with"), "{err}");
    let err =
        l.refused(&["licences", "settings", "--workspace", "w", "--sku", "OTHER", "--alert-threshold", "1"]).await;
    assert_eq!(
        err,
        "licence settings name `OTHER`, but no subscription in this workspace is for `OTHER`; nothing was recorded"
    );
    let err = l.refused(&["licences", "settings", "--workspace", "w", "--sku", "NOPE", "--alert-threshold", "1"]).await;
    assert_eq!(err, "product `NOPE` is not in the catalog; nothing was recorded");

    let err = l
        .refused(&[
            "notifications",
            "recipients",
            "add",
            "--workspace",
            "w",
            "--recipient",
            "ops",
            "--email",
            "ops@w.example",
            "--kinds",
            "low_licence,weekly",
        ])
        .await;
    assert!(
        err.starts_with(
            "--kinds: notification kind \"weekly\" is not one of: low_licence, top_up_confirmation, cap_reached"
        ),
        "{err}"
    );
    let err = l
        .refused(&[
            "notifications",
            "recipients",
            "add",
            "--workspace",
            "w",
            "--recipient",
            "ops",
            "--email",
            "not an email",
        ])
        .await;
    assert_eq!(err, "email \"not an email\" is not an email address; nothing was recorded");
    let err = l.refused(&["notifications", "recipients", "remove", "--workspace", "w", "--recipient", "ghost"]).await;
    assert_eq!(err, "recipient `ghost` does not exist; nothing was recorded");
    let err = l.refused(&["notifications", "deliver"]).await;
    assert!(err.contains("--to-file <FILE>") && err.contains("--stdout"), "{err}");
    let err = l.refused(&["notifications", "list", "--state", "lost"]).await;
    assert!(err.contains("\"lost\" is not a delivery state; use one of: pending, sent, failed, given_up"), "{err}");
}

#[tokio::test]
async fn settings_keep_what_is_not_given_and_switch_off_on_request() {
    let l = Ledger::new().await;
    let settings = |extra: &[&'static str]| {
        let mut v = vec!["licences", "settings", "--workspace", "w", "--sku", "SEAT", "--at", "2024-03-12T11:00:00Z"];
        v.extend_from_slice(extra);
        v
    };
    let pool = || async { l.json(&["licences", "list", "--at", "2024-03-12"]).await["pools"][0].clone() };

    // An alert at 2 free: 2 are free, so it is raised in the same decision.
    let v = l.json(&settings(&["--alert-threshold", "2"])).await;
    let types: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["LicenceSettingsChanged", "LowLicenceAlertRaised"]);
    assert_eq!(v["result"], "settings of the pool SEAT in workspace w: alert at 2 or fewer free; no automatic top-up");

    l.ok(&settings(&["--top-up-threshold", "1", "--cap-per-top-up", "2", "--cap-per-month", "4"])).await;
    let p = pool().await;
    assert_eq!((p["alert_threshold"].as_u64(), p["top_up"]["max_per_month"].as_u64()), (Some(2), Some(4)));

    l.ok(&settings(&["--cap-per-month", "10"])).await;
    let p = pool().await;
    assert_eq!(p["top_up"]["vacant_seat_threshold"], 1);
    assert_eq!(p["top_up"]["max_per_top_up"], 2);
    assert_eq!(p["top_up"]["max_per_month"], 10);

    let out = l.ok(&settings(&["--no-alert"])).await;
    assert!(out.contains("LicenceAlertCleared") || out.contains("licence alert on pool SEAT cleared"), "{out}");
    let p = pool().await;
    assert_eq!((p["alert_threshold"].is_null(), p["alert_raised"].as_bool()), (true, Some(false)));
    assert_eq!(p["top_up"]["max_per_month"], 10);

    l.ok(&settings(&["--no-top-up"])).await;
    assert!(pool().await["top_up"].is_null());
}

#[tokio::test]
async fn top_up_run_once_acts_on_live_events_only() {
    let mut l = Ledger::new().await;
    // Threshold 3 with 2 free: below it already, but that is history.
    l.ok(&[
        "licences",
        "settings",
        "--workspace",
        "w",
        "--sku",
        "SEAT",
        "--top-up-threshold",
        "3",
        "--cap-per-top-up",
        "2",
        "--cap-per-month",
        "4",
        "--at",
        "2024-03-05T10:00:00Z",
    ])
    .await;
    let head = l.head().await;
    let first = l.json(&["licences", "top-up", "--run-once"]).await;
    assert_eq!(first["position"].as_u64(), Some(head));
    assert_eq!(first["topped_up"], 0, "the first start begins at the head: {first}");
    assert_eq!(l.head().await, head);

    // A live drain: 1 free, 2 needed.
    l.assign(4, "2024-03-06T10:00:00Z").await;
    let out = l.ok(&["licences", "top-up", "--run-once"]).await;
    assert!(out.contains("1 top-up(s), 0 cap(s) reached"), "{out}");
    assert!(out.contains("topped up s1 5 → 7"), "{out}");
    let pool = l.json(&["licences", "list", "--at", "2024-03-06"]).await;
    assert_eq!((pool["pools"][0]["total"].as_u64(), pool["pools"][0]["available"].as_u64()), (Some(7), Some(3)));
    assert_eq!(pool["pools"][0]["top_up"]["topped_up_this_month"], 2);

    // Running again changes nothing.
    let again = l.json(&["licences", "top-up", "--run-once"]).await;
    assert_eq!(again["attempts"].as_array().map(Vec::len), Some(0));
    let log = l.json(&["licences", "log", "--workspace", "w", "--sku", "SEAT"]).await;
    let last = log["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "licence-manager");
    assert!(last["summary"].as_str().unwrap().contains("automatic top-up caused by"), "{last}");
}

#[tokio::test]
async fn notifications_recipients_list_deliver_to_file_and_stdout() {
    let mut l = Ledger::new().await;
    let recipients = |extra: &[&'static str]| {
        let mut v = vec!["notifications", "recipients"];
        v.extend_from_slice(extra);
        v.extend_from_slice(&["--workspace", "w", "--at", "2024-03-03T08:00:00Z"]);
        v
    };
    let out = l.ok(&recipients(&["add", "--recipient", "ops", "--email", "ops@w.example", "--kinds", "all"])).await;
    assert!(out.starts_with("recipient ops <ops@w.example> added to workspace w; receives low_licence, top_up_confirmation, cap_reached"), "{out}");
    l.ok(&recipients(&["add", "--recipient", "fin", "--email", "fin@w.example"])).await;
    l.ok(&recipients(&["settings", "--recipient", "fin", "--kinds", "top_up_confirmation"])).await;
    l.ok(&recipients(&["add", "--recipient", "temp", "--email", "temp@w.example", "--kinds", "low_licence"])).await;
    l.ok(&recipients(&["remove", "--recipient", "temp"])).await;
    let list = l.json(&["notifications", "recipients", "list", "--workspace", "w"]).await;
    assert_eq!(
        list,
        serde_json::json!([
            {"recipient": "fin", "email": "fin@w.example", "kinds": ["top_up_confirmation"]},
            {"recipient": "ops", "email": "ops@w.example", "kinds": ["low_licence", "top_up_confirmation", "cap_reached"]},
        ])
    );

    // An alert at 1 free and a top-up back to 2: three notifications.
    l.ok(&[
        "licences",
        "settings",
        "--workspace",
        "w",
        "--sku",
        "SEAT",
        "--alert-threshold",
        "1",
        "--top-up-threshold",
        "2",
        "--cap-per-top-up",
        "1",
        "--cap-per-month",
        "5",
        "--at",
        "2024-03-04T08:00:00Z",
    ])
    .await;
    l.ok(&["licences", "top-up", "--run-once"]).await;
    l.assign(4, "2024-03-06T10:00:00Z").await;
    l.ok(&["licences", "top-up", "--run-once"]).await;

    let pending = l.json(&["notifications", "list", "--workspace", "w", "--state", "pending"]).await;
    let got: Vec<(&str, &str)> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["kind"].as_str().unwrap(), n["recipient"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("low_licence", "ops"), ("top_up_confirmation", "fin"), ("top_up_confirmation", "ops")]);
    let table = l.ok(&["notifications", "list"]).await;
    assert!(table.contains("Low licences: SEAT has 1 seat left") && table.contains("pending"), "{table}");

    // One to a file, the rest to stdout, then nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outbox.jsonl");
    let out = l.ok(&["notifications", "deliver", "--to-file", file.to_str().unwrap(), "--limit", "1"]).await;
    assert_eq!(out, "1 delivered, 0 failed (0 given up)\n");
    let written = std::fs::read_to_string(&file).unwrap();
    let line: Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!((line["kind"].as_str(), line["to"].as_str()), (Some("low_licence"), Some("ops@w.example")));
    let printed = l.ok(&["notifications", "deliver", "--stdout"]).await;
    let lines: Vec<Value> = printed.lines().map(|t| serde_json::from_str(t).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert_eq!(lines[0]["to"], "fin@w.example");
    assert!(lines[1]["subject"].as_str().unwrap().contains("Automatic top-up: 1 licence added to SEAT"));
    let none = l.json(&["notifications", "deliver", "--stdout"]).await;
    assert_eq!(none["sent"], 0);

    let sent = l.json(&["notifications", "list", "--state", "sent"]).await;
    assert_eq!(sent.as_array().unwrap().len(), 3);
    assert_eq!(sent[0]["state"], "sent");
    assert_eq!(sent[0]["retried"], false);
    let still = l.ok(&["notifications", "list", "--state", "pending"]).await;
    assert_eq!(still.trim(), "no notifications");
}
