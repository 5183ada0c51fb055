//! `seatledger invoice …`, and the bitemporal reads (`--as-of-position`,
//! `--as-of-recorded`) that `state`, `changelog` and `audit` share.
//!
//! Everything here goes through `seatledger_app::invoicing`: this module
//! parses and checks what the user typed, turns errors into sentences and
//! hands documents to [`crate::render`] or to the codec for `--json`.

use crate::render;
use crate::render::write_json;
use crate::scenario::{derive_command_id, to_command};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use seatledger_app::invoicing::{self, AsOf, InvoiceDiff, InvoicingError, LineDifference, Reproduction};
use seatledger_app::{CommandHandler, CommandMeta, HandleOutcome, V7Ids};
use seatledger_domain::invoice::IssuedInvoice;
use seatledger_domain::{
    AccountId, Command, DomainError, Event, InvoiceDocument, Money, Month, NoteDocument, NoteKind, WorkspaceId,
};
use seatledger_projections::invoice::InvoiceProblem;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, StoredEvent};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The actor and channel recorded for invoices issued from the command line.
const ACTOR: &str = "cli";
const CHANNEL: &str = "cli";

/// Exit code of `invoice reproduce` when the recomputation differs.
pub const NOT_REPRODUCED: u8 = 2;

// ---------------------------------------------------------------------------
// Bitemporal reads
// ---------------------------------------------------------------------------

/// Which events a read counts. Without either flag: everything stored now.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct AsOfArgs {
    /// Read only the events up to and including this global position.
    #[arg(long, value_name = "N", conflicts_with = "as_of_recorded")]
    pub as_of_position: Option<u64>,
    /// Read only the events recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub as_of_recorded: Option<DateTime<Utc>>,
}

impl AsOfArgs {
    pub fn as_of(&self) -> AsOf {
        match (self.as_of_position, self.as_of_recorded) {
            (Some(p), _) => AsOf::Position(p),
            (None, Some(t)) => AsOf::Recorded(t),
            (None, None) => AsOf::Head,
        }
    }

    pub fn is_head(&self) -> bool {
        self.as_of() == AsOf::Head
    }

    /// Refuse a position the ledger has not reached: reading "as of" it
    /// would silently mean "now".
    pub async fn check(&self, store: &dyn EventStore) -> anyhow::Result<()> {
        if let Some(p) = self.as_of_position {
            let head = store.head_position().await?;
            if p > head {
                bail!("--as-of-position {p} is beyond the ledger's last position, {head}");
            }
        }
        Ok(())
    }

    /// How to say what was read, e.g. "as known at position 7".
    pub fn describe(&self) -> Option<String> {
        match self.as_of() {
            AsOf::Head => None,
            AsOf::Position(p) => Some(format!("as known at position {p}")),
            AsOf::Recorded(t) => Some(format!("as recorded by {}", t.to_rfc3339())),
        }
    }
}

/// Fold fresh projections over the events known `as_of`, without touching
/// their checkpoints. Returns the last position folded (0 when none).
pub async fn fold_as_of(
    store: &dyn EventStore,
    as_of: AsOf,
    projections: &mut [&mut dyn Projection],
) -> anyhow::Result<u64> {
    Ok(invoicing::fold_known(store, as_of, projections).await?)
}

// ---------------------------------------------------------------------------
// The `invoice` subcommands
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum InvoiceCmd {
    /// Compute invoices without issuing them.
    Preview {
        #[arg(long)]
        workspace: String,
        /// One billing account; every account of the workspace when left out.
        #[arg(long)]
        account: Option<String>,
        /// The month, as YYYY-MM.
        #[arg(long)]
        period: String,
        #[command(flatten)]
        as_of: AsOfArgs,
        /// Decide the commands of this file (JSON Lines, as for `apply`) on a
        /// scratch copy of the ledger first; the ledger itself is not touched.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["as_of_position", "as_of_recorded"])]
        with: Option<PathBuf>,
        /// With --with: the pinned time the hypothetical commands are decided
        /// at, and the business time of lines without `at`; defaults to now.
        #[arg(long, value_name = "RFC3339", requires = "with")]
        at: Option<DateTime<Utc>>,
    },
    /// Compute and issue the invoice of one account for a month that has ended.
    Issue {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        account: String,
        /// The month, as YYYY-MM.
        #[arg(long)]
        period: String,
        /// Business time of the issue (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
    /// An issued invoice and its notes, as recorded.
    Show { number: String },
    /// Each line of an issued invoice with its rule, formula, inputs and the events behind it.
    Explain { number: String },
    /// Recompute an issued invoice from what was known when it was issued; exits 2 unless byte-identical.
    Reproduce { number: String },
    /// What recomputing an issued invoice with everything known now changes.
    Diff { number: String },
    /// Issue a credit or debit note for what `diff` finds.
    Correct {
        number: String,
        /// Business time of the note (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
}

/// Run one `invoice` subcommand, printing to `out` (tables, or JSON when `json`).
pub async fn run(
    store: &Arc<dyn EventStore>,
    json: bool,
    cmd: InvoiceCmd,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let handler = CommandHandler::new(store.clone(), Arc::new(V7Ids));
    match cmd {
        InvoiceCmd::Preview { workspace, account, period, as_of, with, at } => {
            let request = PreviewRequest {
                workspace: workspace_id(&workspace)?,
                account: account.as_deref().map(account_id).transpose()?,
                month: parse_period(&period)?,
            };
            preview(store, &request, as_of, with.as_deref(), at, json, out).await
        }
        InvoiceCmd::Issue { workspace, account, period, at } => {
            let (ws, acc, month) = (workspace_id(&workspace)?, account_id(&account)?, parse_period(&period)?);
            issue(&handler, &ws, &acc, month, at.unwrap_or_else(Utc::now), json, out).await
        }
        InvoiceCmd::Show { number } => {
            let issued = invoicing::find_issued(&handler, &number).await.map_err(flat)?;
            if json {
                write_json(out, &issued_json(&issued)?)?;
            } else {
                writeln!(out, "{}", render::issued(&issued))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        InvoiceCmd::Explain { number } => explain(&handler, &number, json, out).await,
        InvoiceCmd::Reproduce { number } => {
            let r = invoicing::reproduce(&handler, &number).await.map_err(flat)?;
            let fields = differing_fields(&r)?;
            if json {
                write_json(
                    out,
                    &json!({
                        "number": number,
                        "identical": r.identical,
                        "computed_at_position": r.issued.computed_at_position,
                        "fields": fields,
                        "differences": r.differences.iter().map(difference_json).collect::<Vec<_>>(),
                    }),
                )?;
            } else {
                writeln!(out, "{}", render::reproduction(&r, &fields))?;
            }
            Ok(if r.identical { ExitCode::SUCCESS } else { ExitCode::from(NOT_REPRODUCED) })
        }
        InvoiceCmd::Diff { number } => {
            let d = invoicing::diff(&handler, &number).await.map_err(flat)?;
            if json {
                write_json(out, &diff_json(&d))?;
            } else {
                writeln!(out, "{}", render::invoice_diff(&d))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        InvoiceCmd::Correct { number, at } => correct(&handler, &number, at.unwrap_or_else(Utc::now), json, out).await,
    }
}

/// What to preview.
#[derive(Debug, Clone)]
struct PreviewRequest {
    workspace: WorkspaceId,
    account: Option<AccountId>,
    month: Month,
}

async fn preview(
    store: &Arc<dyn EventStore>,
    request: &PreviewRequest,
    as_of: AsOfArgs,
    with: Option<&Path>,
    at: Option<DateTime<Utc>>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let PreviewRequest { workspace, account, month } = request;
    let today = Utc::now().date_naive();
    if month.first_day() > today {
        bail!("period {month} has not started yet (today is {today}): there is nothing to preview");
    }
    let (invoices, heading) = match with {
        Some(file) => {
            let pinned = at.unwrap_or_else(Utc::now);
            let (lines, commands) = read_hypothetical(file, pinned)?;
            let (invoices, refused) = invoicing::preview_with(
                store.as_ref(),
                &commands,
                pinned,
                Arc::new(V7Ids),
                workspace,
                account.as_ref(),
                *month,
            )
            .await
            .map_err(flat)?;
            for (index, error) in &refused {
                let line = lines.get(*index).copied().unwrap_or(index + 1);
                eprintln!("{}:{line}: {error} (hypothetical; left out of the preview)", file.display());
            }
            let heading = format!(
                "preview of {month} with {} hypothetical command(s) from {} decided at {} ({} refused); \
                 nothing was issued and the ledger is unchanged",
                commands.len() - refused.len(),
                file.display(),
                pinned.to_rfc3339(),
                refused.len()
            );
            (invoices, heading)
        }
        None => {
            as_of.check(store.as_ref()).await?;
            let invoices = invoicing::preview(store.as_ref(), workspace, account.as_ref(), *month, as_of.as_of())
                .await
                .map_err(|e| explain_unknown_account(e, *month, as_of.is_head()))?;
            let known = as_of.describe().map(|s| format!(", {s}")).unwrap_or_default();
            (invoices, format!("preview of {month}{known}; nothing was issued"))
        }
    };
    if json {
        let docs = invoices.iter().map(invoice_json).collect::<anyhow::Result<Vec<_>>>()?;
        write_json(out, &docs)?;
    } else {
        writeln!(out, "{heading}")?;
        if invoices.is_empty() {
            writeln!(out, "workspace `{workspace}` had no billing account in {month}")?;
        }
        for invoice in &invoices {
            writeln!(out, "\n{}", render::invoice(invoice))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Hypothetical commands: the line number of each in its file, and the commands.
type Hypothetical = (Vec<usize>, Vec<(Command, CommandMeta)>);

/// Read a command file of hypothetical commands, lines without `at` at the
/// pinned time. Any unreadable line refuses the whole preview, as `apply`
/// would.
fn read_hypothetical(path: &Path, pinned: DateTime<Utc>) -> anyhow::Result<Hypothetical> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let texts: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut lines = vec![];
    let mut commands = vec![];
    let mut bad = vec![];
    for (i, text) in texts.iter().enumerate() {
        if text.trim().is_empty() || text.trim_start().starts_with("//") {
            continue;
        }
        match seatledger_codec::parse_command(text) {
            Ok(envelope) => {
                lines.push(i + 1);
                commands.push(to_command(envelope, text, pinned, ACTOR, CHANNEL));
            }
            Err(e) => bad.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if !bad.is_empty() {
        bail!("{}; nothing was previewed", bad.join("\n"));
    }
    Ok((lines, commands))
}

async fn issue(
    handler: &CommandHandler,
    workspace: &WorkspaceId,
    account: &AccountId,
    month: Month,
    at: DateTime<Utc>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    // What exists now, so that the errors name the right thing first.
    let (_, ws) = handler.load(Some(workspace)).await?;
    let Some(ws) = ws else { bail!("{}", InvoiceProblem::UnknownWorkspace(workspace.clone())) };
    if !ws.accounts.contains_key(account) {
        bail!("{}", InvoiceProblem::UnknownAccount { workspace: workspace.clone(), account: account.clone() });
    }
    let already = |number: &str| {
        anyhow!(
            "{}",
            DomainError::InvoiceAlreadyIssued { account: account.clone(), period: month, number: number.to_owned() }
        )
    };
    let book = handler.invoice_book(workspace).await?;
    if let Some(existing) = book.issued.get(&(account.clone(), month)) {
        return Err(already(&existing.invoice.number));
    }
    // A month that has not ended by the clock is refused whatever `--at` says.
    if month.next().first_day() > Utc::now().date_naive() {
        bail!("{}", DomainError::PeriodNotEnded { period: month });
    }
    // One id per account and month: a retry, even one racing the first
    // attempt, can never record a second invoice.
    let meta = CommandMeta::new(ACTOR, CHANNEL, issue_command_id(workspace, account, month));
    let (invoice, outcome) = invoicing::issue(handler, workspace, account, month, at, &meta)
        .await
        .map_err(|e| explain_unknown_account(e, month, true))?;
    if !matches!(outcome, HandleOutcome::Appended { .. }) {
        // The same command was recorded before (a concurrent retry).
        let book = handler.invoice_book(workspace).await?;
        let number = book.issued.get(&(account.clone(), month)).map_or(invoice.number, |i| i.invoice.number.clone());
        return Err(already(&number));
    }
    if json {
        write_json(out, &invoice_json(&invoice)?)?;
    } else {
        writeln!(out, "issued invoice {} at {}", invoice.number, at.to_rfc3339())?;
        writeln!(out, "{}", render::invoice(&invoice))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The idempotency key of issuing one account's invoice for one month.
pub fn issue_command_id(workspace: &WorkspaceId, account: &AccountId, month: Month) -> uuid::Uuid {
    derive_command_id(&format!("invoice issue workspace={workspace} account={account} period={month}"))
}

/// The idempotency key of the next note of an invoice that has `notes` notes.
pub fn correct_command_id(number: &str, notes: usize) -> uuid::Uuid {
    derive_command_id(&format!("invoice correct number={number} notes={notes}"))
}

async fn correct(
    handler: &CommandHandler,
    number: &str,
    at: DateTime<Utc>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let before = invoicing::find_issued(handler, number).await.map_err(flat)?;
    let meta = CommandMeta::new(ACTOR, CHANNEL, correct_command_id(number, before.notes.len()));
    let (computed, outcome) = invoicing::correct(handler, number, at, &meta).await.map_err(flat)?;
    let note = match outcome {
        HandleOutcome::Appended { .. } => computed,
        // This very correction was recorded already: show what was recorded.
        HandleOutcome::AlreadyApplied(_) | HandleOutcome::NoChange => {
            let after = invoicing::find_issued(handler, number).await.map_err(flat)?;
            let recorded = after.notes.get(before.notes.len()).cloned();
            eprintln!("this correction of invoice {number} was recorded before; nothing new was recorded");
            recorded.unwrap_or(computed)
        }
    };
    if json {
        write_json(out, &note_json(&note)?)?;
    } else {
        writeln!(out, "issued {} note {} correcting invoice {number} at {}", note.kind, note.number, at.to_rfc3339())?;
        writeln!(out, "{}", render::note(&note))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One event behind an invoice line, for `explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExplainedEvent {
    pub id: uuid::Uuid,
    pub position: u64,
    pub event_type: String,
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub channel: String,
    pub summary: String,
}

impl ExplainedEvent {
    fn from_stored(e: &StoredEvent) -> anyhow::Result<Self> {
        let event = seatledger_codec::decode(&e.event_type, e.schema_version, &e.payload)
            .map_err(|err| anyhow!("cannot read event {} at position {}: {err}", e.id, e.position))?;
        Ok(Self {
            id: e.id,
            position: e.position,
            event_type: e.event_type.to_string(),
            effective_at: e.metadata.effective_at,
            recorded_at: e.recorded_at,
            actor: e.metadata.actor.to_string(),
            channel: e.metadata.channel.to_string(),
            summary: seatledger_projections::audit::describe(&event),
        })
    }
}

async fn explain(handler: &CommandHandler, number: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let invoice = invoicing::find_issued(handler, number).await.map_err(flat)?.invoice;
    let ids: BTreeSet<uuid::Uuid> = invoice.lines.iter().flat_map(|l| l.events.iter().copied()).collect();
    let stored =
        invoicing::events_by_id(handler.store().as_ref(), &ids, invoice.computed_at_position).await.map_err(flat)?;
    let events: BTreeMap<uuid::Uuid, ExplainedEvent> =
        stored.values().map(|e| ExplainedEvent::from_stored(e).map(|x| (x.id, x))).collect::<anyhow::Result<_>>()?;
    if json {
        let lines: Vec<Value> = invoice
            .lines
            .iter()
            .map(|l| {
                json!({
                    "key": l.key,
                    "description": l.description,
                    "rule": l.rule,
                    "formula": l.formula,
                    "amount": money_json(l.amount),
                    "inputs": l.inputs.iter().map(|i| json!({"name": i.name, "value": i.value})).collect::<Vec<_>>(),
                    "events": line_events(&l.events, &events).iter().map(|(id, e)| match e {
                        Some(e) => json!(e),
                        None => json!({"id": id, "found": false}),
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        write_json(
            out,
            &json!({
                "number": invoice.number,
                "computed_at_position": invoice.computed_at_position,
                "inputs_digest": invoice.inputs_digest,
                "lines": lines,
            }),
        )?;
    } else {
        writeln!(out, "{}", render::explain(&invoice, &events))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The events of one line in the order they were recorded; ids not found
/// up to the invoice's position come last.
pub fn line_events<'a>(
    ids: &[uuid::Uuid],
    events: &'a BTreeMap<uuid::Uuid, ExplainedEvent>,
) -> Vec<(uuid::Uuid, Option<&'a ExplainedEvent>)> {
    let mut rows: Vec<(uuid::Uuid, Option<&ExplainedEvent>)> = ids.iter().map(|id| (*id, events.get(id))).collect();
    rows.sort_by_key(|(id, e)| (e.map_or(u64::MAX, |e| e.position), *id));
    rows
}

// ---------------------------------------------------------------------------
// Input checks and errors
// ---------------------------------------------------------------------------

/// Parse `--period YYYY-MM`, naming the period when it is not one.
pub fn parse_period(text: &str) -> anyhow::Result<Month> {
    Month::parse(text.trim()).map_err(|e| anyhow!("--period {text:?} is not a valid period: {e}"))
}

pub fn workspace_id(text: &str) -> anyhow::Result<WorkspaceId> {
    WorkspaceId::new(text).map_err(|e| anyhow!("--workspace {text:?} is not a workspace id: {e}"))
}

pub fn account_id(text: &str) -> anyhow::Result<AccountId> {
    AccountId::new(text).map_err(|e| anyhow!("--account {text:?} is not a billing account id: {e}"))
}

/// An invoicing error as one sentence: the app's errors repeat their
/// source in their message, so sources already said are not said again.
pub fn flat(e: InvoicingError) -> anyhow::Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    anyhow!(message)
}

/// "Does not exist" is wrong for an account opened after the month: say so.
fn explain_unknown_account(e: InvoicingError, month: Month, at_head: bool) -> anyhow::Error {
    if let InvoicingError::Problem(InvoiceProblem::UnknownAccount { workspace, account }) = &e {
        if at_head {
            return anyhow!(
                "billing account `{account}` does not exist in workspace `{workspace}` or was opened after {month} \
                 ended: it has no invoice for {month}"
            );
        }
    }
    flat(e)
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// The document inside an encoded event's payload, byte for byte.
fn take_field(payload: &str, field: &str) -> anyhow::Result<Box<RawValue>> {
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(payload)?;
    fields.remove(field).ok_or_else(|| anyhow!("the encoded document has no `{field}`"))
}

/// An invoice in the codec's canonical JSON: exactly the bytes the ledger
/// stores (and `reproduce` compares), key order included.
pub fn invoice_json(invoice: &InvoiceDocument) -> anyhow::Result<Box<RawValue>> {
    take_field(&invoicing::document_bytes(invoice), "invoice")
}

/// A note in the codec's canonical JSON, as the ledger stores it.
pub fn note_json(note: &NoteDocument) -> anyhow::Result<Box<RawValue>> {
    let event = match note.kind {
        NoteKind::Credit => Event::CreditNoteIssued { note: Box::new(note.clone()) },
        NoteKind::Debit => Event::DebitNoteIssued { note: Box::new(note.clone()) },
    };
    take_field(&seatledger_codec::encode(&event).payload, "note")
}

/// `invoice show --json`: the recorded documents, as stored.
#[derive(Debug, serde::Serialize)]
struct IssuedJson {
    invoice: Box<RawValue>,
    notes: Vec<Box<RawValue>>,
    billed_total: Value,
}

fn issued_json(issued: &IssuedInvoice) -> anyhow::Result<IssuedJson> {
    Ok(IssuedJson {
        invoice: invoice_json(&issued.invoice)?,
        notes: issued.notes.iter().map(note_json).collect::<anyhow::Result<Vec<_>>>()?,
        billed_total: money_json(issued.billed_total()),
    })
}

/// Money as the codec writes it: `{"amount": "62.00", "currency": "EUR"}`.
pub fn money_json(m: Money) -> Value {
    json!({"amount": m.amount.to_string(), "currency": m.currency.code()})
}

fn difference_json(d: &LineDifference) -> Value {
    json!({
        "key": d.key,
        "description": d.description,
        "before": money_json(d.before),
        "after": money_json(d.after),
        "change": money_json(d.change()),
        "before_formula": d.before_formula,
        "after_formula": d.after_formula,
    })
}

fn diff_json(d: &InvoiceDiff) -> Value {
    json!({
        "number": d.number,
        "no_change": d.is_empty(),
        "billed_total": money_json(d.billed_total),
        "recomputed_total": money_json(d.recomputed.total),
        "differences": d.differences.iter().map(difference_json).collect::<Vec<_>>(),
        "tax_before": money_json(d.tax_before),
        "tax_after": money_json(d.tax_after),
        "computed_at_position": d.recomputed.computed_at_position,
    })
}

/// The top-level fields of the stored document that the recomputation
/// does not reproduce.
pub fn differing_fields(r: &Reproduction) -> anyhow::Result<Vec<String>> {
    if r.identical {
        return Ok(vec![]);
    }
    let a: BTreeMap<String, Value> = serde_json::from_str(invoice_json(&r.issued)?.get())?;
    let b: BTreeMap<String, Value> = serde_json::from_str(invoice_json(&r.recomputed)?.get())?;
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect())
}
