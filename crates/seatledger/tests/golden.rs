//! The seed scenarios under `fixtures/scenarios/`, run against their golden
//! expectations. One helper runs every scenario; the expected files were
//! worked out by hand (each scenario's README.md shows the arithmetic).
//! `SEATLEDGER_BLESS=1` rewrites them when a change is intended — review
//! the diff as you would code.

use chrono::{Duration, TimeZone, Utc};
use seatledger::scenario::{run_lines, LineOutcome, SeedScenario, CATALOG, DEMO_DAY, SEED_SCENARIOS};
use seatledger_app::{CommandHandler, ProjectionRunner, SequentialIds};
use seatledger_projections::audit::{AuditLog, AuditQuery};
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::licence_state::LicenceState;
use seatledger_store::{EventStore, MemoryStore, SteppingClock};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn scenario_dir(s: &SeedScenario) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scenarios").join(s.dir)
}

/// Everything a scenario's expectations speak about, computed.
struct Actual {
    outcomes: Value,
    pools: Value,
    changelog: Value,
    audit: Value,
}

async fn run(s: &SeedScenario, entity_queries: &[String]) -> Actual {
    let clock = Arc::new(SteppingClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Duration::seconds(1)));
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_767_225_600_000)));
    for (line, outcome) in run_lines(&handler, CATALOG, s.default_at(), "fixture").await.unwrap() {
        assert!(!matches!(outcome, LineOutcome::Refused { .. }), "catalog line {line}: {outcome:?}");
    }
    let catalog_head = store.head_position().await.unwrap();
    let mut refused = vec![];
    for (line, outcome) in run_lines(&handler, s.commands, s.default_at(), "fixture").await.unwrap() {
        if let LineOutcome::Refused { error } = outcome {
            refused.push(json!({ "line": line, "error": error }));
        }
    }
    let events_appended = store.head_position().await.unwrap() - catalog_head;

    let mut state = LicenceState::default();
    let mut changes = ChangeLog::default();
    let mut audit = AuditLog::default();
    ProjectionRunner::new(store.clone())
        .run(&mut [&mut state, &mut changes, &mut audit], &mut |_, _| {})
        .await
        .unwrap();

    let pools: Vec<Value> = state
        .pools_on(DEMO_DAY)
        .into_iter()
        .map(|p| {
            json!({
                "workspace": p.workspace, "organization": p.organization, "sku": p.sku,
                "total": p.total, "assigned": p.assigned, "available": p.available, "alert_raised": p.alert_raised,
            })
        })
        .collect();
    let changelog: Vec<Value> = changes
        .entries
        .iter()
        .map(|e| {
            json!({
                "workspace": e.workspace, "subscription": e.subscription, "sku": e.sku, "from": e.from, "to": e.to,
                "reason": e.reason, "ordered_by": e.ordered_by, "channel": e.channel, "order_reference": e.order_reference,
            })
        })
        .collect();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for e in audit.entries.iter().filter(|e| e.workspace.is_some()) {
        *by_type.entry(e.event_type.to_string()).or_default() += 1;
    }
    let queries: Vec<Value> = entity_queries
        .iter()
        .map(|entity| {
            let page = audit.query(&AuditQuery { entity: Some(entity.clone()), limit: 1_000, ..AuditQuery::default() });
            json!({ "entity": entity, "types": page.entries.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>() })
        })
        .collect();
    Actual {
        outcomes: json!({ "events_appended": events_appended, "refused": refused }),
        pools: Value::Array(pools),
        changelog: Value::Array(changelog),
        audit: json!({ "by_type": by_type, "entity_queries": queries }),
    }
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn write_json(path: &PathBuf, value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Refused lines must match by line number, and the expected text must be
/// part of the actual message (expectations name the gist, not every word).
fn check_outcomes(name: &str, expected: &Value, actual: &Value, failures: &mut Vec<String>) {
    if expected["events_appended"] != actual["events_appended"] {
        failures.push(format!(
            "{name}: events appended: expected {}, got {}",
            expected["events_appended"], actual["events_appended"]
        ));
    }
    let lines = |v: &Value| -> Vec<(u64, String)> {
        v["refused"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (r["line"].as_u64().unwrap_or(0), r["error"].as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (exp, act) = (lines(expected), lines(actual));
    if exp.iter().map(|r| r.0).collect::<Vec<_>>() != act.iter().map(|r| r.0).collect::<Vec<_>>() {
        failures.push(format!("{name}: refused lines: expected {exp:?}, got {act:?}"));
        return;
    }
    for ((line, want), (_, got)) in exp.iter().zip(&act) {
        if !got.contains(want.as_str()) {
            failures.push(format!("{name}: line {line} refused with {got:?}, expected it to say {want:?}"));
        }
    }
}

#[tokio::test]
async fn every_seed_scenario_matches_its_golden_files() {
    let bless = std::env::var_os("SEATLEDGER_BLESS").is_some();
    let mut failures = vec![];
    assert_eq!(SEED_SCENARIOS.len(), 5, "one scenario per seed");
    for s in SEED_SCENARIOS {
        let dir = scenario_dir(s).join("expected");
        assert!(scenario_dir(s).join("README.md").exists(), "{}: the arithmetic belongs in README.md", s.dir);
        let audit_path = dir.join("audit.json");
        let queries: Vec<String> = if audit_path.exists() {
            read_json(&audit_path)["entity_queries"]
                .as_array()
                .map(|a| a.iter().filter_map(|q| q["entity"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        } else {
            vec![]
        };
        let actual = run(s, &queries).await;
        let files = [
            ("outcomes.json", &actual.outcomes),
            ("pools.json", &actual.pools),
            ("changelog.json", &actual.changelog),
            ("audit.json", &actual.audit),
        ];
        for (file, value) in files {
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                write_json(&path, value);
                continue;
            }
            let expected = read_json(&path);
            if file == "outcomes.json" {
                check_outcomes(s.dir, &expected, value, &mut failures);
            } else if &expected != value {
                failures.push(format!(
                    "{}/{file} differs\n--- expected\n{}\n--- actual\n{}",
                    s.dir,
                    serde_json::to_string_pretty(&expected).unwrap(),
                    serde_json::to_string_pretty(value).unwrap()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
