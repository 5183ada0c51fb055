//! Invoicing on top of the store: preview, issue, reproduce, diff, correct.
//!
//! Every computation is the same fold ([`InvoiceInputs`]) over the events
//! known at some point — the head, a global position, or a recorded time —
//! followed by the same pure computation. Nothing is read from anywhere else.

use crate::handler::{AppError, CommandHandler, CommandMeta, HandleOutcome};
use crate::ids::IdSource;
use crate::readahead::{fold_decoded, ReadError};
use chrono::{DateTime, Utc};
use seatledger_codec::encode;
use seatledger_domain::*;
use seatledger_projections::invoice::{account_invoice, workspace_invoices, InvoiceInputs, InvoiceProblem};
use seatledger_store::{EventStore, MemoryStore, StoreError, StoredEvent, MAX_READ_COUNT};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Which events count: what the ledger knew at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Everything stored now.
    Head,
    /// Events up to and including this global position.
    Position(u64),
    /// Events recorded at or before this time.
    Recorded(DateTime<Utc>),
}

impl AsOf {
    /// Whether `stored` is among the events known at this point.
    pub fn admits(self, stored: &StoredEvent) -> bool {
        match self {
            AsOf::Head => true,
            AsOf::Position(p) => stored.position <= p,
            AsOf::Recorded(t) => stored.recorded_at <= t,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Problem(#[from] InvoiceProblem),
    #[error("cannot read the ledger: {0}")]
    Unreadable(String),
    #[error("invoice `{0}` was never issued")]
    NotIssued(String),
    #[error("{0}")]
    Invalid(String),
}

/// Fold projections over the events known `as_of`, from zero and without
/// touching checkpoints: what a bitemporal query reads. Returns the last
/// position folded (0 when none).
pub async fn fold_known(
    store: &dyn EventStore,
    as_of: AsOf,
    projections: &mut [&mut dyn seatledger_projections::Projection],
) -> Result<u64, InvoicingError> {
    fold_known_after(store, 0, as_of, projections).await
}

/// [`fold_known`] over the events after position `after` only, for
/// projections that cannot be changed by earlier events (a search that
/// starts at a cursor). Stops reading as soon as every projection says it
/// is complete. Returns the last position folded (`after` when none).
pub async fn fold_known_after(
    store: &dyn EventStore,
    after: u64,
    as_of: AsOf,
    projections: &mut [&mut dyn seatledger_projections::Projection],
) -> Result<u64, InvoicingError> {
    Ok(fold_decoded(store, after, as_of, projections).await?)
}

impl From<ReadError> for InvoicingError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => InvoicingError::Store(e),
            ReadError::Unreadable(why) => InvoicingError::Unreadable(why),
        }
    }
}

/// Fold the invoice inputs from the events known `as_of`.
pub async fn fold_inputs(store: &dyn EventStore, as_of: AsOf) -> Result<InvoiceInputs, InvoicingError> {
    let mut inputs = InvoiceInputs::default();
    fold_known(store, as_of, &mut [&mut inputs]).await?;
    Ok(inputs)
}

/// The invoices of a workspace (or one of its accounts) for a month, as known `as_of`.
pub async fn preview(
    store: &dyn EventStore,
    workspace: &WorkspaceId,
    account: Option<&AccountId>,
    month: Month,
    as_of: AsOf,
) -> Result<Vec<InvoiceDocument>, InvoicingError> {
    let inputs = fold_inputs(store, as_of).await?;
    match account {
        Some(account) => Ok(vec![account_invoice(&inputs, workspace, account, month)?]),
        None => Ok(workspace_invoices(&inputs, workspace, month)?),
    }
}

/// Preview with hypothetical commands: the ledger's events are copied into
/// a scratch in-memory store (same ids, versions and times), the commands
/// are decided and appended there at the pinned time, and the invoices are
/// computed on exactly the same code path. The real ledger is not touched.
pub async fn preview_with(
    store: &dyn EventStore,
    hypothetical: &[(Command, CommandMeta)],
    pinned_at: DateTime<Utc>,
    ids: Arc<dyn IdSource>,
    workspace: &WorkspaceId,
    account: Option<&AccountId>,
    month: Month,
) -> Result<(Vec<InvoiceDocument>, Vec<(usize, DomainError)>), InvoicingError> {
    let scratch: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(PinnedClock(pinned_at))));
    let mut after = 0;
    loop {
        let page = store.read_all(after, MAX_READ_COUNT).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        // Recorded times are kept; the pinned clock never goes below them.
        scratch.import(page).await?;
        after = last;
    }
    let handler = CommandHandler::new(scratch.clone(), ids);
    let mut refused = vec![];
    for (i, (command, meta)) in hypothetical.iter().enumerate() {
        match handler.handle(command, meta).await {
            Ok(_) => {}
            Err(AppError::Rejected(e)) => refused.push((i, e)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((preview(scratch.as_ref(), workspace, account, month, AsOf::Head).await?, refused))
}

/// A clock stuck at one instant: hypothetical events are recorded "at" the
/// pinned time (the store still keeps recorded times from going backwards).
#[derive(Debug)]
struct PinnedClock(DateTime<Utc>);

impl seatledger_store::Clock for PinnedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn invoices_command(workspace: &WorkspaceId, at: DateTime<Utc>, command: InvoiceCommand) -> Command {
    Command { at, body: CommandBody::Invoices { workspace: workspace.clone(), command } }
}

/// Compute and issue the invoice of one account for a month, at business
/// time `at`. Refused for a month that has not ended and for a second time.
pub async fn issue(
    handler: &CommandHandler,
    workspace: &WorkspaceId,
    account: &AccountId,
    month: Month,
    at: DateTime<Utc>,
    meta: &CommandMeta,
) -> Result<(InvoiceDocument, HandleOutcome), InvoicingError> {
    let mut invoices = preview(handler.store().as_ref(), workspace, Some(account), month, AsOf::Head).await?;
    let invoice = invoices.pop().ok_or_else(|| InvoicingError::Invalid("no invoice computed".to_owned()))?;
    let command = invoices_command(workspace, at, InvoiceCommand::Issue { invoice: Box::new(invoice.clone()) });
    let outcome = handler.handle(&command, meta).await?;
    // A retried command returns what was recorded the first time, not a new computation.
    let invoice = match &outcome {
        HandleOutcome::Appended { .. } => invoice,
        _ => handler
            .invoice_book(workspace)
            .await?
            .issued
            .get(&(account.clone(), month))
            .map(|i| i.invoice.clone())
            .unwrap_or(invoice),
    };
    Ok((invoice, outcome))
}

/// The issued invoice with this number, with its notes.
pub async fn find_issued(
    handler: &CommandHandler,
    number: &str,
) -> Result<seatledger_domain::invoice::IssuedInvoice, InvoicingError> {
    let workspace = workspace_of_number(handler, number).await?;
    let book = handler.invoice_book(&workspace).await?;
    book.find(number).cloned().ok_or_else(|| InvoicingError::NotIssued(number.to_owned()))
}

/// Invoice numbers start with the workspace id; find the workspace whose
/// invoices stream holds the number.
async fn workspace_of_number(handler: &CommandHandler, number: &str) -> Result<WorkspaceId, InvoicingError> {
    // The number is `<workspace>-<account>-<YYYY-MM>`; ids may contain `-`,
    // so try every prefix that names an existing invoices stream.
    let parts: Vec<&str> = number.split('-').collect();
    for cut in (1..parts.len()).rev() {
        let candidate = parts[..cut].join("-");
        let Ok(id) = WorkspaceId::new(candidate) else { continue };
        let stream = StreamId::Invoices(id.clone()).name();
        if handler.store().stream_version(&stream).await?.is_some() {
            let book = handler.invoice_book(&id).await?;
            if book.find(number).is_some() {
                return Ok(id);
            }
        }
    }
    Err(InvoicingError::NotIssued(number.to_owned()))
}

/// The stored bytes of a document: what reproduction compares.
pub fn document_bytes(invoice: &InvoiceDocument) -> String {
    encode(&Event::InvoiceIssued { invoice: Box::new(invoice.clone()) }).payload
}

/// Result of reproducing an issued invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reproduction {
    pub issued: InvoiceDocument,
    pub recomputed: InvoiceDocument,
    pub identical: bool,
    /// Line by line differences, when not identical.
    pub differences: Vec<LineDifference>,
}

/// Recompute an issued invoice from the events known at its recorded
/// position; the bytes must be identical.
pub async fn reproduce(handler: &CommandHandler, number: &str) -> Result<Reproduction, InvoicingError> {
    let issued = find_issued(handler, number).await?.invoice;
    let at_recorded = preview(
        handler.store().as_ref(),
        &issued.workspace,
        Some(&issued.account),
        issued.period,
        AsOf::Position(issued.computed_at_position),
    )
    .await
    .map(|mut v| v.pop());
    let gapless = handler.store().capabilities().gapless_positions;
    let recomputed = match at_recorded {
        Ok(Some(doc)) if gapless || doc.inputs_digest == issued.inputs_digest => doc,
        Err(e) if gapless => return Err(e),
        Ok(None) if gapless => return Err(InvoicingError::Invalid("no invoice recomputed".to_owned())),
        other => match renumbered(handler, &issued).await? {
            Some(found) => found,
            None => match other {
                Ok(Some(doc)) => doc,
                Ok(None) => return Err(InvoicingError::Invalid("no invoice recomputed".to_owned())),
                Err(e) => return Err(e),
            },
        },
    };
    let identical = document_bytes(&issued) == document_bytes(&recomputed);
    let differences = if identical { vec![] } else { line_differences(&issued.lines, &recomputed.lines) };
    Ok(Reproduction { issued, recomputed, identical, differences })
}

/// An invoice issued on a ledger numbered 1, 2, 3, … and then migrated to a
/// store with other positions (KurrentDB's commit positions) records its
/// position in the old numbering: there, "position N" means "the first N
/// events of the log", which a migration keeps in order. When the recorded
/// position does not reproduce the recorded inputs on such a store, the
/// first N events are tried, and used only if they are exactly the inputs the
/// invoice recorded (same digest of event ids); the recomputation then
/// carries the recorded position, since it is the same point in history.
async fn renumbered(
    handler: &CommandHandler,
    issued: &InvoiceDocument,
) -> Result<Option<InvoiceDocument>, InvoicingError> {
    let store = handler.store();
    let wanted = issued.computed_at_position;
    if wanted == 0 {
        return Ok(None);
    }
    let (mut after, mut seen) = (0u64, 0u64);
    let nth = loop {
        let page = store.read_all(after, seatledger_store::MAX_READ_COUNT).await?;
        let Some(last) = page.last() else { return Ok(None) };
        if seen + page.len() as u64 >= wanted {
            break page[(wanted - seen - 1) as usize].position;
        }
        seen += page.len() as u64;
        after = last.position;
    };
    let Some(mut again) =
        preview(store.as_ref(), &issued.workspace, Some(&issued.account), issued.period, AsOf::Position(nth))
            .await?
            .pop()
    else {
        return Ok(None);
    };
    if again.inputs_digest != issued.inputs_digest {
        return Ok(None);
    }
    again.computed_at_position = wanted;
    Ok(Some(again))
}

/// One line whose amount changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDifference {
    pub key: String,
    pub description: String,
    pub before: Money,
    pub after: Money,
    pub before_formula: Option<String>,
    pub after_formula: Option<String>,
}

impl LineDifference {
    pub fn change(&self) -> Money {
        Money::new(self.after.amount - self.before.amount, self.after.currency)
    }
}

fn line_differences(before: &[InvoiceLine], after: &[InvoiceLine]) -> Vec<LineDifference> {
    let b: BTreeMap<&str, &InvoiceLine> = before.iter().map(|l| (l.key.as_str(), l)).collect();
    let a: BTreeMap<&str, &InvoiceLine> = after.iter().map(|l| (l.key.as_str(), l)).collect();
    let keys: BTreeSet<&str> = b.keys().chain(a.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|k| {
            let (lb, la) = (b.get(k), a.get(k));
            let currency = la.or(lb).map(|l| l.amount.currency)?;
            let before = lb.map_or(Money::zero(currency), |l| l.amount);
            let after = la.map_or(Money::zero(currency), |l| l.amount);
            let same = lb.map(|l| (&l.formula, &l.quantity)) == la.map(|l| (&l.formula, &l.quantity));
            (before != after || !same).then(|| LineDifference {
                key: k.to_owned(),
                description: la.or(lb).map(|l| l.description.clone()).unwrap_or_default(),
                before,
                after,
                before_formula: lb.map(|l| l.formula.clone()),
                after_formula: la.map(|l| l.formula.clone()),
            })
        })
        .collect()
}

/// What recomputing an issued invoice with today's knowledge changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDiff {
    pub number: String,
    /// What the invoice and its notes bill now, per line key.
    pub billed_total: Money,
    pub recomputed: InvoiceDocument,
    pub differences: Vec<LineDifference>,
    pub tax_before: Money,
    pub tax_after: Money,
}

impl InvoiceDiff {
    pub fn is_empty(&self) -> bool {
        self.differences.iter().all(|d| d.before == d.after) && self.tax_before == self.tax_after
    }
}

/// Recompute an issued invoice at the head and compare it, line by line,
/// with what the invoice and its notes bill.
pub async fn diff(handler: &CommandHandler, number: &str) -> Result<InvoiceDiff, InvoicingError> {
    let issued = find_issued(handler, number).await?;
    let recomputed = preview(
        handler.store().as_ref(),
        &issued.invoice.workspace,
        Some(&issued.invoice.account),
        issued.invoice.period,
        AsOf::Head,
    )
    .await?
    .pop()
    .ok_or_else(|| InvoicingError::Invalid("no invoice recomputed".to_owned()))?;
    // What is billed now: the invoice's lines plus every note's lines.
    let billed = issued.billed_by_key();
    let mut before_lines: Vec<InvoiceLine> = issued.invoice.lines.clone();
    for line in &mut before_lines {
        line.amount = billed[&line.key];
    }
    for (key, amount) in &billed {
        if !before_lines.iter().any(|l| &l.key == key) {
            let template = issued
                .notes
                .iter()
                .flat_map(|n| n.lines.iter())
                .find(|l| &l.key == key)
                .expect("a billed key comes from a line");
            let mut line = template.clone();
            line.amount = *amount;
            before_lines.push(line);
        }
    }
    let currency = issued.invoice.currency;
    let tax_before = issued
        .invoice
        .taxes
        .iter()
        .chain(issued.notes.iter().flat_map(|n| n.taxes.iter()))
        .fold(Money::zero(currency), |s, t| s.checked_add(t.tax).expect("one currency"));
    let tax_after =
        recomputed.taxes.iter().fold(Money::zero(currency), |s, t| s.checked_add(t.tax).expect("one currency"));
    let differences =
        line_differences(&before_lines, &recomputed.lines).into_iter().filter(|d| d.before != d.after).collect();
    Ok(InvoiceDiff {
        number: number.to_owned(),
        billed_total: issued.billed_total(),
        recomputed,
        differences,
        tax_before,
        tax_after,
    })
}

/// Issue a credit or debit note for what [`diff`] finds. Each note line is
/// the corrected (rounded) line minus what was billed (rounded), and the tax
/// line likewise, so the invoice plus its notes equals the corrected total
/// to the minor unit.
pub async fn correct(
    handler: &CommandHandler,
    number: &str,
    at: DateTime<Utc>,
    meta: &CommandMeta,
) -> Result<(NoteDocument, HandleOutcome), InvoicingError> {
    let d = diff(handler, number).await?;
    let issued = find_issued(handler, number).await?;
    let currency = issued.invoice.currency;
    let lines: Vec<InvoiceLine> = d
        .differences
        .iter()
        .map(|diff| {
            let template = d.recomputed.lines.iter().find(|l| l.key == diff.key);
            let change = diff.change();
            let mut line = template.cloned().unwrap_or_else(|| InvoiceLine {
                key: diff.key.clone(),
                description: diff.description.clone(),
                sku: None,
                subscription: None,
                rule: "correction.removed".to_owned(),
                formula: String::new(),
                quantity: rust_decimal::Decimal::ZERO,
                unit_price: Money::zero(currency),
                discount: Percent::ZERO,
                amount: Money::zero(currency),
                taxable: issued.invoice.lines.iter().find(|l| l.key == diff.key).is_some_and(|l| l.taxable),
                inputs: vec![],
                events: vec![],
            });
            line.formula = format!("corrected {} − billed {} = {}", diff.after, diff.before, change);
            line.amount = change;
            line
        })
        .collect();
    let subtotal = lines.iter().fold(Money::zero(currency), |s, l| s.checked_add(l.amount).expect("one currency"));
    let tax_change = Money::new(d.tax_after.amount - d.tax_before.amount, currency);
    let taxable_change = lines
        .iter()
        .filter(|l| l.taxable)
        .fold(Money::zero(currency), |s, l| s.checked_add(l.amount).expect("one currency"));
    let taxes = match issued.invoice.taxes.first().or(d.recomputed.taxes.first()) {
        Some(t) if !tax_change.amount.is_zero() || !taxable_change.amount.is_zero() => {
            vec![TaxLine { rate: t.rate, taxable_subtotal: taxable_change, tax: tax_change }]
        }
        _ => vec![],
    };
    let total = taxes.iter().fold(subtotal, |s, t| s.checked_add(t.tax).expect("one currency"));
    let note = NoteDocument {
        number: format!("{number}-N{}", issued.notes.len() + 1),
        kind: if total.amount.is_sign_negative() { NoteKind::Credit } else { NoteKind::Debit },
        original: number.to_owned(),
        workspace: issued.invoice.workspace.clone(),
        account: issued.invoice.account.clone(),
        period: issued.invoice.period,
        currency,
        lines,
        subtotal,
        taxes,
        total,
        computed_at_position: d.recomputed.computed_at_position,
        inputs_digest: d.recomputed.inputs_digest.clone(),
    };
    let command =
        invoices_command(&issued.invoice.workspace, at, InvoiceCommand::Correct { note: Box::new(note.clone()) });
    let outcome = handler.handle(&command, meta).await?;
    Ok((note, outcome))
}

/// Look up stored events by id, for `explain`.
pub async fn events_by_id(
    store: &dyn EventStore,
    ids: &BTreeSet<uuid::Uuid>,
    up_to: u64,
) -> Result<BTreeMap<uuid::Uuid, StoredEvent>, InvoicingError> {
    let mut found = BTreeMap::new();
    let mut after = 0;
    while found.len() < ids.len() {
        let page = store.read_all(after, MAX_READ_COUNT).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        for e in page {
            if e.position > up_to {
                return Ok(found);
            }
            if ids.contains(&e.id) {
                found.insert(e.id, e);
            }
        }
        after = last;
    }
    Ok(found)
}
