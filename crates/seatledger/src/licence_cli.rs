//! `seatledger licences …` and `seatledger notifications …`: the Licence
//! Manager (seed 002) on the command line — pools and their settings, "add
//! licences", the per-SKU log, the automatic top-up process manager, the
//! notification recipients and delivery.
//!
//! Everything that changes the ledger goes through the command handler, so
//! the domain's checks apply and a refused command appends nothing. Reads
//! fold the ledger as it is now and write no checkpoint, except
//! `notifications deliver`, which keeps the notifications projection's
//! checkpoint and `licences top-up`, which keeps the process manager's.
//! How it all works: `docs/licence-manager.md`.

use crate::render::{right, table, write_json};
use anyhow::{anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{ArgGroup, Subcommand};
use comfy_table::Cell;
use seatledger_app::invoicing::{fold_known, AsOf};
use seatledger_app::notify::{self, notification_line, CollectingSink, FileSink};
use seatledger_app::topup::{AttemptOutcome, TopUpManager};
use seatledger_app::{AppError, CommandHandler, CommandMeta, HandleOutcome, V7Ids};
use seatledger_domain::{
    Command, CommandBody, Event, LicenceSettings, Month, NotificationKind, OrderDetails, OrgId, PoolKey, PoolScope,
    RecipientId, Sku, StreamId, SubscriptionId, TopUpSettings, WorkspaceCommand, WorkspaceId,
};
use seatledger_projections::audit::{self, AuditEntry};
use seatledger_projections::licence_state::LicenceState;
use seatledger_projections::notifications::{DeliveryState, NotificationRow, Notifications};
use seatledger_projections::{Projection, Recorded};
use seatledger_store::EventStore;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The actor and channel recorded for changes made from the command line.
const ACTOR: &str = "cli";
const CHANNEL: &str = "cli";

/// Exit code of `notifications deliver` when an attempt failed.
pub const DELIVERY_FAILED: u8 = 3;

/// A count of licences or seats: a whole number of 0 or more. Negative
/// numbers reach this parser (instead of looking like flags) so that the
/// message can say what is wrong.
fn count(text: &str) -> Result<u32, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("{t} is negative; licence counts, thresholds and caps are whole numbers of 0 or more"));
    }
    t.parse::<u32>().map_err(|_| format!("{t:?} is not a whole number of 0 or more"))
}

fn delivery_state(text: &str) -> Result<DeliveryState, String> {
    DeliveryState::parse(text.trim())
}

#[derive(Debug, Subcommand)]
pub enum LicencesCmd {
    /// Pools with their total, assigned and available seats, and their settings.
    List {
        /// One workspace; every workspace when left out.
        #[arg(long)]
        workspace: Option<String>,
        /// The day to evaluate pools on (YYYY-MM-DD); defaults to today (UTC).
        #[arg(long, value_name = "DATE")]
        at: Option<NaiveDate>,
    },
    /// Add licences to a pool by hand ("Add licences").
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        sku: String,
        /// The top-level organization whose pool it is (assigned mode only).
        #[arg(long)]
        organization: Option<String>,
        /// The subscription that takes the licences; required when the pool has several.
        #[arg(long)]
        subscription: Option<String>,
        /// How many licences to add (at least 1).
        #[arg(long, value_parser = count, allow_negative_numbers = true)]
        quantity: u32,
        /// Who ordered them.
        #[arg(long)]
        ordered_by: String,
        #[arg(long)]
        order_reference: Option<String>,
        /// Business time (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
    /// Change a pool's alert and automatic top-up settings; settings not given are kept.
    Settings {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        sku: String,
        /// The top-level organization whose pool it is (assigned mode only).
        #[arg(long)]
        organization: Option<String>,
        /// Alert when available seats fall to this number or below.
        #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
        alert_threshold: Option<u32>,
        /// Switch the low-licence alert off.
        #[arg(long, conflicts_with = "alert_threshold")]
        no_alert: bool,
        /// Top up when available seats fall below this number, back up to it.
        #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
        top_up_threshold: Option<u32>,
        /// The most licences one top-up may add.
        #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
        cap_per_top_up: Option<u32>,
        /// The most licences top-ups may add in one calendar month.
        #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
        cap_per_month: Option<u32>,
        /// Switch automatic top-ups off.
        #[arg(long, conflicts_with_all = ["top_up_threshold", "cap_per_top_up", "cap_per_month"])]
        no_top_up: bool,
        /// Business time (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
    /// The timestamped history of one SKU in one workspace.
    Log {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        sku: String,
    },
    /// The automatic top-up process manager. It acts on live events only:
    /// on its first start it begins at the ledger's head.
    TopUp {
        /// Handle every event up to the head, then stop (otherwise follow live appends until interrupted).
        #[arg(long)]
        run_once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCmd {
    /// Notifications and where their delivery stands.
    List {
        /// One workspace; every workspace when left out.
        #[arg(long)]
        workspace: Option<String>,
        /// Only notifications in this state: pending, sent, failed or given_up.
        #[arg(long, value_parser = delivery_state)]
        state: Option<DeliveryState>,
    },
    /// Deliver pending and failed notifications (not those given up) and record each attempt.
    /// Exits 3 when an attempt failed.
    #[command(group(ArgGroup::new("sink").required(true).args(["to_file", "stdout"])))]
    Deliver {
        /// Append one JSON line per delivered notification to this file.
        #[arg(long, value_name = "FILE")]
        to_file: Option<PathBuf>,
        /// Print one JSON line per delivered notification.
        #[arg(long)]
        stdout: bool,
        /// Deliver at most this many, oldest first.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Who receives which kinds of notification.
    Recipients {
        #[command(subcommand)]
        command: RecipientsCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipientsCmd {
    /// The recipients of a workspace and what they receive.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Add a recipient.
    Add {
        #[arg(long)]
        workspace: String,
        /// The recipient's id.
        #[arg(long)]
        recipient: String,
        #[arg(long)]
        email: String,
        /// Comma-separated: low_licence, top_up_confirmation, cap_reached; or all, or none.
        #[arg(long, value_delimiter = ',', default_value = "none")]
        kinds: Vec<String>,
        /// Business time (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
    /// Change which kinds a recipient receives.
    Settings {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        recipient: String,
        /// Comma-separated: low_licence, top_up_confirmation, cap_reached; or all, or none.
        #[arg(long, value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Business time (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
    /// Remove a recipient.
    Remove {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        recipient: String,
        /// Business time (RFC 3339); defaults to now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<DateTime<Utc>>,
    },
}

// ---------------------------------------------------------------------------
// Input checks
// ---------------------------------------------------------------------------

fn workspace_id(text: &str) -> anyhow::Result<WorkspaceId> {
    WorkspaceId::new(text).map_err(|e| anyhow!("--workspace {text:?} is not a workspace id: {e}"))
}

fn sku_id(text: &str) -> anyhow::Result<Sku> {
    Sku::new(text).map_err(|e| anyhow!("--sku {text:?} is not a SKU: {e}"))
}

fn org_id(text: &str) -> anyhow::Result<OrgId> {
    OrgId::new(text).map_err(|e| anyhow!("--organization {text:?} is not an organization id: {e}"))
}

fn recipient_id(text: &str) -> anyhow::Result<RecipientId> {
    RecipientId::new(text).map_err(|e| anyhow!("--recipient {text:?} is not a recipient id: {e}"))
}

fn subscription_id(text: &str) -> anyhow::Result<SubscriptionId> {
    SubscriptionId::new(text).map_err(|e| anyhow!("--subscription {text:?} is not a subscription id: {e}"))
}

/// `low_licence,cap_reached`, `all` or `none`.
fn parse_kinds(values: &[String]) -> anyhow::Result<Vec<NotificationKind>> {
    let words: Vec<&str> = values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
    match words.as_slice() {
        [] | ["none"] => return Ok(vec![]),
        ["all"] => return Ok(NotificationKind::ALL.to_vec()),
        _ => {}
    }
    let mut kinds = vec![];
    for w in words {
        if w == "none" || w == "all" {
            bail!("--kinds: `{w}` cannot be combined with other kinds");
        }
        let kind = NotificationKind::parse(w).map_err(|e| anyhow!("--kinds: {e}"))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn kinds_text(kinds: &[impl AsRef<str>]) -> String {
    if kinds.is_empty() {
        "nothing".to_owned()
    } else {
        kinds.iter().map(|k| k.as_ref().to_owned()).collect::<Vec<_>>().join(", ")
    }
}

fn pool_key(sku: &Sku, organization: Option<&OrgId>) -> PoolKey {
    PoolKey {
        scope: organization.map_or(PoolScope::Workspace, |o| PoolScope::Organization(o.clone())),
        sku: sku.clone(),
    }
}

fn pool_text(pool: &PoolKey) -> String {
    match &pool.scope {
        PoolScope::Workspace => format!("pool {}", pool.sku),
        PoolScope::Organization(o) => format!("pool {} of organization {o}", pool.sku),
    }
}

fn settings_text(s: &LicenceSettings) -> String {
    let alert = s.alert_threshold.map_or_else(|| "no alert".to_owned(), |a| format!("alert at {a} or fewer free"));
    let top_up = s.top_up.map_or_else(
        || "no automatic top-up".to_owned(),
        |t| {
            format!(
                "top up to {} free, at most {} per top-up and {} per month",
                t.vacant_seat_threshold, t.max_per_top_up, t.max_per_month
            )
        },
    );
    format!("{alert}; {top_up}")
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// The events a command appended, as type and sentence.
fn events_json(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            json!({
                "type": seatledger_codec::encode(e).event_type,
                "summary": seatledger_projections::audit::describe(e),
            })
        })
        .collect()
}

struct Cli {
    store: Arc<dyn EventStore>,
    handler: Arc<CommandHandler>,
}

impl Cli {
    fn new(store: Arc<dyn EventStore>) -> Self {
        let handler = Arc::new(CommandHandler::new(store.clone(), Arc::new(V7Ids)));
        Self { store, handler }
    }

    /// Decide and append one workspace command; a refusal is an error and appends nothing.
    async fn send(
        &self,
        workspace: &WorkspaceId,
        at: Option<DateTime<Utc>>,
        command: WorkspaceCommand,
    ) -> anyhow::Result<Vec<Event>> {
        let command = Command {
            at: at.unwrap_or_else(Utc::now),
            body: CommandBody::Workspace { workspace: workspace.clone(), command },
        };
        let meta = CommandMeta::new(ACTOR, CHANNEL, uuid::Uuid::now_v7());
        match self.handler.handle(&command, &meta).await {
            Ok(HandleOutcome::Appended { events, .. }) => Ok(events),
            Ok(HandleOutcome::AlreadyApplied(_) | HandleOutcome::NoChange) => Ok(vec![]),
            Err(AppError::Rejected(e)) => Err(anyhow!("{e}; nothing was recorded")),
            Err(e) => Err(e.into()),
        }
    }

    /// The workspace as it stands, or an error naming it.
    async fn workspace(
        &self,
        id: &WorkspaceId,
    ) -> anyhow::Result<(seatledger_domain::Catalog, seatledger_domain::Workspace)> {
        let (catalog, ws) = self.handler.load(Some(id)).await?;
        let ws = ws.ok_or_else(|| anyhow!("workspace `{id}` does not exist"))?;
        Ok((catalog, ws))
    }

    async fn fold(&self, projections: &mut [&mut dyn seatledger_projections::Projection]) -> anyhow::Result<()> {
        fold_known(self.store.as_ref(), AsOf::Head, projections).await?;
        Ok(())
    }
}

/// Print the outcome of a change: a heading and the events it recorded.
fn report_change(out: &mut dyn Write, json: bool, heading: &str, events: &[Event]) -> anyhow::Result<()> {
    if json {
        write_json(out, &json!({ "result": heading, "events": events_json(events) }))?;
    } else {
        writeln!(out, "{heading}")?;
        for e in events {
            writeln!(out, "  {}", seatledger_projections::audit::describe(e))?;
        }
        if events.is_empty() {
            writeln!(out, "  (no change: nothing was recorded)")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// `licences`
// ---------------------------------------------------------------------------

/// Run one `licences` subcommand, printing to `out` (tables, or JSON when `json`).
pub async fn run_licences(
    cmd: LicencesCmd,
    store: Arc<dyn EventStore>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let cli = Cli::new(store);
    match cmd {
        LicencesCmd::List { workspace, at } => list_pools(&cli, workspace.as_deref(), at, json, out).await,
        LicencesCmd::Add { workspace, sku, organization, subscription, quantity, ordered_by, order_reference, at } => {
            let ws_id = workspace_id(&workspace)?;
            let sku = sku_id(&sku)?;
            let organization = organization.as_deref().map(org_id).transpose()?;
            let subscription = subscription.as_deref().map(subscription_id).transpose()?;
            if ordered_by.trim().is_empty() {
                bail!("--ordered-by must name who ordered the licences");
            }
            let (catalog, _) = cli.workspace(&ws_id).await?;
            if catalog.product(&sku).is_none() {
                bail!("product `{sku}` is not in the catalog; nothing was recorded");
            }
            let at = at.unwrap_or_else(Utc::now);
            let order = OrderDetails {
                order_reference,
                order_date: Some(at.date_naive()),
                ordered_by,
                order_thru: Some("Licence Manager".to_owned()),
            };
            let pool = pool_key(&sku, organization.as_ref());
            let events = cli
                .send(
                    &ws_id,
                    Some(at),
                    WorkspaceCommand::AddLicences { sku, organization, subscription, quantity, order },
                )
                .await?;
            let heading = format!("added {quantity} licence(s) to the {} of workspace {ws_id}", pool_text(&pool));
            report_change(out, json, &heading, &events)?;
            Ok(ExitCode::SUCCESS)
        }
        LicencesCmd::Settings {
            workspace,
            sku,
            organization,
            alert_threshold,
            no_alert,
            top_up_threshold,
            cap_per_top_up,
            cap_per_month,
            no_top_up,
            at,
        } => {
            let ws_id = workspace_id(&workspace)?;
            let sku = sku_id(&sku)?;
            let organization = organization.as_deref().map(org_id).transpose()?;
            let top_up_given = [top_up_threshold, cap_per_top_up, cap_per_month];
            if alert_threshold.is_none() && !no_alert && top_up_given.iter().all(Option::is_none) && !no_top_up {
                bail!(
                    "nothing to change: give --alert-threshold or --no-alert, and/or --top-up-threshold, \
                     --cap-per-top-up and --cap-per-month, or --no-top-up"
                );
            }
            let (_, ws) = cli.workspace(&ws_id).await?;
            let pool = pool_key(&sku, organization.as_ref());
            let current = ws.settings.get(&pool).copied().unwrap_or_default();
            let alert = if no_alert { None } else { alert_threshold.or(current.alert_threshold) };
            let top_up = if no_top_up {
                None
            } else {
                match (top_up_given, current.top_up) {
                    ([None, None, None], kept) => kept,
                    ([Some(t), Some(p), Some(m)], _) => {
                        Some(TopUpSettings { vacant_seat_threshold: t, max_per_top_up: p, max_per_month: m })
                    }
                    ([t, p, m], Some(c)) => Some(TopUpSettings {
                        vacant_seat_threshold: t.unwrap_or(c.vacant_seat_threshold),
                        max_per_top_up: p.unwrap_or(c.max_per_top_up),
                        max_per_month: m.unwrap_or(c.max_per_month),
                    }),
                    ([t, p, m], None) => {
                        let missing: Vec<&str> = [
                            (t.is_none(), "--top-up-threshold"),
                            (p.is_none(), "--cap-per-top-up"),
                            (m.is_none(), "--cap-per-month"),
                        ]
                        .iter()
                        .filter(|(m, _)| *m)
                        .map(|(_, name)| *name)
                        .collect();
                        bail!(
                            "the {} has no automatic top-up yet: switching it on needs --top-up-threshold, \
                             --cap-per-top-up and --cap-per-month (missing: {}); nothing was recorded",
                            pool_text(&pool),
                            missing.join(", ")
                        );
                    }
                }
            };
            let settings = LicenceSettings { alert_threshold: alert, top_up };
            let events =
                cli.send(&ws_id, at, WorkspaceCommand::ConfigureLicences { sku, organization, settings }).await?;
            let heading =
                format!("settings of the {} in workspace {ws_id}: {}", pool_text(&pool), settings_text(&settings));
            report_change(out, json, &heading, &events)?;
            Ok(ExitCode::SUCCESS)
        }
        LicencesCmd::Log { workspace, sku } => log(&cli, &workspace, &sku, json, out).await,
        LicencesCmd::TopUp { run_once } => top_up(&cli, run_once, json, out).await,
    }
}

/// One pool in `licences list`.
#[derive(Debug, Clone, serde::Serialize)]
struct PoolLine {
    workspace: String,
    organization: Option<String>,
    sku: String,
    product: String,
    seat_limited: bool,
    total: u64,
    assigned: u64,
    available: u64,
    alert_threshold: Option<u32>,
    alert_raised: bool,
    top_up: Option<Value>,
}

async fn list_pools(
    cli: &Cli,
    workspace: Option<&str>,
    at: Option<NaiveDate>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let wanted = workspace.map(workspace_id).transpose()?;
    let mut state = LicenceState::default();
    cli.fold(&mut [&mut state]).await?;
    if let Some(w) = &wanted {
        if !state.workspaces.contains_key(w) {
            bail!("workspace `{w}` does not exist");
        }
    }
    let on = at.unwrap_or_else(|| Utc::now().date_naive());
    let month = Month::containing(on);
    let mut lines = vec![];
    for ws in state.workspaces.values().filter(|ws| wanted.as_ref().is_none_or(|w| &ws.id == w)) {
        for pool in ws.pools() {
            let total = ws.pool_total_on(&pool, on);
            let assigned = ws.pool_assigned(&pool);
            let settings = ws.settings.get(&pool).copied().unwrap_or_default();
            lines.push(PoolLine {
                workspace: ws.id.to_string(),
                organization: match &pool.scope {
                    PoolScope::Workspace => None,
                    PoolScope::Organization(o) => Some(o.to_string()),
                },
                sku: pool.sku.to_string(),
                product: state.catalog.product(&pool.sku).map(|p| p.name.clone()).unwrap_or_default(),
                seat_limited: state.catalog.is_seat_limited(&pool.sku),
                total,
                assigned,
                available: total.saturating_sub(assigned),
                alert_threshold: settings.alert_threshold,
                alert_raised: ws.alerts_raised.contains(&pool),
                top_up: settings.top_up.map(|t| {
                    json!({
                        "vacant_seat_threshold": t.vacant_seat_threshold,
                        "max_per_top_up": t.max_per_top_up,
                        "max_per_month": t.max_per_month,
                        "topped_up_this_month": ws.top_ups_by_month.get(&(pool.clone(), month)).copied().unwrap_or(0),
                    })
                }),
            });
        }
    }
    if json {
        write_json(out, &json!({ "on": on, "pools": lines }))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "licence pools on {on}")?;
    if lines.is_empty() {
        writeln!(out, "no licence pools yet")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["Workspace", "Organization", "SKU", "Total", "Assigned", "Available", "Alert", "Top-up"]);
    for l in &lines {
        let alert = match (l.alert_threshold, l.alert_raised) {
            (Some(a), true) => format!("LOW (≤ {a})"),
            (Some(a), false) => format!("at ≤ {a}"),
            (None, _) => "-".to_owned(),
        };
        let top_up = l.top_up.as_ref().map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    "to {} free, ≤ {}/top-up, {} of {} this month",
                    t["vacant_seat_threshold"], t["max_per_top_up"], t["topped_up_this_month"], t["max_per_month"]
                )
            },
        );
        let available = if l.seat_limited { l.available.to_string() } else { format!("{} (not capped)", l.available) };
        t.add_row(vec![
            Cell::new(&l.workspace),
            Cell::new(l.organization.as_deref().unwrap_or("(workspace)")),
            Cell::new(&l.sku),
            right(l.total),
            right(l.assigned),
            right(available),
            Cell::new(alert),
            Cell::new(top_up),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(ExitCode::SUCCESS)
}

/// The audit entries of one workspace's own stream, and of nothing else:
/// `licences log` holds one workspace's history, not the whole ledger's.
struct WorkspaceAudit {
    stream: StreamId,
    entries: Vec<AuditEntry>,
}

impl Projection for WorkspaceAudit {
    fn name(&self) -> &'static str {
        "workspace-audit"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        if *r.stream == self.stream {
            self.entries.push(audit::entry(r));
        }
    }
}

/// Every audit entry of one workspace about one SKU: entries naming the SKU,
/// and entries about its subscriptions (deactivation, trial end, end).
fn sku_history<'a>(entries: &'a [AuditEntry], sku: &str) -> Vec<&'a AuditEntry> {
    let sku_label = format!("sku:{sku}");
    let subscriptions: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.event_type == "SubscriptionCreated" && e.entities.iter().any(|l| *l == sku_label))
        .flat_map(|e| e.entities.iter().filter(|l| l.starts_with("subscription:")).map(|l| l.as_str()))
        .collect();
    entries
        .iter()
        .filter(|e| e.entities.iter().any(|l| *l == sku_label || subscriptions.contains(l.as_str())))
        .collect()
}

async fn log(cli: &Cli, workspace: &str, sku: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let ws_id = workspace_id(workspace)?;
    let sku_id = sku_id(sku)?;
    let (catalog, _) = cli.workspace(&ws_id).await?;
    if catalog.product(&sku_id).is_none() {
        bail!("product `{sku_id}` is not in the catalog");
    }
    let mut audit = WorkspaceAudit { stream: StreamId::Workspace(ws_id.clone()), entries: Vec::new() };
    cli.fold(&mut [&mut audit]).await?;
    let entries = sku_history(&audit.entries, sku_id.as_str());
    if json {
        write_json(out, &json!({ "workspace": ws_id.as_str(), "sku": sku_id.as_str(), "entries": entries }))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "licence log of {sku_id} in workspace {ws_id}")?;
    if entries.is_empty() {
        writeln!(out, "no licence history yet")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["#", "Recorded", "Effective", "Event", "Actor", "Channel", "What"]);
    for e in entries {
        t.add_row(vec![
            right(e.position),
            Cell::new(e.recorded_at.format("%Y-%m-%d %H:%M:%S")),
            Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(&e.event_type),
            Cell::new(&e.actor),
            Cell::new(&e.channel),
            Cell::new(&e.summary),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(ExitCode::SUCCESS)
}

fn attempt_text(outcome: &AttemptOutcome) -> String {
    match outcome {
        AttemptOutcome::ToppedUp { subscription, from, to, cap: None } => {
            format!("topped up {subscription} {from} → {to}")
        }
        AttemptOutcome::ToppedUp { subscription, from, to, cap: Some((needed, allowed)) } => {
            format!("topped up {subscription} {from} → {to}; a cap allowed {allowed} of the {needed} needed")
        }
        AttemptOutcome::CapReached { needed, month_used } => {
            format!("cap reached: {needed} needed, none allowed ({month_used} topped up this month)")
        }
        AttemptOutcome::AlreadyApplied => "already applied".to_owned(),
        AttemptOutcome::NothingToDo => "nothing to do".to_owned(),
        AttemptOutcome::Refused(why) => format!("refused: {why}"),
    }
}

async fn top_up(cli: &Cli, run_once: bool, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut manager = TopUpManager::new(cli.handler.clone());
    let report = if run_once {
        manager.run_to_head().await?
    } else {
        eprintln!("following live appends; stop with Ctrl-C (the checkpoint is saved whenever caught up)");
        manager.follow(std::future::pending()).await?
    };
    if json {
        let attempts: Vec<Value> = report
            .attempts
            .iter()
            .map(|a| {
                json!({
                    "workspace": a.workspace.as_str(),
                    "sku": a.pool.sku.as_str(),
                    "organization": match &a.pool.scope {
                        PoolScope::Workspace => None,
                        PoolScope::Organization(o) => Some(o.as_str()),
                    },
                    "trigger_event": a.trigger_event,
                    "command_id": a.command_id,
                    "outcome": attempt_text(&a.outcome),
                })
            })
            .collect();
        write_json(
            out,
            &json!({
                "position": report.position,
                "events_read": report.events_read,
                "topped_up": report.topped_up(),
                "caps_reached": report.caps_reached(),
                "attempts": attempts,
            }),
        )?;
    } else {
        writeln!(
            out,
            "top-up manager at position {}: {} live event(s) read, {} top-up(s), {} cap(s) reached",
            report.position,
            report.events_read,
            report.topped_up(),
            report.caps_reached()
        )?;
        for a in &report.attempts {
            writeln!(
                out,
                "  {} {} (trigger {}): {}",
                a.workspace,
                pool_text(&a.pool),
                a.trigger_event,
                attempt_text(&a.outcome)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// `notifications`
// ---------------------------------------------------------------------------

/// Run one `notifications` subcommand, printing to `out` (tables, or JSON when `json`).
pub async fn run_notifications(
    cmd: NotificationsCmd,
    store: Arc<dyn EventStore>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let cli = Cli::new(store);
    match cmd {
        NotificationsCmd::List { workspace, state } => {
            let wanted = workspace.as_deref().map(workspace_id).transpose()?;
            if let Some(w) = &wanted {
                cli.workspace(w).await?;
            }
            let mut book = Notifications::default();
            cli.fold(&mut [&mut book]).await?;
            let rows = book.list(wanted.as_ref().map(WorkspaceId::as_str), state);
            if json {
                write_json(out, &rows)?;
            } else {
                writeln!(out, "{}", notifications_table(&rows))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        NotificationsCmd::Deliver { to_file, stdout, limit } => {
            let limit = limit.unwrap_or(usize::MAX);
            let (report, printed) = match (to_file, stdout) {
                (Some(path), _) => {
                    let sink = FileSink::new(path);
                    (notify::deliver_pending(&cli.handler, &sink, limit).await?, vec![])
                }
                (None, true) => {
                    // Collected, then printed to `out`: what this command prints is its stdout.
                    let sink = CollectingSink::new();
                    let report = notify::deliver_pending(&cli.handler, &sink, limit).await?;
                    (report, sink.delivered())
                }
                (None, false) => bail!("say where to deliver: --to-file FILE or --stdout"),
            };
            for n in &printed {
                writeln!(out, "{}", notification_line(n))?;
            }
            let failures: Vec<Value> = report
                .attempts
                .iter()
                .filter_map(|a| match &a.result {
                    notify::AttemptResult::Failed { reason, given_up } => Some(json!({
                        "notification": a.notification, "attempt": a.attempt, "reason": reason, "given_up": given_up,
                    })),
                    _ => None,
                })
                .collect();
            let summary =
                format!("{} delivered, {} failed ({} given up)", report.sent(), report.failed(), report.given_up());
            if json && printed.is_empty() {
                write_json(
                    out,
                    &json!({ "sent": report.sent(), "failed": report.failed(), "given_up": report.given_up(), "failures": failures }),
                )?;
            } else {
                // With --stdout the notifications are the output; the summary goes to stderr.
                let text = format!("{summary}\n");
                let failure_lines: String = report
                    .attempts
                    .iter()
                    .filter_map(|a| match &a.result {
                        notify::AttemptResult::Failed { reason, given_up } => Some(format!(
                            "  {} attempt {}{}: {reason}\n",
                            a.notification,
                            a.attempt,
                            if *given_up { " (given up)" } else { "" }
                        )),
                        _ => None,
                    })
                    .collect();
                if printed.is_empty() {
                    write!(out, "{text}{failure_lines}")?;
                } else {
                    eprint!("{text}{failure_lines}");
                }
            }
            Ok(if report.failed() > 0 { ExitCode::from(DELIVERY_FAILED) } else { ExitCode::SUCCESS })
        }
        NotificationsCmd::Recipients { command } => recipients(&cli, command, json, out).await,
    }
}

fn notifications_table(rows: &[NotificationRow]) -> String {
    if rows.is_empty() {
        return "no notifications".to_owned();
    }
    let mut t = table(&["Created", "Workspace", "Kind", "To", "Subject", "Delivery"]);
    for r in rows {
        let n = &r.notification;
        t.add_row(vec![
            Cell::new(n.created_at.format("%Y-%m-%d %H:%M:%S")),
            Cell::new(&n.workspace),
            Cell::new(&n.kind),
            Cell::new(format!("{} <{}>", n.recipient, n.email)),
            Cell::new(&n.subject),
            Cell::new(r.delivery.describe()),
        ]);
    }
    t.to_string()
}

async fn recipients(cli: &Cli, cmd: RecipientsCmd, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        RecipientsCmd::List { workspace } => {
            let ws_id = workspace_id(&workspace)?;
            let (_, ws) = cli.workspace(&ws_id).await?;
            let rows: Vec<Value> = ws
                .recipients
                .values()
                .map(|r| {
                    json!({
                        "recipient": r.id.as_str(),
                        "email": r.email,
                        "kinds": r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if json {
                write_json(out, &rows)?;
            } else if rows.is_empty() {
                writeln!(out, "workspace {ws_id} has no notification recipients")?;
            } else {
                let mut t = table(&["Recipient", "Email", "Receives"]);
                for r in ws.recipients.values() {
                    let kinds: Vec<&str> = r.kinds.iter().map(|k| k.as_str()).collect();
                    t.add_row(vec![Cell::new(&r.id), Cell::new(&r.email), Cell::new(kinds_text(&kinds))]);
                }
                writeln!(out, "{t}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RecipientsCmd::Add { workspace, recipient, email, kinds, at } => {
            let ws_id = workspace_id(&workspace)?;
            let recipient = recipient_id(&recipient)?;
            let kinds = parse_kinds(&kinds)?;
            let heading = format!(
                "recipient {recipient} <{email}> added to workspace {ws_id}; receives {}",
                kinds_text(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
            );
            let events =
                cli.send(&ws_id, at, WorkspaceCommand::AddNotificationRecipient { recipient, email, kinds }).await?;
            report_change(out, json, &heading, &events)?;
            Ok(ExitCode::SUCCESS)
        }
        RecipientsCmd::Settings { workspace, recipient, kinds, at } => {
            let ws_id = workspace_id(&workspace)?;
            let recipient = recipient_id(&recipient)?;
            let kinds = parse_kinds(&kinds)?;
            let heading = format!(
                "recipient {recipient} of workspace {ws_id} now receives {}",
                kinds_text(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
            );
            let events =
                cli.send(&ws_id, at, WorkspaceCommand::ChangeNotificationSettings { recipient, kinds }).await?;
            report_change(out, json, &heading, &events)?;
            Ok(ExitCode::SUCCESS)
        }
        RecipientsCmd::Remove { workspace, recipient, at } => {
            let ws_id = workspace_id(&workspace)?;
            let recipient = recipient_id(&recipient)?;
            let heading = format!("recipient {recipient} removed from workspace {ws_id}");
            let events = cli.send(&ws_id, at, WorkspaceCommand::RemoveNotificationRecipient { recipient }).await?;
            report_change(out, json, &heading, &events)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
