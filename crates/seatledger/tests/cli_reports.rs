//! `seatledger report …` through `report_cli::run_report`, on an in-memory
//! ledger filled through `seatledger_app::CommandHandler`.
//!
//! - the hand-worked fixtures of `fixtures/reports/` (figures and errors);
//! - the exports: CSV parses and carries the right numbers, the Excel
//!   workbook is a zip with its sheets, the SVG chart is well-formed XML
//!   with line series, JSON numbers;
//! - the reports agree with the domain's own seat accounting
//!   (`LicenceState`) on every pool of the seed scenarios.

use clap::Parser;
use seatledger::report_cli::{run_report, ReportCmd};
use seatledger::scenario::{run_lines, LineOutcome, CATALOG, SEED_SCENARIOS};
use seatledger_app::invoicing::{fold_known, AsOf};
use seatledger_app::{CommandHandler, SequentialIds};
use seatledger_projections::licence_state::LicenceState;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `seatledger report …` without the rest of the binary.
#[derive(Debug, Parser)]
#[command(name = "report")]
struct ReportArgs {
    #[command(subcommand)]
    cmd: ReportCmd,
}

fn parse(args: &[&str]) -> Result<ReportCmd, clap::Error> {
    ReportArgs::try_parse_from(std::iter::once("report").chain(args.iter().copied())).map(|a| a.cmd)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reports")
}

fn fixture(name: &str) -> String {
    let path = fixtures().join(name).join("commands.jsonl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn default_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc)
}

fn new_store() -> (Arc<dyn EventStore>, CommandHandler) {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_704_067_200_000)));
    (store, handler)
}

/// The catalog and `commands`, every line accepted.
async fn ledger(commands: &str) -> Arc<dyn EventStore> {
    let (store, handler) = new_store();
    for text in [CATALOG, commands] {
        for (line, outcome) in run_lines(&handler, text, default_at(), "fixture").await.unwrap() {
            assert!(!matches!(outcome, LineOutcome::Refused { .. }), "line {line} was refused: {outcome:?}");
        }
    }
    store
}

/// Run `report <args>` (printing tables unless the args say otherwise).
async fn report(store: &Arc<dyn EventStore>, args: &[&str]) -> anyhow::Result<String> {
    report_with(store, args, false).await
}

async fn report_with(store: &Arc<dyn EventStore>, args: &[&str], json: bool) -> anyhow::Result<String> {
    let cmd = parse(args)?;
    let mut out = vec![];
    run_report(cmd, store.clone(), json, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

async fn report_json(store: &Arc<dyn EventStore>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = report(store, &all).await.unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
}

/// Compare `expected` with `actual`: objects by the keys `expected` names,
/// arrays element by element (same length), anything else exactly.
fn compare(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                match a.get(key) {
                    Some(actual) => compare(value, actual, &format!("{path}.{key}"), problems),
                    None => problems.push(format!("{path}.{key}: missing from the report")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!("{path}: {} entries expected, {} found: {actual}", e.len(), a.len()));
                return;
            }
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                compare(e, a, &format!("{path}[{i}]"), problems);
            }
        }
        (e, a) if e == a => {}
        (e, a) => problems.push(format!("{path}: expected {e}, found {a}")),
    }
}

fn strings(args: &Value) -> Vec<String> {
    args.as_array().expect("args are a list").iter().map(|a| a.as_str().expect("args are text").to_owned()).collect()
}

#[tokio::test]
async fn fixtures_match_the_hand_worked_reports() {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "the report fixtures are missing: {dirs:?}");
    let mut problems = vec![];
    let mut checked = 0;
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let store = ledger(&fixture(&name)).await;
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
        for case in expected["reports"].as_array().unwrap() {
            let args = strings(&case["args"]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let label = format!("{name}: {}", case["name"].as_str().unwrap_or("?"));
            let actual = report_json(&store, &args).await;
            compare(&case["expect"], &actual, &label, &mut problems);
            if let Some(series) = case.get("series").and_then(Value::as_object) {
                let daily = actual["daily"].as_array().unwrap();
                for (column, values) in series {
                    let found = Value::Array(daily.iter().map(|d| d[column].clone()).collect());
                    compare(values, &found, &format!("{label}: daily {column}"), &mut problems);
                }
            }
            checked += 1;
        }
        for case in expected["errors"].as_array().unwrap() {
            let args = strings(&case["args"]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let wanted = case["contains"].as_str().unwrap();
            match report(&store, &args).await {
                Ok(out) => problems.push(format!("{name}: {args:?} succeeded: {out}")),
                Err(e) => {
                    let message = format!("{e:#}");
                    if !message.contains(wanted) {
                        problems.push(format!("{name}: {args:?}: {message:?} does not say {wanted:?}"));
                    }
                }
            }
            checked += 1;
        }
        for case in expected.get("refused_by_the_command_line").and_then(Value::as_array).into_iter().flatten() {
            let args = strings(case);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if parse(&args).is_ok() {
                problems.push(format!("{name}: the command line accepted {args:?}"));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{} of {checked} checks failed:\n{}", problems.len(), problems.join("\n"));
    assert!(checked >= 30, "only {checked} checks ran");
}

const WEEK: &[&str] = &["licences", "--workspace", "w02", "--sku", "HYBRID-SEAT", "--week", "2024-04-10"];

#[tokio::test]
async fn csv_has_the_period_row_then_one_row_per_day() {
    let store = ledger(&fixture("02-week-and-custom-range")).await;
    let text = report(&store, &[WEEK, &["--format", "csv"]].concat()).await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        headers,
        [
            "row",
            "workspace",
            "organization",
            "sku",
            "start",
            "end",
            "total",
            "assigned",
            "available",
            "utilisation_percent",
            "top_ups",
            "licences_added",
            "automatic_added",
            "manual_added",
            "order_added"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), 8, "one period row and 7 days");
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let get = |row: &csv::StringRecord, name: &str| row.get(column(name)).unwrap().to_owned();
    let period = &rows[0];
    assert_eq!(get(period, "row"), "period");
    assert_eq!((get(period, "start"), get(period, "end")), ("2024-04-08".into(), "2024-04-14".into()));
    assert_eq!(get(period, "available"), "4");
    assert_eq!(get(period, "utilisation_percent"), "66.53");
    assert_eq!(get(period, "top_ups"), "2");
    assert_eq!(get(period, "licences_added"), "4");
    assert_eq!((get(period, "automatic_added"), get(period, "manual_added")), ("2".into(), "2".into()));
    let days = &rows[1..];
    assert!(days.iter().all(|r| get(r, "row") == "day" && get(r, "start") == get(r, "end")));
    let available: Vec<u64> = days.iter().map(|r| get(r, "available").parse().unwrap()).collect();
    assert_eq!(available, [5, 3, 4, 0, 2, 4, 4]);
    let utilisation: Vec<String> = days.iter().map(|r| get(r, "utilisation_percent")).collect();
    assert_eq!(utilisation, ["50.00", "60.00", "67.50", "100.00", "80.00", "64.86", "60.00"]);
    let added: u64 = days.iter().map(|r| get(r, "licences_added").parse::<u64>().unwrap()).sum();
    assert_eq!(added, 4, "the days add up to the period");

    // A month without licences: the utilisation cells are empty.
    let store = ledger(&fixture("01-month-mid-month-change")).await;
    let february = ["licences", "--workspace", "w01", "--sku", "HYBRID-SEAT", "--month", "2024-02", "--format", "csv"];
    let text = report(&store, &february).await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| r.get(column("utilisation_percent")) == Some("")));
}

#[tokio::test]
async fn csv_of_additions_has_one_row_per_addition() {
    let store = ledger(&fixture("03-month-end-additions")).await;
    let text =
        report(&store, &["additions", "--workspace", "w03", "--month", "2024-05", "--format", "csv"]).await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let listed: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| (r[col("sku")].to_owned(), r[col("kind")].to_owned(), r[col("licences")].parse().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("ENGAGE-SEAT".into(), "automatic".into(), 1),
            ("ENGAGE-SEAT".into(), "manual".into(), 4),
            ("HYBRID-SEAT".into(), "manual".into(), 3),
            ("HYBRID-SEAT".into(), "automatic".into(), 2),
            ("HYBRID-SEAT".into(), "manual".into(), 1),
        ]
    );
    assert_eq!(&rows[1][col("ordered_by")], "bob@w03.example");
    assert_eq!(&rows[1][col("order_reference")], "LM-W03-0525");
    assert_eq!(&rows[0][col("trigger_event")], "0190a1b2-0000-7000-8000-000000000510");
    assert_eq!(&rows[4][col("effective_at")], "2024-05-31T23:30:00Z");

    // A month without additions still gives the header.
    let text =
        report(&store, &["additions", "--workspace", "w03", "--month", "2024-07", "--format", "csv"]).await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), &headers);
    assert_eq!(reader.records().count(), 0);
}

fn zip_entries(bytes: &[u8]) -> Vec<String> {
    // Central directory file headers: signature PK\x01\x02, name length at
    // offset 28, name at offset 46.
    let mut names = vec![];
    let mut i = 0;
    while i + 46 <= bytes.len() {
        if bytes[i..i + 4] == [0x50, 0x4B, 0x01, 0x02] {
            let len = usize::from(u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]));
            names.push(String::from_utf8_lossy(&bytes[i + 46..i + 46 + len]).into_owned());
            i += 46 + len;
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test]
async fn xlsx_workbooks_are_zip_files_with_their_sheets() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(&fixture("02-week-and-custom-range")).await;
    let path = dir.path().join("week.xlsx");
    let out = report(&store, &[WEEK, &["--format", "xlsx", "--out", path.to_str().unwrap()]].concat()).await.unwrap();
    assert!(out.contains("wrote the licence report to"), "{out}");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "not a zip file");
    let entries = zip_entries(&bytes);
    for sheet in ["xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/worksheets/sheet3.xml"]
    {
        assert!(entries.iter().any(|e| e == sheet), "{sheet} missing from {entries:?}");
    }

    // The format follows the file's extension when not given.
    let store3 = ledger(&fixture("03-month-end-additions")).await;
    let path = dir.path().join("may.XLSX");
    report(&store3, &["additions", "--workspace", "w03", "--month", "2024-05", "--out", path.to_str().unwrap()])
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"PK"));
    assert!(zip_entries(&bytes).iter().any(|e| e == "xl/worksheets/sheet2.xml"));

    // Excel goes to a file only.
    let err = report(&store, &[WEEK, &["--format", "xlsx"]].concat()).await.unwrap_err();
    assert!(format!("{err:#}").contains("--out FILE.xlsx"), "{err:#}");
}

/// A small well-formedness check: tags nest and close, attributes are
/// quoted, entities are complete. Returns the element names in order.
fn xml_elements(text: &str) -> Result<Vec<String>, String> {
    fn check_text(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(i) = rest.find('&') {
            let end = rest[i..].find(';').ok_or_else(|| format!("unterminated entity in {text:?}"))?;
            let entity = &rest[i + 1..i + end];
            let known = ["amp", "lt", "gt", "quot", "apos"].contains(&entity)
                || entity.strip_prefix('#').is_some_and(|n| !n.is_empty());
            if !known {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &rest[i + end + 1..];
        }
        Ok(())
    }
    let name_ok =
        |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'));
    let mut stack: Vec<String> = vec![];
    let mut names = vec![];
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        if stack.is_empty() && !rest[..i].trim().is_empty() {
            return Err(format!("text outside the root: {:?}", &rest[..i]));
        }
        check_text(&rest[..i])?;
        rest = &rest[i..];
        for (open, close) in [("<?", "?>"), ("<!--", "-->")] {
            if rest.starts_with(open) {
                let end = rest.find(close).ok_or("unclosed declaration or comment")?;
                rest = &rest[end + close.len()..];
            }
        }
        if !rest.starts_with('<') || rest.starts_with("<?") || rest.starts_with("<!--") {
            continue;
        }
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match quote {
                Some(q) if c == q => {
                    quote = None;
                    false
                }
                Some(_) => false,
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    false
                }
                None => c == '>',
            })
            .map(|(i, _)| i)
            .ok_or("unclosed tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/').trim();
        let (name, mut attrs) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        if !name_ok(name) {
            return Err(format!("bad element name {name:?}"));
        }
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let (attr, after) = attrs.split_once('=').ok_or_else(|| format!("attribute without value in <{name}>"))?;
            if !name_ok(attr.trim()) {
                return Err(format!("bad attribute name {attr:?} in <{name}>"));
            }
            let after = after.trim_start();
            let q = after.chars().next().filter(|c| *c == '"' || *c == '\'').ok_or("unquoted attribute")?;
            let close = after[1..].find(q).ok_or("unterminated attribute")?;
            let value = &after[1..1 + close];
            if value.contains('<') {
                return Err(format!("'<' in attribute {attr}"));
            }
            check_text(value)?;
            attrs = &after[close + 2..];
        }
        if stack.is_empty() && !names.is_empty() {
            return Err(format!("a second root element <{name}>"));
        }
        names.push(name.to_owned());
        if !self_closing {
            stack.push(name.to_owned());
        }
    }
    if !rest.trim().is_empty() || !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    Ok(names)
}

/// The number of points of each `<polyline>` stroked in `colour`.
fn polylines(svg: &str, colour: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.contains(&format!("stroke=\"{colour}\"")))
        .filter_map(|p| p.split("points=\"").nth(1).and_then(|rest| rest.split('"').next()))
        .map(|points| points.split_whitespace().count())
        .collect()
}

#[test]
fn the_xml_check_refuses_broken_documents() {
    assert!(xml_elements("<svg><polyline points=\"1,2\"/></svg>").is_ok());
    assert!(xml_elements("<svg><line></svg>").is_err());
    assert!(xml_elements("<svg a=1></svg>").is_err());
    assert!(xml_elements("<svg>&nope;</svg>").is_err());
    assert!(xml_elements("<svg></svg><svg></svg>").is_err());
}

#[tokio::test]
async fn the_chart_is_an_svg_with_line_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(&fixture("01-month-mid-month-change")).await;
    for (month, lines) in [("2024-03", 2), ("2024-02", 1)] {
        let path = dir.path().join(format!("{month}.svg"));
        let args = ["licences", "--workspace", "w01", "--sku", "HYBRID-SEAT", "--month", month];
        let out = report(&store, &[&args[..], &["--chart", path.to_str().unwrap()]].concat()).await.unwrap();
        assert!(out.contains("Average utilisation"), "the table is still printed: {out}");
        assert!(out.contains("wrote the chart to"), "{out}");
        let svg = std::fs::read_to_string(&path).unwrap();
        let elements = xml_elements(&svg).unwrap_or_else(|e| panic!("{month}: not well-formed XML: {e}"));
        assert_eq!(elements.first().map(String::as_str), Some("svg"));
        assert!(elements.iter().any(|e| e == "polyline"), "{month}: no polyline in {elements:?}");
        // The series: utilisation in blue, available in red, one point a
        // day (the legend's samples have two). February has no licences,
        // so it has no utilisation line, only the available one (at 0).
        let series =
            |colour: &str| polylines(&svg, colour).into_iter().filter(|points| *points > 2).collect::<Vec<usize>>();
        let days = if month == "2024-03" { 31 } else { 29 };
        assert_eq!(series("#FF0000"), [days], "{month}: the available line");
        let expected: &[usize] = if lines == 2 { &[31] } else { &[] };
        assert_eq!(series("#0000FF"), expected, "{month}: the utilisation line");
    }
    // One day still draws its lines.
    let path = dir.path().join("day.svg");
    let args = ["licences", "--workspace", "w01", "--sku", "HYBRID-SEAT", "--day", "2024-03-10"];
    report(&store, &[&args[..], &["--chart", path.to_str().unwrap()]].concat()).await.unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(xml_elements(&svg).unwrap().iter().any(|e| e == "polyline"));
    // The day's utilisation is drawn as a flat line across it, next to the legend's sample.
    assert_eq!(polylines(&svg, "#0000FF"), [2, 2], "{svg}");
}

#[tokio::test]
async fn json_numbers_and_the_global_json_flag() {
    let store = ledger(&fixture("01-month-mid-month-change")).await;
    let args = ["licences", "--workspace", "w01", "--sku", "HYBRID-SEAT", "--month", "2024-03"];
    let text = report_with(&store, &args, true).await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["available_at_end"].as_u64(), Some(2));
    assert_eq!(v["total_at_end"].as_u64(), Some(10));
    assert_eq!(v["days"].as_u64(), Some(31));
    // Decimal figures are decimal text, as money is elsewhere in the ledger.
    assert_eq!(v["average_utilisation_percent"], "68.39");
    assert_eq!(v["daily"][9]["utilisation_percent"], "80.00");
    assert_eq!(v["automatic"]["count"].as_u64(), Some(0));
    // --format wins over --json.
    let text = report_with(&store, &[&args[..], &["--format", "table"]].concat(), true).await.unwrap();
    assert!(text.contains("68.39%"), "{text}");
    assert!(text.contains("Available licences (end of range)"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn a_json_file_is_written_and_standard_output_stays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(&fixture("03-month-end-additions")).await;
    let path = dir.path().join("may.json");
    let out =
        report(&store, &["additions", "--workspace", "w03", "--month", "2024-05", "--out", path.to_str().unwrap()])
            .await
            .unwrap();
    assert_eq!(out, "", "the note goes to standard error for machine formats");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["total"]["licences"].as_u64(), Some(11));
    let table = report(&store, &["additions", "--workspace", "w03", "--month", "2024-05"]).await.unwrap();
    assert!(table.contains("LM-W03-0525") && table.contains("5 (11 licences)"), "{table}");
}

#[tokio::test]
async fn as_of_position_reports_what_the_ledger_knew_then() {
    let store = ledger(&fixture("02-week-and-custom-range")).await;
    let head = store.head_position().await.unwrap();
    // The last event is the automatic top-up of 13 April.
    let before = (head - 1).to_string();
    let then = report_json(&store, &[WEEK, &["--as-of-position", &before]].concat()).await;
    assert_eq!(then["automatic"]["count"].as_u64(), Some(0));
    assert_eq!(then["available_at_end"].as_u64(), Some(2));
    let now = report_json(&store, WEEK).await;
    assert_eq!(now["automatic"]["count"].as_u64(), Some(1));
    let beyond = (head + 1).to_string();
    let err = report(&store, &[WEEK, &["--as-of-position", &beyond]].concat()).await.unwrap_err();
    assert!(format!("{err:#}").contains("beyond the ledger's last position"), "{err:#}");
}

#[tokio::test]
async fn reports_agree_with_the_domains_seat_accounting_on_the_seed_scenarios() {
    let (store, handler) = new_store();
    run_lines(&handler, CATALOG, default_at(), "test").await.unwrap();
    for scenario in SEED_SCENARIOS {
        // Some lines are refused on purpose (the scenarios show the rules).
        run_lines(&handler, scenario.commands, scenario.default_at(), "test").await.unwrap();
    }
    let mut state = LicenceState::default();
    fold_known(store.as_ref(), AsOf::Head, &mut [&mut state]).await.unwrap();
    // A day after every event of the scenarios: the domain's state "now"
    // and the reports' business time describe the same thing.
    let day = chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
    let rows = state.pools_on(day);
    assert!(rows.len() >= 5, "{rows:?}");
    for row in rows {
        let mut args = vec!["licences", "--workspace", &row.workspace, "--sku", &row.sku, "--day", "2025-06-30"];
        if let Some(org) = &row.organization {
            args.extend(["--organization", org]);
        }
        let v = report_json(&store, &args).await;
        assert_eq!(
            (v["total_at_end"].as_u64(), v["assigned_at_end"].as_u64(), v["available_at_end"].as_u64()),
            (Some(row.total), Some(row.assigned), Some(row.available)),
            "{row:?}"
        );
    }
}
