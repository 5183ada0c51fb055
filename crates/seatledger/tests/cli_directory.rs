//! `overview`, `users export --csv` and `licensing-report`: the run
//! functions on an in-memory ledger whose commands go through the real
//! command handler, and the hand-worked fixtures of `fixtures/reporting/`.

use clap::{Parser, Subcommand};
use seatledger::directory_cli::{
    run_licensing_report, run_overview, run_users, LicensingReportArgs, OverviewArgs, UsersCmd,
};
use seatledger::scenario::{run_lines, LineOutcome};
use seatledger_app::{CommandHandler, SequentialIds};
use seatledger_projections::directory::ApiVersion;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The command line as `main.rs` wires it: `--version` on the top level,
/// a global `--json`, and this module's arguments below.
#[derive(Debug, Parser)]
#[command(name = "seatledger", version)]
struct Cli {
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Overview(OverviewArgs),
    Users {
        #[command(subcommand)]
        command: UsersCmd,
    },
    LicensingReport(LicensingReportArgs),
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("seatledger").chain(args.iter().copied()))
}

struct Ledger {
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
}

const CATALOG: &str = r#"
{"command":"define_product","at":"2023-01-02T08:00:00Z","sku":"BOOST","name":"Boost","kind":"legacy_plan","charge_model":"per_active_user","sales_unit":"user"}
{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"HYBRID","name":"Hybrid","kind":"module","charge_model":"per_active_user","sales_unit":"user"}
{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"ENGAGE","name":"Engage","kind":"module","charge_model":"per_active_user","sales_unit":"user"}
{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"UNIFY","name":"Unify","kind":"module","charge_model":"per_active_user","sales_unit":"user"}
{"command":"create_workspace","workspace":"acme","at":"2024-01-15T09:00:00Z","name":"Acme","billing_mode":"single","created_on":"2024-01-15"}
{"command":"create_organization","workspace":"acme","at":"2024-01-15T09:10:00Z","org":"hq","name":"HQ"}
"#;

impl Ledger {
    async fn new() -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000)));
        let l = Self { store, handler };
        l.apply(CATALOG).await;
        l
    }

    /// Apply command lines (parsed by `seatledger_codec::parse_command`);
    /// every line must be applied.
    async fn apply(&self, text: &str) {
        let at = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z").unwrap().to_utc();
        for (line, outcome) in run_lines(&self.handler, text, at, "test").await.unwrap() {
            assert!(matches!(outcome, LineOutcome::Applied { .. }), "line {line}: {outcome:?}");
        }
    }

    async fn add_user(&self, id: &str, first: &str, last: &str, kind: &str, status: &str) {
        let profile = json!({
            "first_name": first, "last_name": last, "email": format!("{id}@acme.example"),
            "username": id, "kind": kind,
        });
        let line = json!({
            "command": "add_user", "workspace": "acme", "at": "2024-02-01T09:00:00Z",
            "user": id, "org": "hq", "profile": profile, "status": status,
        });
        self.apply(&line.to_string()).await;
    }

    async fn assign(&self, module: &str, target: Value) {
        let line = json!({
            "command": "assign_module", "workspace": "acme", "at": "2024-02-02T09:00:00Z",
            "sku": module, "target": target,
        });
        self.apply(&line.to_string()).await;
    }

    async fn group(&self, id: &str, members: &[&str], modules: &[&str]) {
        let mut lines = vec![json!({"command": "create_group", "workspace": "acme", "at": "2024-02-02T09:00:00Z",
            "group": id, "name": id})];
        for m in members {
            lines.push(json!({"command": "add_group_member", "workspace": "acme", "at": "2024-02-02T09:00:00Z",
                "group": id, "user": m}));
        }
        for s in modules {
            lines.push(json!({"command": "assign_module", "workspace": "acme", "at": "2024-02-02T09:00:00Z",
                "sku": s, "target": {"group": id}}));
        }
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        self.apply(&text.join("\n")).await;
    }

    async fn overview(&self, workspace: Option<&str>) -> Value {
        let args = OverviewArgs { workspace: workspace.map(str::to_owned) };
        let mut out = vec![];
        let code = run_overview(args, self.store.clone(), true, &mut out).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        serde_json::from_slice(&out).unwrap()
    }

    async fn overview_text(&self) -> String {
        let mut out = vec![];
        run_overview(OverviewArgs { workspace: None }, self.store.clone(), false, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The `acme` overview row of one module.
    async fn module(&self, sku: &str) -> Value {
        let o = self.overview(Some("acme")).await;
        let modules = o["workspaces"][0]["modules"].as_array().unwrap().clone();
        modules.into_iter().find(|m| m["sku"] == sku).unwrap()
    }

    async fn csv(&self, workspace: &str) -> Vec<u8> {
        let cmd = UsersCmd::Export { workspace: workspace.to_owned(), csv: true, out: None };
        let mut out = vec![];
        run_users(cmd, self.store.clone(), false, &mut out).await.unwrap();
        out
    }

    async fn report(&self, version: ApiVersion, workspace: Option<&str>) -> anyhow::Result<Value> {
        let args = LicensingReportArgs { version, workspace: workspace.map(str::to_owned) };
        let mut out = vec![];
        run_licensing_report(args, self.store.clone(), false, &mut out).await?;
        Ok(serde_json::from_slice(&out)?)
    }
}

/// Parse CSV back with the csv crate: the header and the records.
fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let records = r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, records)
}

fn module_counts(row: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| row[k].as_u64().unwrap();
    (n("regular"), n("guest"), n("inactive_regular"), n("inactive_guest"))
}

#[tokio::test]
async fn a_user_holding_a_module_directly_and_through_a_group_counts_once() {
    let l = Ledger::new().await;
    l.add_user("ada", "Ada", "Visser", "regular", "active").await;
    l.assign("HYBRID", json!({"user": "ada"})).await;
    l.group("sales", &["ada"], &["HYBRID"]).await;
    assert_eq!(module_counts(&l.module("HYBRID").await), (1, 0, 0, 0));
    let o = l.overview(Some("acme")).await;
    assert_eq!(o["workspaces"][0]["totals"]["regular"], 1);
}

#[tokio::test]
async fn two_modules_count_once_each() {
    let l = Ledger::new().await;
    l.add_user("ada", "Ada", "Visser", "regular", "active").await;
    l.assign("HYBRID", json!({"user": "ada"})).await;
    l.assign("ENGAGE", json!({"user": "ada"})).await;
    l.group("sales", &["ada"], &["ENGAGE", "HYBRID"]).await;
    assert_eq!(module_counts(&l.module("HYBRID").await), (1, 0, 0, 0));
    assert_eq!(module_counts(&l.module("ENGAGE").await), (1, 0, 0, 0));
    assert_eq!(module_counts(&l.module("UNIFY").await), (0, 0, 0, 0));
    let o = l.overview(Some("acme")).await;
    assert_eq!(module_counts(&o["workspaces"][0]["totals"]), (2, 0, 0, 0));
    assert_eq!(module_counts(&o["workspaces"][0]["users_with_modules"]), (1, 0, 0, 0));
}

#[tokio::test]
async fn guests_and_regular_users_are_counted_apart() {
    let l = Ledger::new().await;
    l.add_user("ada", "Ada", "Visser", "regular", "active").await;
    l.add_user("gus", "Gus", "Guest", "guest", "active").await;
    l.add_user("gil", "Gil", "Guest", "guest", "active").await;
    l.add_user("ina", "Ina", "Idle", "guest", "inactive").await;
    l.group("all", &["ada", "gus", "gil", "ina"], &["UNIFY"]).await;
    assert_eq!(module_counts(&l.module("UNIFY").await), (1, 2, 0, 1));
    let text = l.overview_text().await;
    assert!(text.contains("Module") && text.contains("Regular users") && text.contains("Guest users"), "{text}");
    assert!(text.contains("Unify (UNIFY)"), "{text}");
    assert!(text.contains("Users with at least one module: 1 regular, 2 guest"), "{text}");
    assert!(
        text.contains(
            "Inactive holders, not counted above: 0 regular, 1 guest (0 regular and 1 guest module assignments)"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_csv_quotes_commas_quotes_and_unicode_and_parses_back() {
    let l = Ledger::new().await;
    l.add_user("sean", "Seán \"Shawn\"", "O'Brien, Jr.", "regular", "active").await;
    l.add_user("zoe", "Zoë", "Ångström-李, 🙂", "guest", "inactive").await;
    l.assign("UNIFY", json!({"user": "zoe"})).await;
    l.group("sales", &["zoe"], &["HYBRID", "ENGAGE"]).await;
    let bytes = l.csv("acme").await;
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("first name,last name,email,username,status,modules,guest,administrator\r\n"), "{text}");
    assert!(text.contains(r#""Seán ""Shawn""","O'Brien, Jr.""#), "{text}");
    assert!(text.contains(r#"Zoë,"Ångström-李, 🙂""#), "{text}");
    let (header, records) = read_csv(&bytes);
    assert_eq!(header, ["first name", "last name", "email", "username", "status", "modules", "guest", "administrator"]);
    assert_eq!(
        records,
        [
            ["Seán \"Shawn\"", "O'Brien, Jr.", "sean@acme.example", "sean", "active", "", "false", "false"],
            ["Zoë", "Ångström-李, 🙂", "zoe@acme.example", "zoe", "inactive", "Engage, Hybrid, Unify", "true", "false"],
        ]
    );
}

#[tokio::test]
async fn the_csv_goes_to_a_file_whole_and_deleted_users_are_not_exported() {
    let l = Ledger::new().await;
    l.add_user("ada", "Ada", "Visser", "regular", "active").await;
    l.add_user("del", "Del", "Gone", "regular", "active").await;
    l.apply(r#"{"command":"change_user_status","workspace":"acme","at":"2024-02-03T09:00:00Z","user":"del","status":"deleted"}"#)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    std::fs::write(&path, "old contents").unwrap();
    let cmd = UsersCmd::Export { workspace: "acme".to_owned(), csv: true, out: Some(path.clone()) };
    let mut out = vec![];
    run_users(cmd, l.store.clone(), false, &mut out).await.unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(said.contains("exported 1 users of workspace `acme`"), "{said}");
    let (_, records) = read_csv(&std::fs::read(&path).unwrap());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][3], "ada");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["users.csv"], "no partial file left behind");
}

#[tokio::test]
async fn version_3_5_has_legacy_plan_data_and_4_0_has_none() {
    let l = Ledger::new().await;
    l.apply(
        r#"{"command":"create_workspace","workspace":"old","at":"2023-05-01T09:00:00Z","name":"Old","billing_mode":"single","created_on":"2023-05-01","legacy_plan":"boost"}
{"command":"create_organization","workspace":"old","at":"2023-05-01T09:10:00Z","org":"hq","name":"HQ"}
{"command":"add_user","workspace":"old","at":"2023-05-02T09:00:00Z","user":"olga","org":"hq","profile":{"first_name":"Olga","last_name":"Berg","email":"olga@old.example","username":"olga","kind":"guest"}}"#,
    )
    .await;
    let v35 = l.report(ApiVersion::V3_5, Some("old")).await.unwrap();
    assert_eq!(v35["version"], "3.5");
    let w = &v35["workspaces"][0];
    assert_eq!(w["licensing_model"]["legacy_plan"], "boost");
    assert_eq!(w["licensing_model"]["model"], "legacy_plan");
    assert_eq!(w["licence_distribution"]["legacy_plan"]["plan"], "boost");
    assert_eq!(w["licence_distribution"]["legacy_plan"]["guest"], 1);
    assert_eq!(v35["totals"]["legacy_plans"][2]["guest"], 1);

    let v40 = l.report(ApiVersion::V4_0, None).await.unwrap();
    assert_eq!(v40["version"], "4.0");
    let text = v40.to_string();
    assert!(!text.contains("legacy") && !text.contains("boost") && !text.contains("migrated"), "{text}");
    assert_eq!(v40["workspaces"].as_array().unwrap().len(), 2, "acme and old");
    assert!(v40["workspaces"][1]["licence_distribution"]["modules"].is_array());
}

#[test]
fn an_unknown_version_is_refused_and_the_known_ones_parse() {
    for bad in ["4.1", "3", "v4.0", "latest"] {
        let e = parse(&["licensing-report", "--version", bad]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("licensing API version {bad:?} is not supported; use 3.5 or 4.0")),
            "{bad}: {text}"
        );
    }
    for (text, version) in [("3.5", ApiVersion::V3_5), ("4.0", ApiVersion::V4_0)] {
        let cli = parse(&["licensing-report", "--version", text, "--workspace", "acme", "--json"]).unwrap();
        let Cmd::LicensingReport(args) = cli.command else { panic!("parsed as another command") };
        assert_eq!(args.version, version);
        assert_eq!(args.workspace.as_deref(), Some("acme"));
    }
    assert!(parse(&["licensing-report"]).is_err(), "--version is required");
}

#[test]
fn users_export_requires_the_csv_flag_and_a_workspace() {
    assert!(parse(&["users", "export", "--workspace", "acme"]).is_err());
    assert!(parse(&["users", "export", "--csv"]).is_err());
    let cli = parse(&["users", "export", "--workspace", "acme", "--csv", "--out", "u.csv"]).unwrap();
    let Cmd::Users { command: UsersCmd::Export { workspace, csv, out } } = cli.command else { panic!("not export") };
    assert_eq!((workspace.as_str(), csv, out), ("acme", true, Some(PathBuf::from("u.csv"))));
    let cli = parse(&["overview"]).unwrap();
    assert!(matches!(cli.command, Cmd::Overview(OverviewArgs { workspace: None })));
}

#[tokio::test]
async fn an_unknown_workspace_is_a_clear_error_everywhere() {
    let l = Ledger::new().await;
    let mut out = vec![];
    let e = run_overview(OverviewArgs { workspace: Some("nowhere".into()) }, l.store.clone(), true, &mut out)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "workspace `nowhere` is not in the ledger");
    let cmd = UsersCmd::Export { workspace: "nowhere".into(), csv: true, out: None };
    let e = run_users(cmd, l.store.clone(), false, &mut out).await.unwrap_err();
    assert_eq!(e.to_string(), "workspace `nowhere` is not in the ledger");
    let e = l.report(ApiVersion::V3_5, Some("nowhere")).await.unwrap_err();
    assert_eq!(e.to_string(), "workspace `nowhere` is not in the ledger");
    let e = l.report(ApiVersion::V3_5, Some("no where")).await.unwrap_err();
    assert!(e.to_string().starts_with("--workspace \"no where\" is not a workspace id"), "{e}");
    assert!(out.is_empty(), "nothing printed on error");
}

// ---------------------------------------------------------------------------
// The hand-worked fixtures.
// ---------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reporting")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every folder of `fixtures/reporting/`: apply `commands.jsonl`, then the
/// overview, each `users-<workspace>.csv` and both licensing reports must be
/// exactly what `expected/` says.
#[tokio::test]
async fn reporting_fixtures_match_their_hand_worked_expectations() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("commands.jsonl").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures found in {}", fixtures_dir().display());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000)));
        let l = Ledger { store, handler };
        l.apply(&std::fs::read_to_string(dir.join("commands.jsonl")).unwrap()).await;
        let expected = dir.join("expected");

        assert_eq!(l.overview(None).await, read_json(&expected.join("overview.json")), "{name}: overview");
        for (version, file) in [(ApiVersion::V3_5, "licensing-3.5.json"), (ApiVersion::V4_0, "licensing-4.0.json")] {
            assert_eq!(l.report(version, None).await.unwrap(), read_json(&expected.join(file)), "{name}: {file}");
        }
        let mut csvs = 0;
        for entry in std::fs::read_dir(&expected).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(workspace) = file.strip_prefix("users-").and_then(|f| f.strip_suffix(".csv")) else { continue };
            csvs += 1;
            let want = std::fs::read(&path).unwrap();
            let got = l.csv(workspace).await;
            assert_eq!(read_csv(&got), read_csv(&want), "{name}: {file}, field by field");
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{name}: {file}, byte by byte"
            );
        }
        assert!(csvs > 0, "{name}: no expected users-<workspace>.csv");
    }
}
