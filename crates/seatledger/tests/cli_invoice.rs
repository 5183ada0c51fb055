//! `seatledger invoice …` and the bitemporal reads, end to end through the
//! real binary on SQLite files.
//!
//! The ledger: Acme bills one EUR account at 21% VAT; subscription `s1` holds
//! 2 seats at €31 per seat-month from 2024-03-01 (taxable). March has 31 days:
//!
//! - as issued: 2 × 31 = 62 seat-days, 31 × 62 ÷ 31 = 62.00; VAT 13.02; total 75.02.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Ledger {
    dir: tempfile::TempDir,
}

impl Ledger {
    fn new() -> Self {
        let l = Self { dir: tempfile::tempdir().unwrap() };
        l.apply("setup.jsonl", SETUP);
        l
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

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
    }

    /// Run a command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        stderr
    }

    fn apply(&self, name: &str, text: &str) {
        let path = self.file(name, text);
        self.ok(&["apply", path.to_str().unwrap()]);
    }

    fn head(&self) -> u64 {
        self.json(&["verify"])["checked"].as_u64().unwrap()
    }

    fn issue_march(&self) -> Value {
        self.json(&[
            "invoice",
            "issue",
            "--workspace",
            "acme",
            "--account",
            "main",
            "--period",
            "2024-03",
            "--at",
            "2024-04-01T06:00:00Z",
        ])
    }
}

/// Seven commands, eight events: the subscription records its creation and its first quantity.
const SETUP: &str = r#"{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}
{"command":"set_price","at":"2024-01-02T08:00:00Z","sku":"SEAT","price":{"price_list":"std","selling_per_unit":{"amount":"31","currency":"EUR"},"cost_per_unit":{"amount":"20","currency":"EUR"}}}
{"command":"create_workspace","workspace":"acme","at":"2024-03-01T09:00:00Z","actor":"ops@acme.example","name":"Acme","billing_mode":"single","created_on":"2024-03-01"}
{"command":"set_billing_info","workspace":"acme","at":"2024-03-01T09:00:00Z","actor":"ops@acme.example","info":{"company_name":"Acme B.V.","reference_number":"ACME-042","customer_type":"Direct customer","industry":"Manufacturing"}}
{"command":"open_billing_account","workspace":"acme","at":"2024-03-01T09:00:00Z","account":"main","name":"Acme Main","currency":"EUR","tax_rate":"21"}
{"command":"create_organization","workspace":"acme","at":"2024-03-01T09:00:00Z","org":"hq","name":"HQ"}
{"command":"create_subscription","workspace":"acme","at":"2024-03-01T09:00:00Z","actor":"ops@acme.example","subscription":"s1","account":"main","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":2,"order":{"ordered_by":"ops@acme.example","order_reference":"SO-1"},"price_list":"std","currency":"EUR","taxable":true}
"#;

const SETUP_EVENTS: u64 = 8;

fn quantity(at: Option<&str>, subscription: &str, quantity: u32) -> String {
    let at = at.map(|a| format!(r#""at":"{a}","#)).unwrap_or_default();
    format!(
        r#"{{"command":"change_quantity","workspace":"acme",{at}"subscription":"{subscription}","quantity":{quantity},"order":{{"ordered_by":"ops@acme.example"}},"subscription_channel":"portal"}}"#
    )
}

fn amount(v: &Value) -> &str {
    assert_eq!(v["currency"], "EUR", "{v}");
    v["amount"].as_str().unwrap()
}

#[test]
fn preview_issue_show_explain_reproduce_then_a_backdated_change_is_diffed_and_corrected() {
    let l = Ledger::new();
    let march = ["--workspace", "acme", "--period", "2024-03"];

    // Preview: 31 × 62 seat-days ÷ 31 = 62.00; 21% VAT = 13.02; 75.02.
    let preview = l.json(&[&["invoice", "preview"][..], &march].concat());
    let invoices = preview.as_array().unwrap();
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    assert_eq!(inv["number"], "acme-main-2024-03");
    assert_eq!(amount(&inv["lines"][0]["amount"]), "62.00");
    assert_eq!(amount(&inv["subtotal"]), "62.00");
    assert_eq!(amount(&inv["taxes"][0]["tax"]), "13.02");
    assert_eq!(amount(&inv["total"]), "75.02");
    let table = l.ok(&[&["invoice", "preview"][..], &march].concat());
    for expected in [
        "acme-main-2024-03",
        "main (Acme Main)",
        "Acme B.V.",
        "ACME-042",
        "Direct customer",
        "Manufacturing",
        "per_licence.daily_prorated",
        "31 EUR",
        "62.00 EUR",
        "Tax 21% on 62.00 EUR",
        "13.02 EUR",
        "75.02 EUR",
        "nothing was issued",
    ] {
        assert!(table.contains(expected), "{expected} missing from\n{table}");
    }
    assert_eq!(l.head(), SETUP_EVENTS, "a preview appended something");

    // Issue: the document that preview showed, recorded at the head it saw.
    let issued = l.issue_march();
    assert_eq!(issued["number"], "acme-main-2024-03");
    assert_eq!(amount(&issued["total"]), "75.02");
    assert_eq!(issued["computed_at_position"], SETUP_EVENTS);
    assert_eq!(issued, *inv, "issue recorded something other than the preview");
    assert_eq!(l.head(), SETUP_EVENTS + 1);

    // Show: as recorded, and the same bytes issue printed.
    let shown = l.json(&["invoice", "show", "acme-main-2024-03"]);
    assert_eq!(shown["invoice"], issued);
    assert_eq!(shown["notes"].as_array().unwrap().len(), 0);
    assert_eq!(amount(&shown["billed_total"]), "75.02");
    let text = l.ok(&["invoice", "show", "acme-main-2024-03"]);
    assert!(text.contains("75.02 EUR") && text.contains("Acme B.V."), "{text}");

    // Explain: rule, formula, inputs and the two events behind the line.
    let text = l.ok(&["invoice", "explain", "acme-main-2024-03"]);
    for expected in [
        "per_licence.daily_prorated",
        "31 EUR × 62 quantity-days ÷ 31 days × (1 − 0%)",
        "quantity_days",
        "SubscriptionCreated",
        "QuantityChanged",
        "ops@acme.example",
        "2024-03-01 09:00",
        "subscription s1 to SEAT for account main: 2 × 31 EUR from 2024-03-01",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let explained = l.json(&["invoice", "explain", "acme-main-2024-03"]);
    let events: Vec<(u64, &str)> = explained["lines"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e["event_type"].as_str().unwrap()))
        .collect();
    assert_eq!(events, [(7, "SubscriptionCreated"), (8, "QuantityChanged")]);
    let inputs = &explained["lines"][0]["inputs"];
    let input = |name: &str| inputs.as_array().unwrap().iter().find(|i| i["name"] == name).unwrap()["value"].clone();
    assert_eq!((input("quantity_days"), input("days_in_month")), ("62".into(), "31".into()));

    // Reproduce: byte-identical.
    let text = l.ok(&["invoice", "reproduce", "acme-main-2024-03"]);
    assert!(text.contains("byte-identical"), "{text}");

    // A backdated change: 3 seats from March 17th (recorded after the issue).
    // 2 × 16 + 3 × 15 = 77 seat-days: 77.00; VAT 16.17; total 93.17.
    l.apply("late.jsonl", &quantity(Some("2024-03-17T00:00:00Z"), "s1", 3));
    // What was known when issuing still reproduces to the byte.
    assert!(l.ok(&["invoice", "reproduce", "acme-main-2024-03"]).contains("byte-identical"));
    // Preview as known at the issue's position gives the issued amounts, at the head the new ones.
    let then = l.json(&[&["invoice", "preview", "--as-of-position", "8"][..], &march].concat());
    assert_eq!(amount(&then[0]["total"]), "75.02");
    let now = l.json(&[&["invoice", "preview"][..], &march].concat());
    assert_eq!(amount(&now[0]["total"]), "93.17");

    // Diff: line 62.00 → 77.00 (+15.00); tax 13.02 → 16.17.
    let text = l.ok(&["invoice", "diff", "acme-main-2024-03"]);
    for expected in
        ["Seats", "62.00 EUR", "77.00 EUR", "+15.00 EUR", "13.02 EUR", "16.17 EUR", "+3.15 EUR", "93.17 EUR"]
    {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let d = l.json(&["invoice", "diff", "acme-main-2024-03"]);
    assert_eq!(d["no_change"], false);
    assert_eq!(d["differences"].as_array().unwrap().len(), 1);
    let line = &d["differences"][0];
    assert_eq!((amount(&line["before"]), amount(&line["after"]), amount(&line["change"])), ("62.00", "77.00", "15.00"));
    assert_eq!((amount(&d["tax_before"]), amount(&d["tax_after"])), ("13.02", "16.17"));

    // Correct: a debit note of 15.00 + 3.15 VAT = 18.15; 75.02 + 18.15 = 93.17.
    let note = l.json(&["invoice", "correct", "acme-main-2024-03", "--at", "2024-04-10T00:00:00Z"]);
    assert_eq!(note["number"], "acme-main-2024-03-N1");
    assert_eq!(note["kind"], "debit");
    assert_eq!(note["original"], "acme-main-2024-03");
    assert_eq!(amount(&note["lines"][0]["amount"]), "15.00");
    assert_eq!(note["lines"][0]["formula"], "corrected 77.00 EUR − billed 62.00 EUR = 15.00 EUR");
    assert_eq!(amount(&note["taxes"][0]["tax"]), "3.15");
    assert_eq!(amount(&note["total"]), "18.15");

    // Nothing left to correct.
    let text = l.ok(&["invoice", "diff", "acme-main-2024-03"]);
    assert!(text.contains("no change"), "{text}");
    assert_eq!(l.json(&["invoice", "diff", "acme-main-2024-03"])["no_change"], true);
    let shown = l.json(&["invoice", "show", "acme-main-2024-03"]);
    assert_eq!(shown["notes"][0], note);
    assert_eq!(amount(&shown["billed_total"]), "93.17");
    let head = l.head();
    let err = l.fails(&["invoice", "correct", "acme-main-2024-03"]);
    assert!(err.contains("invoice `acme-main-2024-03` needs no correction"), "{err}");
    assert_eq!(l.head(), head);
}

/// One more seat from March 21st, only hypothetically: 2 × 20 + 3 × 11 = 73
/// seat-days: 73.00; VAT 15.33; total 88.33. The ledger does not change.
#[test]
fn preview_with_a_hypothetical_seat_leaves_the_ledger_unchanged() {
    let l = Ledger::new();
    let file = l.file("what-if.jsonl", &[quantity(None, "s1", 3), quantity(None, "nope", 1)].join("\n"));
    let head = l.head();
    let args = [
        "invoice",
        "preview",
        "--workspace",
        "acme",
        "--account",
        "main",
        "--period",
        "2024-03",
        "--with",
        file.to_str().unwrap(),
        "--at",
        "2024-03-21T00:00:00Z",
    ];
    let out = l.run(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: subscription `nope` does not exist", file.display())),
        "the refused hypothetical line is not named: {stderr}"
    );
    let preview: Value = serde_json::from_slice(&out.stdout).unwrap();
    let inv = &preview[0];
    assert_eq!(inv["lines"][0]["formula"], "31 EUR × 73 quantity-days ÷ 31 days × (1 − 0%)");
    assert_eq!(amount(&inv["lines"][0]["amount"]), "73.00");
    assert_eq!(amount(&inv["taxes"][0]["tax"]), "15.33");
    assert_eq!(amount(&inv["total"]), "88.33");
    let text = l.ok(&args);
    assert!(text.contains("the ledger is unchanged") && text.contains("88.33 EUR"), "{text}");

    // The real ledger: nothing appended, still 2 seats and 75.02.
    assert_eq!(l.head(), head);
    let real = l.json(&["invoice", "preview", "--workspace", "acme", "--period", "2024-03"]);
    assert_eq!(amount(&real[0]["total"]), "75.02");
    let state = l.json(&["state", "--at", "2024-03-31"]);
    assert_eq!(state["pools"][0]["total"], 2);
}

#[test]
fn issuing_twice_fails_naming_the_existing_number() {
    let l = Ledger::new();
    assert_eq!(amount(&l.issue_march()["total"]), "75.02");
    let head = l.head();
    for at in ["2024-04-01T06:00:00Z", "2024-04-02T06:00:00Z"] {
        let err = l.fails(&[
            "invoice",
            "issue",
            "--workspace",
            "acme",
            "--account",
            "main",
            "--period",
            "2024-03",
            "--at",
            at,
        ]);
        assert!(
            err.contains("the invoice of account `main` for 2024-03 was already issued as `acme-main-2024-03`"),
            "{err}"
        );
    }
    assert_eq!(l.head(), head, "a second invoice was recorded");
    let shown = l.json(&["invoice", "show", "acme-main-2024-03"]);
    assert_eq!(amount(&shown["invoice"]["total"]), "75.02");
}

#[test]
fn issuing_a_month_not_yet_ended_fails() {
    let l = Ledger::new();
    let head = l.head();
    // By business time: March is not over on March 31st at noon.
    let err = l.fails(&[
        "invoice",
        "issue",
        "--workspace",
        "acme",
        "--account",
        "main",
        "--period",
        "2024-03",
        "--at",
        "2024-03-31T12:00:00Z",
    ]);
    assert!(
        err.contains("2024-03 has not ended yet; its invoice can be issued from the 1st of the next month"),
        "{err}"
    );
    // By the clock: this month is not over, whatever --at says.
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    for extra in [&[][..], &["--at", "9999-01-01T00:00:00Z"][..]] {
        let args =
            [&["invoice", "issue", "--workspace", "acme", "--account", "main", "--period", &this_month][..], extra]
                .concat();
        let err = l.fails(&args);
        assert!(err.contains(&format!("{this_month} has not ended yet")), "{err}");
    }
    assert_eq!(l.head(), head);
}

#[test]
fn unknown_workspace_and_account_fail_clearly() {
    let l = Ledger::new();
    let err = l.fails(&["invoice", "preview", "--workspace", "globex", "--period", "2024-03"]);
    assert!(err.contains("workspace `globex` does not exist"), "{err}");
    let err = l.fails(&["invoice", "issue", "--workspace", "globex", "--account", "main", "--period", "2024-03"]);
    assert!(err.contains("workspace `globex` does not exist"), "{err}");
    let err = l.fails(&["invoice", "preview", "--workspace", "acme", "--account", "side", "--period", "2024-03"]);
    assert!(err.contains("billing account `side` does not exist in workspace `acme`"), "{err}");
    let err = l.fails(&["invoice", "issue", "--workspace", "acme", "--account", "side", "--period", "2024-03"]);
    assert!(err.contains("billing account `side` does not exist in workspace `acme`"), "{err}");
    let err = l.fails(&["invoice", "preview", "--workspace", "ac me", "--period", "2024-03"]);
    assert!(err.contains(r#"--workspace "ac me" is not a workspace id"#), "{err}");
    assert_eq!(l.head(), SETUP_EVENTS);
}

#[test]
fn a_malformed_or_future_period_fails_naming_the_period() {
    let l = Ledger::new();
    for (period, why) in [
        ("2024-13", "month 13 is not between 1 and 12"),
        ("2024-3", "is not a month written as YYYY-MM"),
        ("march", "is not a month written as YYYY-MM"),
    ] {
        for sub in [&["preview"][..], &["issue", "--account", "main"][..]] {
            let args = [&["invoice"][..], sub, &["--workspace", "acme", "--period", period][..]].concat();
            let err = l.fails(&args);
            assert!(err.contains(&format!("--period {period:?} is not a valid period")), "{err}");
            assert!(err.contains(why), "{err}");
        }
    }
    let err = l.fails(&["invoice", "preview", "--workspace", "acme", "--period", "2999-01"]);
    assert!(err.contains("period 2999-01 has not started yet"), "{err}");
    let err = l.fails(&["invoice", "issue", "--workspace", "acme", "--account", "main", "--period", "2999-01"]);
    assert!(err.contains("2999-01 has not ended yet"), "{err}");
    assert_eq!(l.head(), SETUP_EVENTS);
}

#[test]
fn an_invoice_never_issued_cannot_be_corrected_shown_or_diffed() {
    let l = Ledger::new();
    for sub in ["correct", "show", "explain", "reproduce", "diff"] {
        let err = l.fails(&["invoice", sub, "acme-main-2024-03"]);
        assert_eq!(err.trim_end(), "error: invoice `acme-main-2024-03` was never issued", "{sub}");
    }
    assert_eq!(l.head(), SETUP_EVENTS);
}

/// A per-active-user module used by u1 with no subscription pricing it:
/// neither a preview nor an issue can name a price.
#[test]
fn a_missing_price_fails_naming_the_sku() {
    let l = Ledger::new();
    l.apply(
        "hybrid.jsonl",
        r#"{"command":"define_product","at":"2024-01-02T08:00:00Z","sku":"HYBRID","name":"Hybrid","kind":"module","charge_model":"per_active_user","sales_unit":"user"}
{"command":"add_user","workspace":"acme","at":"2024-03-02T09:00:00Z","user":"u1","org":"hq","profile":{"first_name":"F","last_name":"L","email":"u1@acme.example","username":"u1"}}
{"command":"assign_module","workspace":"acme","at":"2024-03-02T10:00:00Z","sku":"HYBRID","target":{"user":"u1"}}"#,
    );
    let head = l.head();
    let expected = "1 user(s) of workspace `acme` used `HYBRID`, but billing account `main` has no subscription \
                    pricing it in EUR: a price is missing";
    let err = l.fails(&["invoice", "preview", "--workspace", "acme", "--period", "2024-03"]);
    assert_eq!(err.trim_end(), format!("error: {expected}"));
    let err = l.fails(&[
        "invoice",
        "issue",
        "--workspace",
        "acme",
        "--account",
        "main",
        "--period",
        "2024-03",
        "--at",
        "2024-04-01T06:00:00Z",
    ]);
    assert_eq!(err.trim_end(), format!("error: {expected}"));
    assert_eq!(l.head(), head);
}

/// Five seats from March 10th, recorded after the setup: at the head March
/// 31st shows 5, as known at position 8 (or before the change was recorded) 2.
#[test]
fn state_as_of_position_shows_the_state_before_a_later_change() {
    let l = Ledger::new();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(20));
    l.apply("more.jsonl", &quantity(Some("2024-03-10T00:00:00Z"), "s1", 5));
    let total = |state: &Value| state["pools"][0]["total"].as_u64().unwrap();

    assert_eq!(total(&l.json(&["state", "--at", "2024-03-31"])), 5);
    let before = l.json(&["state", "--at", "2024-03-31", "--as-of-position", "8"]);
    assert_eq!(total(&before), 2);
    assert_eq!(before["as_of_position"], 8);
    assert_eq!(total(&l.json(&["state", "--at", "2024-03-31", "--as-of-recorded", &between])), 2);
    let text = l.ok(&["state", "--at", "2024-03-31", "--as-of-position", "8"]);
    assert!(text.contains("licence state on 2024-03-31, as known at position 8"), "{text}");
    // Reading the past saves no checkpoint: the head is still read afterwards.
    assert_eq!(total(&l.json(&["state", "--at", "2024-03-31"])), 5);

    let changes = |args: &[&str]| l.json(&[&["changelog"][..], args].concat()).as_array().unwrap().len();
    assert_eq!((changes(&[]), changes(&["--as-of-position", "8"])), (2, 1));
    let audit = l.json(&["audit", "--as-of-position", "8"]);
    assert_eq!(audit["entries"].as_array().unwrap().len(), 8);

    let err = l.fails(&["state", "--as-of-position", "99"]);
    assert!(err.contains("--as-of-position 99 is beyond the ledger's last position, 9"), "{err}");
}
