//! Hand-made invoice golden files: every folder under `fixtures/invoices/`
//! holds a command file, the invoices expected from it and a README with the
//! arithmetic, worked by hand from `docs/invoicing.md`.
//!
//! Each folder runs in a fresh in-memory store: every line of
//! `commands.jsonl` goes through the real command handler (and must be
//! accepted unless `expected.json` lists its line number under `refused`),
//! then every expected invoice is previewed and compared line by line, and
//! the optional `steps` (issue, apply more commands, reproduce, diff,
//! correct, preview) run in order.
//!
//! The expectations are written by hand and never rewritten by this test:
//! `SEATLEDGER_BLESS` is deliberately ignored.
//!
//! # `expected.json`
//!
//! ```json
//! {
//!   "refused": [{"line": 7, "error_contains": "has one account"}],
//!   "invoices": [{
//!     "workspace": "w", "account": "a", "month": "2024-03",
//!     "lines": [{"key": "per_licence/s1", "rule": "per_licence.daily_prorated",
//!                "quantity": "179/31", "amount": "115.48 EUR"}],
//!     "subtotal": "115.48 EUR", "tax": null, "total": "115.48 EUR"
//!   }],
//!   "steps": [{"do": "issue", …}, {"do": "apply", "commands": [{…}]}, …]
//! }
//! ```
//!
//! - `lines` lists every line of the invoice (no more, no fewer), matched by
//!   `key`. `amount` is compared as the exact printed text; `quantity` is a
//!   decimal ("2", "0.5") compared after normalizing, or a fraction ("179/31")
//!   compared to 20 decimal places; `rule` is compared exactly. Each of
//!   `quantity` and `rule` may be left out.
//! - `tax` is the printed tax, or `null` for an invoice without a tax line.
//! - Steps: `issue` (workspace, account, month, at; optional `number`,
//!   `total`), `apply` (`commands`: command objects, all accepted),
//!   `reproduce` (number, `identical`), `diff` (number, `differences`:
//!   key/before/after, `tax_before`, `tax_after`), `correct` (number, at; then
//!   either `refused_contains`, or `kind`, `lines` key/amount, `tax`, `total`
//!   and `billed_total`: the invoice plus all its notes, which must also equal
//!   the corrected total), `preview` (`invoice`: as above).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use seatledger_app::invoicing::{self, AsOf};
use seatledger_app::{CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::*;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/invoices")
}

/// One scenario's run: the handler and the mismatches found so far.
struct Run {
    name: String,
    handler: CommandHandler,
    next_command: u128,
    failures: Vec<String>,
}

impl Run {
    fn new(name: String) -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        Self {
            name,
            handler: CommandHandler::new(store, Arc::new(SequentialIds::new(1_700_000_000_000))),
            next_command: 0,
            failures: vec![],
        }
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn check_eq(&mut self, what: &str, expected: &str, actual: &str) {
        if expected != actual {
            self.fail(format!("{what}: expected {expected}, got {actual}"));
        }
    }

    fn meta(&mut self, actor: Option<String>, channel: Option<String>, id: Option<uuid::Uuid>) -> CommandMeta {
        self.next_command += 1;
        let id = id.unwrap_or_else(|| uuid::Uuid::from_u128(0x601d_0000_0000 + self.next_command));
        CommandMeta::new(actor.unwrap_or_else(|| "golden@test".into()), channel.unwrap_or_else(|| "cli".into()), id)
    }

    /// Apply one command line; `Err` with the refusal when it is refused.
    async fn apply_line(&mut self, line: &str) -> Result<(), String> {
        let env = parse_command(line).map_err(|e| format!("does not parse: {e}"))?;
        let at = env.at.ok_or_else(|| "has no `at`: every golden command carries one".to_owned())?;
        let meta = self.meta(env.actor, env.channel, env.command_id);
        let command = Command { at, body: env.body };
        self.handler.handle(&command, &meta).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn apply_file(&mut self, text: &str, refused: &BTreeMap<usize, String>) {
        let mut command_lines = vec![];
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with("//") {
                continue;
            }
            command_lines.push(n);
            let outcome = self.apply_line(trimmed).await;
            match (outcome, refused.get(&n)) {
                (Ok(()), None) => {}
                (Ok(()), Some(_)) => self.fail(format!("commands.jsonl line {n} was accepted but should be refused")),
                (Err(e), None) => self.fail(format!("commands.jsonl line {n} was refused: {e}")),
                (Err(e), Some(want)) => {
                    if !e.contains(want.as_str()) {
                        self.fail(format!(
                            "commands.jsonl line {n} refused with {e:?}, expected it to mention {want:?}"
                        ));
                    }
                }
            }
        }
        for n in refused.keys().filter(|n| !command_lines.contains(n)) {
            self.fail(format!("commands.jsonl line {n} is listed as refused but is not a command line"));
        }
    }

    async fn check_invoice(&mut self, exp: &Value) {
        let ws = WorkspaceId::new(text(exp, "workspace")).unwrap();
        let acc = AccountId::new(text(exp, "account")).unwrap();
        let month = Month::parse(&text(exp, "month")).unwrap();
        let label = format!("invoice {ws}/{acc}/{month}");
        let invoice = match invoicing::preview(self.handler.store().as_ref(), &ws, Some(&acc), month, AsOf::Head).await
        {
            Ok(mut v) if v.len() == 1 => v.pop().unwrap(),
            Ok(v) => return self.fail(format!("{label}: preview gave {} invoices", v.len())),
            Err(e) => return self.fail(format!("{label}: preview failed: {e}")),
        };
        self.compare_document(&label, exp, &invoice);
    }

    fn compare_document(&mut self, label: &str, exp: &Value, invoice: &InvoiceDocument) {
        let expected_lines = exp["lines"].as_array().cloned().unwrap_or_default();
        for el in &expected_lines {
            let key = text(el, "key");
            let Some(line) = invoice.lines.iter().find(|l| l.key == key) else {
                self.fail(format!("{label}: no line `{key}` (lines: {})", keys(invoice)));
                continue;
            };
            let what = format!("{label} line `{key}`");
            self.check_eq(&format!("{what} amount"), &text(el, "amount"), &line.amount.to_string());
            if let Some(rule) = el.get("rule").and_then(Value::as_str) {
                self.check_eq(&format!("{what} rule"), rule, &line.rule);
            }
            if let Some(q) = el.get("quantity").and_then(Value::as_str) {
                if !quantity_matches(q, line.quantity) {
                    self.fail(format!("{what} quantity: expected {q}, got {}", line.quantity));
                }
            }
        }
        for line in &invoice.lines {
            if !expected_lines.iter().any(|el| text(el, "key") == line.key) {
                self.fail(format!("{label}: unexpected line `{}` of {} ({})", line.key, line.amount, line.formula));
            }
        }
        self.check_eq(&format!("{label} subtotal"), &text(exp, "subtotal"), &invoice.subtotal.to_string());
        self.check_tax(label, exp.get("tax"), &invoice.taxes);
        self.check_eq(&format!("{label} total"), &text(exp, "total"), &invoice.total.to_string());
    }

    fn check_tax(&mut self, label: &str, expected: Option<&Value>, taxes: &[TaxLine]) {
        match (expected.and_then(Value::as_str), taxes) {
            (None, []) => {}
            (None, t) => self.fail(format!("{label}: expected no tax line, got {}", t[0].tax)),
            (Some(want), [t]) => self.check_eq(&format!("{label} tax"), want, &t.tax.to_string()),
            (Some(want), t) => self.fail(format!("{label}: expected one tax line of {want}, got {} lines", t.len())),
        }
    }

    async fn run_step(&mut self, i: usize, step: &Value) {
        let label = format!("step {} ({})", i + 1, text(step, "do"));
        let meta = self.meta(None, None, None);
        match text(step, "do").as_str() {
            "apply" => {
                for cmd in step["commands"].as_array().expect("`commands` is a list") {
                    let line = cmd.to_string();
                    if let Err(e) = self.apply_line(&line).await {
                        self.fail(format!("{label}: {line} was refused: {e}"));
                    }
                }
            }
            "preview" => self.check_invoice(&step["invoice"]).await,
            "issue" => {
                let ws = WorkspaceId::new(text(step, "workspace")).unwrap();
                let acc = AccountId::new(text(step, "account")).unwrap();
                let month = Month::parse(&text(step, "month")).unwrap();
                match invoicing::issue(&self.handler, &ws, &acc, month, time(&text(step, "at")), &meta).await {
                    Ok((invoice, _)) => {
                        if let Some(n) = step.get("number").and_then(Value::as_str) {
                            self.check_eq(&format!("{label} number"), n, &invoice.number);
                        }
                        if let Some(t) = step.get("total").and_then(Value::as_str) {
                            self.check_eq(&format!("{label} total"), t, &invoice.total.to_string());
                        }
                    }
                    Err(e) => self.fail(format!("{label}: refused: {e}")),
                }
            }
            "reproduce" => match invoicing::reproduce(&self.handler, &text(step, "number")).await {
                Ok(r) => {
                    let want = step["identical"].as_bool().unwrap_or(true);
                    if r.identical != want {
                        self.fail(format!("{label}: identical = {}, expected {want}", r.identical));
                    }
                }
                Err(e) => self.fail(format!("{label}: {e}")),
            },
            "diff" => match invoicing::diff(&self.handler, &text(step, "number")).await {
                Ok(d) => {
                    let expected = step["differences"].as_array().cloned().unwrap_or_default();
                    let got: Vec<String> =
                        d.differences.iter().map(|x| format!("{}: {} -> {}", x.key, x.before, x.after)).collect();
                    let want: Vec<String> = expected
                        .iter()
                        .map(|x| format!("{}: {} -> {}", text(x, "key"), text(x, "before"), text(x, "after")))
                        .collect();
                    self.check_eq(&format!("{label} differences"), &want.join("; "), &got.join("; "));
                    self.check_eq(&format!("{label} tax before"), &text(step, "tax_before"), &d.tax_before.to_string());
                    self.check_eq(&format!("{label} tax after"), &text(step, "tax_after"), &d.tax_after.to_string());
                }
                Err(e) => self.fail(format!("{label}: {e}")),
            },
            "correct" => {
                let number = text(step, "number");
                let outcome = invoicing::correct(&self.handler, &number, time(&text(step, "at")), &meta).await;
                match (outcome, step.get("refused_contains").and_then(Value::as_str)) {
                    (Err(e), Some(want)) => {
                        if !e.to_string().contains(want) {
                            self.fail(format!("{label}: refused with {e:?}, expected it to mention {want:?}"));
                        }
                    }
                    (Ok((note, _)), Some(_)) => {
                        self.fail(format!("{label}: issued {} but should be refused", note.number))
                    }
                    (Err(e), None) => self.fail(format!("{label}: refused: {e}")),
                    (Ok((note, _)), None) => {
                        let label = format!("{label} note {}", note.number);
                        self.check_eq(&format!("{label} kind"), &text(step, "kind"), note.kind.as_str());
                        let want: Vec<String> = step["lines"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|l| format!("{}: {}", text(l, "key"), text(l, "amount")))
                            .collect();
                        let got: Vec<String> = note.lines.iter().map(|l| format!("{}: {}", l.key, l.amount)).collect();
                        self.check_eq(&format!("{label} lines"), &want.join("; "), &got.join("; "));
                        self.check_tax(&label, step.get("tax"), &note.taxes);
                        self.check_eq(&format!("{label} total"), &text(step, "total"), &note.total.to_string());
                        self.check_billed_total(&label, &number, &text(step, "billed_total")).await;
                    }
                }
            }
            other => panic!("{}: unknown step `{other}`", self.name),
        }
    }

    /// The invoice plus all its notes equals `expected`, and equals the
    /// total recomputed now (the corrected total).
    async fn check_billed_total(&mut self, label: &str, number: &str, expected: &str) {
        let issued = match invoicing::find_issued(&self.handler, number).await {
            Ok(i) => i,
            Err(e) => return self.fail(format!("{label}: {e}")),
        };
        let billed = issued.notes.iter().fold(issued.invoice.total.amount, |sum, note| sum + note.total.amount);
        let billed = Money::new(billed, issued.invoice.currency);
        self.check_eq(&format!("{label} invoice + notes"), expected, &billed.to_string());
        let now = invoicing::preview(
            self.handler.store().as_ref(),
            &issued.invoice.workspace,
            Some(&issued.invoice.account),
            issued.invoice.period,
            AsOf::Head,
        )
        .await;
        match now {
            Ok(v) => self.check_eq(&format!("{label} corrected total"), expected, &v[0].total.to_string()),
            Err(e) => self.fail(format!("{label}: recomputing failed: {e}")),
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("expected.json: `{key}` should be text, found {other:?} in {v}"),
    }
}

fn keys(invoice: &InvoiceDocument) -> String {
    invoice.lines.iter().map(|l| l.key.as_str()).collect::<Vec<_>>().join(", ")
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// "2" or "0.5": equal after normalizing. "179/31": the fraction, to 20
/// decimal places (the ledger keeps 28 significant digits).
fn quantity_matches(expected: &str, actual: Decimal) -> bool {
    match expected.split_once('/') {
        Some((n, d)) => {
            let (n, d) = (Decimal::from_str(n.trim()).unwrap(), Decimal::from_str(d.trim()).unwrap());
            (actual * d - n).abs() < Decimal::new(1, 20)
        }
        None => Decimal::from_str(expected).unwrap().normalize() == actual.normalize(),
    }
}

async fn run_scenario(dir: &Path) -> Run {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let commands = std::fs::read_to_string(dir.join("commands.jsonl")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
    .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
    assert!(dir.join("README.md").exists(), "{name}: every golden folder explains its arithmetic in README.md");
    let refused: BTreeMap<usize, String> = expected["refused"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| (r["line"].as_u64().expect("`line` is a number") as usize, text(r, "error_contains")))
        .collect();
    let mut run = Run::new(name);
    run.apply_file(&commands, &refused).await;
    for exp in expected["invoices"].as_array().cloned().unwrap_or_default() {
        run.check_invoice(&exp).await;
    }
    for (i, step) in expected["steps"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        run.run_step(i, step).await;
    }
    run
}

#[tokio::test]
async fn every_invoice_golden_folder_matches_its_hand_worked_expectations() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/invoices exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no golden folders under fixtures/invoices");
    let mut report = vec![];
    for dir in &dirs {
        let run = run_scenario(dir).await;
        if run.failures.is_empty() {
            eprintln!("ok   {}", run.name);
        } else {
            eprintln!("FAIL {}", run.name);
            for f in &run.failures {
                eprintln!("       {f}");
            }
            report.push(format!("{}:\n  {}", run.name, run.failures.join("\n  ")));
        }
    }
    assert!(report.is_empty(), "{} of {} golden folders differ:\n{}", report.len(), dirs.len(), report.join("\n"));
}
