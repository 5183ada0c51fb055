//! Readable tables for people; `--json` gives scripts the same data.

use crate::invoice_cli::{line_events, ExplainedEvent};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use rust_decimal::{Decimal, RoundingStrategy};
use seatledger_app::invoicing::{InvoiceDiff, LineDifference, Reproduction};
use seatledger_domain::invoice::IssuedInvoice;
use seatledger_domain::{InvoiceDocument, Money, NoteDocument, TaxLine};
use seatledger_projections::audit::AuditEntry;
use seatledger_projections::change_log::ChangeEntry;
use seatledger_projections::licence_state::PoolRow;
use seatledger_store::VerifyReport;
use std::collections::BTreeMap;

/// A table in the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

/// A right-aligned cell, for numbers.
pub fn right(v: impl ToString) -> Cell {
    Cell::new(v.to_string()).set_alignment(CellAlignment::Right)
}

/// Pretty JSON and a newline: every `--json` output.
pub fn write_json(out: &mut dyn std::io::Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Licence state: one row per pool.
pub fn pools(rows: &[PoolRow]) -> String {
    if rows.is_empty() {
        return "no licence pools yet".to_owned();
    }
    let mut t = table(&["Workspace", "Organization", "SKU", "Product", "Total", "Assigned", "Available", "Alert"]);
    for r in rows {
        let alert = match (r.alert_threshold, r.alert_raised) {
            (Some(th), true) => format!("LOW (≤ {th})"),
            (Some(th), false) => format!("at ≤ {th}"),
            (None, _) => "-".to_owned(),
        };
        // Only modules sold per licence cap assignments; elsewhere the
        // assigned count is shown, but nothing is "available".
        let available = if r.seat_limited { r.available.to_string() } else { "not capped".to_owned() };
        t.add_row(vec![
            Cell::new(&r.workspace),
            Cell::new(r.organization.as_deref().unwrap_or("(workspace)")),
            Cell::new(&r.sku),
            Cell::new(&r.product),
            right(r.total),
            right(r.assigned),
            right(available),
            Cell::new(alert),
        ]);
    }
    t.to_string()
}

/// The licence change log.
pub fn change_log<'a>(entries: impl IntoIterator<Item = &'a ChangeEntry>) -> String {
    let mut t =
        table(&["Effective", "Workspace", "Subscription", "SKU", "From", "To", "Reason", "Who", "Channel", "Order"]);
    let mut any = false;
    for e in entries {
        any = true;
        t.add_row(vec![
            Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(&e.workspace),
            Cell::new(&e.subscription),
            Cell::new(&e.sku),
            right(e.from),
            right(e.to),
            Cell::new(&e.reason),
            Cell::new(&e.ordered_by),
            Cell::new(&e.channel),
            Cell::new(e.order_reference.as_deref().unwrap_or("-")),
        ]);
    }
    if any {
        t.to_string()
    } else {
        "no licence changes".to_owned()
    }
}

/// Audit entries.
pub fn audit<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> String {
    let mut t = table(&["#", "Recorded", "Effective", "Workspace", "Type", "Actor", "Channel", "What"]);
    let mut any = false;
    for e in entries {
        any = true;
        t.add_row(vec![
            right(e.position),
            Cell::new(e.recorded_at.format("%Y-%m-%d %H:%M:%S")),
            Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(e.workspace.as_deref().unwrap_or("-")),
            Cell::new(&e.event_type),
            Cell::new(&e.actor),
            Cell::new(&e.channel),
            Cell::new(&e.summary),
        ]);
    }
    if any {
        t.to_string()
    } else {
        "no audit entries match".to_owned()
    }
}

/// The result of `verify`.
pub fn verify(report: &VerifyReport) -> String {
    match &report.first_broken {
        None => format!("hash chain intact: {} events verified", report.checked),
        Some(b) => format!(
            "hash chain BROKEN at position {} (event {}, stream `{}` version {}): {}; {} events before it verified",
            b.position, b.event_id, b.stream, b.stream_version, b.reason, report.checked
        ),
    }
}

// ---------------------------------------------------------------------------
// Invoices
// ---------------------------------------------------------------------------

/// A table of label/value rows, without a header.
fn fields(rows: &[(&str, String)]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    for (label, value) in rows {
        t.add_row(vec![Cell::new(label), Cell::new(value)]);
    }
    t.to_string()
}

fn or_dash(s: &str) -> String {
    if s.trim().is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// A quantity for people: at most four decimals, no trailing zeros (the
/// document and `--json` keep every digit).
fn quantity(q: Decimal) -> String {
    q.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero).normalize().to_string()
}

/// A signed change: `+15.00 EUR`, `-3.10 EUR`, `0.00 EUR`.
fn signed(m: Money) -> String {
    if m.amount.is_sign_positive() && !m.amount.is_zero() {
        format!("+{m}")
    } else {
        m.to_string()
    }
}

/// The subtotal, tax and total rows under a document's lines.
fn totals(t: &mut Table, width: usize, subtotal: Money, taxes: &[TaxLine], total: Money) {
    let row = |label: String, amount: String| {
        let mut cells = vec![Cell::new(label)];
        cells.extend((2..width).map(|_| Cell::new("")));
        cells.push(right(amount));
        cells
    };
    t.add_row(row("Subtotal".to_owned(), subtotal.to_string()));
    for tax in taxes {
        t.add_row(row(format!("Tax {} on {}", tax.rate, tax.taxable_subtotal), tax.tax.to_string()));
    }
    t.add_row(row("Total".to_owned(), total.to_string()));
}

/// An invoice: its header with the billing info, its lines and its totals.
pub fn invoice(inv: &InvoiceDocument) -> String {
    let info = &inv.billing_info;
    let header = fields(&[
        ("Invoice", inv.number.clone()),
        ("Account", format!("{} ({})", inv.account, inv.account_name)),
        ("Workspace", inv.workspace.to_string()),
        ("Period", inv.period.to_string()),
        ("Currency", inv.currency.to_string()),
        ("Company", or_dash(&info.company_name)),
        ("Reference", or_dash(&info.reference_number)),
        ("Customer type", or_dash(&info.customer_type)),
        ("Industry", or_dash(&info.industry)),
        ("Computed at", format!("position {}", inv.computed_at_position)),
    ]);
    let mut t = table(&["Description", "Rule", "Quantity", "Unit price", "Discount", "Amount"]);
    for l in &inv.lines {
        t.add_row(vec![
            Cell::new(&l.description),
            Cell::new(&l.rule),
            right(quantity(l.quantity)),
            right(l.unit_price),
            right(l.discount),
            right(l.amount),
        ]);
    }
    if inv.lines.is_empty() {
        t.add_row(vec![
            Cell::new("(nothing to bill)"),
            Cell::new(""),
            Cell::new(""),
            Cell::new(""),
            Cell::new(""),
            right(Money::zero(inv.currency)),
        ]);
    }
    totals(&mut t, 6, inv.subtotal, &inv.taxes, inv.total);
    format!("{header}\n{t}")
}

/// A credit or debit note: what it corrects, its lines with their formulas, its totals.
pub fn note(n: &NoteDocument) -> String {
    let header = fields(&[
        ("Note", n.number.clone()),
        ("Kind", format!("{} note", n.kind)),
        ("Corrects", n.original.clone()),
        ("Account", n.account.to_string()),
        ("Period", n.period.to_string()),
        ("Currency", n.currency.to_string()),
        ("Computed at", format!("position {}", n.computed_at_position)),
    ]);
    let mut t = table(&["Description", "Rule", "Formula", "Amount"]);
    for l in &n.lines {
        t.add_row(vec![Cell::new(&l.description), Cell::new(&l.rule), Cell::new(&l.formula), right(signed(l.amount))]);
    }
    totals(&mut t, 4, n.subtotal, &n.taxes, n.total);
    format!("{header}\n{t}")
}

/// An issued invoice with its notes and what is billed in all.
pub fn issued(i: &IssuedInvoice) -> String {
    let mut out = invoice(&i.invoice);
    for n in &i.notes {
        out.push_str("\n\n");
        out.push_str(&note(n));
    }
    if !i.notes.is_empty() {
        out.push_str(&format!("\n\nbilled in all (invoice and {} note(s)): {}", i.notes.len(), i.billed_total()));
    }
    out
}

/// Each line of an issued invoice with its rule, formula, inputs and events.
pub fn explain(inv: &InvoiceDocument, events: &BTreeMap<uuid::Uuid, ExplainedEvent>) -> String {
    let mut out = format!(
        "invoice {} — {} line(s), computed from the events up to position {} (inputs digest {})",
        inv.number,
        inv.lines.len(),
        inv.computed_at_position,
        inv.inputs_digest
    );
    for (i, l) in inv.lines.iter().enumerate() {
        out.push_str(&format!("\n\nline {}: {} [{}]\n", i + 1, l.description, l.key));
        out.push_str(&fields(&[
            ("Rule", l.rule.clone()),
            ("Formula", l.formula.clone()),
            ("Amount", l.amount.to_string()),
        ]));
        if !l.inputs.is_empty() {
            let mut t = table(&["Input", "Value"]);
            for input in &l.inputs {
                t.add_row(vec![Cell::new(&input.name), Cell::new(&input.value)]);
            }
            out.push_str(&format!("\n{t}"));
        }
        let rows = line_events(&l.events, events);
        if rows.is_empty() {
            out.push_str("\nno events behind this line");
            continue;
        }
        let mut t = table(&["#", "Type", "Effective", "Actor", "What"]);
        for (id, e) in rows {
            match e {
                Some(e) => t.add_row(vec![
                    right(e.position),
                    Cell::new(&e.event_type),
                    Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
                    Cell::new(&e.actor),
                    Cell::new(&e.summary),
                ]),
                None => t.add_row(vec![
                    right("?"),
                    Cell::new("(not found)"),
                    Cell::new("-"),
                    Cell::new("-"),
                    Cell::new(format!("event {id} is not in the ledger up to position {}", inv.computed_at_position)),
                ]),
            };
        }
        out.push_str(&format!("\n{t}"));
    }
    out
}

/// Line differences: before, after and change.
fn line_differences(diffs: &[LineDifference]) -> Table {
    let mut t = table(&["Line", "Before", "After", "Change"]);
    for d in diffs {
        t.add_row(vec![
            Cell::new(format!("{} [{}]", d.description, d.key)),
            right(d.before),
            right(d.after),
            right(signed(d.change())),
        ]);
    }
    t
}

/// What recomputing an issued invoice now changes.
pub fn invoice_diff(d: &InvoiceDiff) -> String {
    if d.is_empty() {
        return format!(
            "invoice {}: no change — recomputing it now gives what the invoice and its notes bill, {}",
            d.number, d.billed_total
        );
    }
    let mut t = line_differences(&d.differences);
    let tax_change = Money::new(d.tax_after.amount - d.tax_before.amount, d.tax_after.currency);
    t.add_row(vec![Cell::new("Tax"), right(d.tax_before), right(d.tax_after), right(signed(tax_change))]);
    let total_change = Money::new(d.recomputed.total.amount - d.billed_total.amount, d.recomputed.total.currency);
    t.add_row(vec![Cell::new("Total"), right(d.billed_total), right(d.recomputed.total), right(signed(total_change))]);
    format!(
        "invoice {}: recomputed with everything known now (position {}), compared with what the invoice and its notes bill\n{t}",
        d.number, d.recomputed.computed_at_position
    )
}

/// Whether an issued invoice reproduces.
pub fn reproduction(r: &Reproduction, fields: &[String]) -> String {
    if r.identical {
        return format!(
            "invoice {}: byte-identical when recomputed from the events up to position {}",
            r.issued.number, r.issued.computed_at_position
        );
    }
    let mut out = format!(
        "invoice {}: NOT reproduced — recomputing from the events up to position {} gives a different document",
        r.issued.number, r.issued.computed_at_position
    );
    if !fields.is_empty() {
        out.push_str(&format!("\nfields that differ: {}", fields.join(", ")));
    }
    if !r.differences.is_empty() {
        out.push_str(&format!("\n{}", line_differences(&r.differences)));
    }
    out
}
