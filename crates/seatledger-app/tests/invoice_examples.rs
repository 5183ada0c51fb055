//! Worked examples from public billing systems, through the real command
//! handler, store and invoice fold.

use chrono::{DateTime, TimeZone, Utc};
use seatledger_app::invoicing::{self, AsOf};
use seatledger_app::{CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::*;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use std::sync::Arc;

struct Ledger {
    handler: CommandHandler,
    n: u128,
}

impl Ledger {
    fn new() -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        Self { handler: CommandHandler::new(store, Arc::new(SequentialIds::new(1_700_000_000_000))), n: 0 }
    }

    async fn run(&mut self, line: &str) {
        let env = parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        self.n += 1;
        let cmd = Command { at: env.at.expect("examples carry `at`"), body: env.body };
        self.handler
            .handle(&cmd, &CommandMeta::new("t", "cli", uuid::Uuid::from_u128(self.n)))
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    async fn setup(&mut self, currency: &str, tax: &str) {
        for line in [
            r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#.to_owned(),
            r#"{"command":"create_workspace","workspace":"w","at":"2024-01-01T00:00:00Z","name":"W","billing_mode":"single","created_on":"2024-01-01"}"#.to_owned(),
            format!(r#"{{"command":"open_billing_account","workspace":"w","at":"2024-01-01T00:00:00Z","account":"a","name":"A","currency":"{currency}","tax_rate":"{tax}"}}"#),
        ] {
            self.run(&line).await;
        }
    }

    async fn subscribe(&mut self, id: &str, start: &str, quantity: u32, price: &str, currency: &str) {
        self.run(&format!(
            r#"{{"command":"create_subscription","workspace":"w","at":"{start}T09:00:00Z","subscription":"{id}","account":"a","sku":"SEAT","name":"Seats {id}","effective_start":"{start}","subscription_channel":"portal","quantity":{quantity},"order":{{"ordered_by":"ops"}},"price_list":"std","currency":"{currency}","selling_per_unit":"{price}","cost_per_unit":"0","taxable":true}}"#
        ))
        .await;
    }

    async fn quantity(&mut self, id: &str, at: &str, quantity: u32) {
        self.run(&format!(
            r#"{{"command":"change_quantity","workspace":"w","at":"{at}","subscription":"{id}","quantity":{quantity},"order":{{"ordered_by":"ops"}},"subscription_channel":"portal"}}"#
        ))
        .await;
    }

    async fn invoice(&self, month: (i32, u32)) -> InvoiceDocument {
        invoicing::preview(
            self.handler.store().as_ref(),
            &WorkspaceId::new("w").unwrap(),
            Some(&AccountId::new("a").unwrap()),
            Month::new(month.0, month.1).unwrap(),
            AsOf::Head,
        )
        .await
        .unwrap()
        .pop()
        .unwrap()
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// €31 per seat-month in March 2024 (31 days); a seat added on the 11th and
/// two on the 22nd: 21 + 10 + 10 = 41 seat-days, 31 × 41 ÷ 31 = €41.00.
#[tokio::test]
async fn seats_added_on_the_11th_and_twice_on_the_22nd_cost_41_euros() {
    let mut l = Ledger::new();
    l.setup("EUR", "0").await;
    l.subscribe("s", "2024-03-11", 1, "31", "EUR").await;
    l.quantity("s", "2024-03-22T09:00:00Z", 2).await;
    l.quantity("s", "2024-03-22T15:00:00Z", 3).await;
    let inv = l.invoice((2024, 3)).await;
    assert_eq!(inv.lines.len(), 1);
    let line = &inv.lines[0];
    let input = |n: &str| line.inputs.iter().find(|i| i.name == n).unwrap().value.clone();
    assert_eq!(input("quantity_days"), "41");
    assert_eq!(input("billed_days"), "21");
    assert_eq!(line.amount.to_string(), "41.00 EUR");
    assert_eq!(inv.total.to_string(), "41.00 EUR");
    assert_eq!(line.formula, "31 EUR × 41 quantity-days ÷ 31 days × (1 − 0%)");
    // Provenance: the subscription and both changes.
    assert_eq!(line.events.len(), 4, "created, its first quantity and two changes");
}

/// 7 seats at 29.95 for a whole month: 209.65.
#[tokio::test]
async fn seven_seats_at_29_95_cost_209_65() {
    let mut l = Ledger::new();
    l.setup("EUR", "0").await;
    l.subscribe("s", "2024-04-01", 7, "29.95", "EUR").await;
    let inv = l.invoice((2024, 4)).await;
    assert_eq!(inv.lines[0].amount.to_string(), "209.65 EUR");
}

/// 68.33 + 68.33 + 57.50 + 85.00 = 279.16; 20% VAT = 55.832 → 55.83;
/// total 334.99.
#[tokio::test]
async fn four_fees_at_20_percent_vat_total_334_99() {
    let mut l = Ledger::new();
    l.setup("EUR", "20").await;
    for (id, fee) in [("a1", "68.33"), ("a2", "68.33"), ("a3", "57.50"), ("a4", "85.00")] {
        l.subscribe(id, "2024-05-01", 1, fee, "EUR").await;
    }
    let inv = l.invoice((2024, 5)).await;
    assert_eq!(inv.subtotal.to_string(), "279.16 EUR");
    assert_eq!(inv.taxes[0].tax.to_string(), "55.83 EUR");
    assert_eq!(inv.total.to_string(), "334.99 EUR");
}

/// JPY has no minor unit and BHD three: 3 seats for 10 of 31 days.
/// JPY: 4,800 × 30 ÷ 31 = 4,645.16… → 4,645. BHD: 12.345 × 30 ÷ 31 = 11.9467… → 11.947.
#[tokio::test]
async fn jpy_and_bhd_round_to_their_minor_units() {
    for (currency, price, expected) in [("JPY", "4800", "4645 JPY"), ("BHD", "12.345", "11.947 BHD")] {
        let mut l = Ledger::new();
        l.setup(currency, "0").await;
        l.subscribe("s", "2024-03-22", 3, price, currency).await;
        let inv = l.invoice((2024, 3)).await;
        assert_eq!(inv.lines[0].amount.to_string(), expected, "{currency}");
    }
}

/// Issue, correct a closed month with a backdated change, and the invoice
/// plus its note equal the corrected total exactly.
#[tokio::test]
async fn a_backdated_change_is_diffed_and_corrected_with_a_note() {
    let mut l = Ledger::new();
    l.setup("EUR", "21").await;
    l.subscribe("s", "2024-03-01", 3, "10", "EUR").await;
    let ws = WorkspaceId::new("w").unwrap();
    let acc = AccountId::new("a").unwrap();
    let march = Month::new(2024, 3).unwrap();
    let meta = |n: u128| CommandMeta::new("billing", "cli", uuid::Uuid::from_u128(1_000 + n));

    // Not before the month has ended.
    let early = invoicing::issue(&l.handler, &ws, &acc, march, at("2024-03-31T12:00:00Z"), &meta(1)).await;
    assert!(early.unwrap_err().to_string().contains("2024-03 has not ended yet"));

    let (invoice, _) =
        invoicing::issue(&l.handler, &ws, &acc, march, at("2024-04-01T06:00:00Z"), &meta(2)).await.unwrap();
    assert_eq!(invoice.total.to_string(), "36.30 EUR"); // 30.00 + 21% = 36.30
    let again = invoicing::issue(&l.handler, &ws, &acc, march, at("2024-04-02T06:00:00Z"), &meta(3)).await;
    assert!(again.unwrap_err().to_string().contains("already issued"));
    let repro = invoicing::reproduce(&l.handler, &invoice.number).await.unwrap();
    assert!(repro.identical);

    // A backdated correction: the quantity was 4 from March 17th.
    l.quantity("s", "2024-03-17T00:00:00Z", 4).await;
    let d = invoicing::diff(&l.handler, &invoice.number).await.unwrap();
    // 3 × 16 + 4 × 15 = 108 quantity-days; 10 × 108 ÷ 31 = 34.838… → 34.84.
    assert_eq!(d.differences.len(), 1);
    assert_eq!(d.differences[0].after.to_string(), "34.84 EUR");
    // Reproduction still matches what was issued: it reads only what was known.
    assert!(invoicing::reproduce(&l.handler, &invoice.number).await.unwrap().identical);

    let (note, _) =
        invoicing::correct(&l.handler, &invoice.number, at("2024-04-10T06:00:00Z"), &meta(4)).await.unwrap();
    assert_eq!(note.kind, NoteKind::Debit);
    assert_eq!(note.lines[0].amount.to_string(), "4.84 EUR");
    // 34.84 × 21% = 7.3164 → 7.32 against 6.30 issued: +1.02.
    assert_eq!(note.taxes[0].tax.to_string(), "1.02 EUR");
    assert_eq!(note.total.to_string(), "5.86 EUR");
    let corrected = d.recomputed.total;
    assert_eq!(invoice.total.amount + note.total.amount, corrected.amount);
    // Nothing more to correct.
    let again = invoicing::correct(&l.handler, &invoice.number, at("2024-04-11T06:00:00Z"), &meta(5)).await;
    let message = again.unwrap_err().to_string();
    assert!(message.contains("needs no correction"), "{message}");
}

#[tokio::test]
async fn correcting_an_invoice_never_issued_is_refused() {
    let mut l = Ledger::new();
    l.setup("EUR", "0").await;
    let meta = CommandMeta::new("billing", "cli", uuid::Uuid::from_u128(9));
    let err = invoicing::correct(&l.handler, "w-a-2024-03", Utc.with_ymd_and_hms(2024, 4, 2, 0, 0, 0).unwrap(), &meta)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invoice `w-a-2024-03` was never issued");
}

/// An order recorded on the 5th with an effective start on the 1st bills
/// the ordered quantity from the 1st: 5 × 31.00 = 155.00, not 135.00.
#[tokio::test]
async fn a_subscription_recorded_after_its_start_bills_from_its_start() {
    let mut l = Ledger::new();
    l.setup("EUR", "0").await;
    l.run(r#"{"command":"create_subscription","workspace":"w","at":"2024-03-05T09:00:00Z","subscription":"s","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"31","cost_per_unit":"0"}"#).await;
    let inv = l.invoice((2024, 3)).await;
    assert_eq!(inv.lines[0].amount.to_string(), "155.00 EUR");
}

/// A change made before a future start date wins over the ordered quantity:
/// created on the 1st with 1 seat from the 20th, changed to 3 on the 10th:
/// 3 × 12 days (20th–31st) × 31.00 ÷ 31 = 36.00.
#[tokio::test]
async fn a_change_before_a_future_start_is_what_gets_billed() {
    let mut l = Ledger::new();
    l.setup("EUR", "0").await;
    l.run(r#"{"command":"create_subscription","workspace":"w","at":"2024-03-01T09:00:00Z","subscription":"s","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-20","subscription_channel":"portal","quantity":1,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"31","cost_per_unit":"0"}"#).await;
    l.quantity("s", "2024-03-10T09:00:00Z", 3).await;
    let inv = l.invoice((2024, 3)).await;
    assert_eq!(inv.lines[0].amount.to_string(), "36.00 EUR");
}
