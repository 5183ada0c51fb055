//! Invoices and correction notes as the ledger records them.
//!
//! The documents are computed outside the domain (by the invoice projection,
//! a pure fold over recorded events) and arrive inside the command; the
//! domain checks that they add up and that issuing them is allowed, and
//! records them in the workspace's `invoices-<workspace>` stream.

use crate::calendar::Month;
use crate::error::{DomainError, InvalidValue};
use crate::events::Event;
use crate::ids::*;
use crate::model::{named_enum, BillingInfo};
use crate::money::{Currency, Money, Percent};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// One named input of a line's formula, e.g. `quantity_days = 41`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput {
    pub name: String,
    pub value: String,
}

/// One line of an invoice or note, with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// Stable identity across recomputations, for diffs and notes, e.g.
    /// `per_licence/sub-1` or `per_active_user/HYBRID/guest`.
    pub key: String,
    pub description: String,
    pub sku: Option<Sku>,
    pub subscription: Option<SubscriptionId>,
    /// The rule that produced the line, e.g. `per_licence.daily_prorated`.
    pub rule: String,
    /// The formula with its numbers, e.g. `31.00 × 41 quantity-days ÷ 31 days`.
    pub formula: String,
    /// The billed quantity (users, or quantity-days ÷ days in the month).
    pub quantity: rust_decimal::Decimal,
    pub unit_price: Money,
    pub discount: Percent,
    /// Rounded once, to the currency's minor unit.
    pub amount: Money,
    pub taxable: bool,
    pub inputs: Vec<LineInput>,
    /// The ids of the events behind the line.
    pub events: Vec<uuid::Uuid>,
}

/// Tax at one rate on the subtotal of the taxable lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxLine {
    pub rate: Percent,
    pub taxable_subtotal: Money,
    pub tax: Money,
}

/// A monthly invoice of one billing account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDocument {
    pub number: String,
    pub workspace: WorkspaceId,
    pub account: AccountId,
    pub account_name: String,
    pub period: Month,
    pub currency: Currency,
    pub billing_info: BillingInfo,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: Money,
    pub taxes: Vec<TaxLine>,
    pub total: Money,
    /// The global position of the last event the computation saw.
    pub computed_at_position: u64,
    /// SHA-256 over the ids of every event the computation read.
    pub inputs_digest: String,
}

named_enum!(
    /// A correction note lowers (credit) or raises (debit) what was invoiced.
    NoteKind, "note kind" { Credit => "credit", Debit => "debit" });

/// A credit or debit note correcting an issued invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteDocument {
    pub number: String,
    pub kind: NoteKind,
    /// The invoice it corrects.
    pub original: String,
    pub workspace: WorkspaceId,
    pub account: AccountId,
    pub period: Month,
    pub currency: Currency,
    /// Per line of the original (same `key`): the corrected amount minus what
    /// the invoice and earlier notes already billed.
    pub lines: Vec<InvoiceLine>,
    pub subtotal: Money,
    pub taxes: Vec<TaxLine>,
    pub total: Money,
    pub computed_at_position: u64,
    pub inputs_digest: String,
}

/// Check that a document adds up: subtotal = Σ lines, total = subtotal + Σ tax,
/// everything in one currency, every amount rounded.
fn check_sums(
    currency: Currency,
    lines: &[InvoiceLine],
    subtotal: Money,
    taxes: &[TaxLine],
    total: Money,
) -> Result<(), DomainError> {
    let bad = |why: String| DomainError::Invalid(InvalidValue::new("invoice", why));
    let mut sum = Money::zero(currency);
    for line in lines {
        if line.amount.currency != currency {
            return Err(bad(format!(
                "line `{}` is in {} but the invoice is in {currency}",
                line.key, line.amount.currency
            )));
        }
        if line.amount.round_to_minor_unit() != line.amount {
            return Err(bad(format!("line `{}` amount {} is not rounded", line.key, line.amount)));
        }
        sum = sum.checked_add(line.amount).expect("one currency");
    }
    if sum.amount != subtotal.amount || subtotal.currency != currency {
        return Err(bad(format!("subtotal {subtotal} is not the sum of its lines, {sum}")));
    }
    let mut grand = subtotal;
    for t in taxes {
        if t.tax.currency != currency || t.tax.round_to_minor_unit() != t.tax {
            return Err(bad(format!("tax {} is not a rounded amount in {currency}", t.tax)));
        }
        grand = grand.checked_add(t.tax).expect("one currency");
    }
    if grand.amount != total.amount || total.currency != currency {
        return Err(bad(format!("total {total} is not lines plus tax, {grand}")));
    }
    Ok(())
}

/// What the invoices stream of one workspace has recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceBook {
    pub issued: BTreeMap<(AccountId, Month), IssuedInvoice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedInvoice {
    pub invoice: InvoiceDocument,
    pub notes: Vec<NoteDocument>,
}

impl IssuedInvoice {
    /// What is billed now for each line key: the invoice plus its notes.
    pub fn billed_by_key(&self) -> BTreeMap<String, Money> {
        let mut billed: BTreeMap<String, Money> = BTreeMap::new();
        for line in self.invoice.lines.iter().chain(self.notes.iter().flat_map(|n| n.lines.iter())) {
            let entry = billed.entry(line.key.clone()).or_insert_with(|| Money::zero(line.amount.currency));
            *entry = entry.checked_add(line.amount).expect("one currency per invoice");
        }
        billed
    }

    /// The total billed now: the invoice plus its notes.
    pub fn billed_total(&self) -> Money {
        self.notes.iter().fold(self.invoice.total, |sum, n| sum.checked_add(n.total).expect("one currency"))
    }
}

impl InvoiceBook {
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::InvoiceIssued { invoice } => {
                self.issued.insert(
                    (invoice.account.clone(), invoice.period),
                    IssuedInvoice { invoice: (**invoice).clone(), notes: vec![] },
                );
            }
            Event::CreditNoteIssued { note } | Event::DebitNoteIssued { note } => {
                if let Some(issued) = self.issued.get_mut(&(note.account.clone(), note.period)) {
                    issued.notes.push((**note).clone());
                }
            }
            _ => {}
        }
    }

    pub fn find(&self, number: &str) -> Option<&IssuedInvoice> {
        self.issued.values().find(|i| i.invoice.number == number)
    }
}

/// Commands on a workspace's invoices stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceCommand {
    Issue { invoice: Box<InvoiceDocument> },
    Correct { note: Box<NoteDocument> },
}

/// Decide an invoices command at business time `at`.
pub fn decide_invoices(
    book: &InvoiceBook,
    workspace: &WorkspaceId,
    at: DateTime<Utc>,
    cmd: &InvoiceCommand,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        InvoiceCommand::Issue { invoice } => {
            if invoice.workspace != *workspace {
                return Err(
                    InvalidValue::new("invoice", format!("belongs to workspace `{}`", invoice.workspace)).into()
                );
            }
            if let Some(existing) = book.issued.get(&(invoice.account.clone(), invoice.period)) {
                return Err(DomainError::InvoiceAlreadyIssued {
                    account: invoice.account.clone(),
                    period: invoice.period,
                    number: existing.invoice.number.clone(),
                });
            }
            if at.date_naive() < invoice.period.next().first_day() {
                return Err(DomainError::PeriodNotEnded { period: invoice.period });
            }
            check_sums(invoice.currency, &invoice.lines, invoice.subtotal, &invoice.taxes, invoice.total)?;
            Ok(vec![Event::InvoiceIssued { invoice: invoice.clone() }])
        }
        InvoiceCommand::Correct { note } => {
            let Some(issued) = book.find(&note.original) else {
                return Err(DomainError::InvoiceNotIssued(note.original.clone()));
            };
            if issued.invoice.account != note.account || issued.invoice.period != note.period {
                return Err(InvalidValue::new("note", format!("does not match invoice `{}`", note.original)).into());
            }
            check_sums(note.currency, &note.lines, note.subtotal, &note.taxes, note.total)?;
            if note.total.amount.is_zero() && note.lines.iter().all(|l| l.amount.amount.is_zero()) {
                return Err(DomainError::NothingToCorrect(note.original.clone()));
            }
            let credit = note.total.amount.is_sign_negative();
            if credit != (note.kind == NoteKind::Credit) {
                return Err(InvalidValue::new(
                    "note kind",
                    format!("{} does not fit a total of {}", note.kind, note.total),
                )
                .into());
            }
            Ok(vec![if credit {
                Event::CreditNoteIssued { note: note.clone() }
            } else {
                Event::DebitNoteIssued { note: note.clone() }
            }])
        }
    }
}
