//! `seatledger overview`, `seatledger users export --csv` and
//! `seatledger licensing-report`: the Billing page overview, the Licensing
//! page's user export and the versioned licensing reporting API (seed 000),
//! all read from [`Directory`], folded from everything the ledger knows now.
//!
//! What counts and why is documented in `docs/reporting-api.md`.

use crate::render::{right, write_json};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};
use seatledger_app::invoicing::{fold_known, AsOf};
use seatledger_domain::WorkspaceId;
use seatledger_projections::directory::{
    ApiVersion, BillingOverview, Directory, ReportScope, UserCounts, UserRow, USER_CSV_HEADER,
};
use seatledger_store::EventStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `overview`: modules per regular and guest user, per workspace.
#[derive(Debug, Clone, Args)]
pub struct OverviewArgs {
    /// One workspace; every workspace when left out.
    #[arg(long)]
    pub workspace: Option<String>,
}

/// `users …`
#[derive(Debug, Clone, Subcommand)]
pub enum UsersCmd {
    /// Export a workspace's active and inactive users as CSV (UTF-8, RFC 4180).
    Export {
        #[arg(long)]
        workspace: String,
        /// Write CSV (the only format of the export).
        #[arg(long, required = true)]
        csv: bool,
        /// Write to this file instead of stdout; replaced whole, never half written.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `licensing-report`: the licensing reporting API's JSON.
#[derive(Debug, Clone, Args)]
pub struct LicensingReportArgs {
    /// The API version: 3.5 (legacy plans and modules) or 4.0 (modules only).
    #[arg(long, value_name = "3.5|4.0")]
    pub version: ApiVersion,
    /// One workspace; every workspace when left out.
    #[arg(long)]
    pub workspace: Option<String>,
}

/// Fold the directory from everything stored now (no checkpoint is written).
async fn directory(store: &Arc<dyn EventStore>) -> anyhow::Result<Directory> {
    let mut directory = Directory::default();
    fold_known(store.as_ref(), AsOf::Head, &mut [&mut directory]).await?;
    Ok(directory)
}

fn workspace_id(text: &str) -> anyhow::Result<WorkspaceId> {
    WorkspaceId::new(text).map_err(|e| anyhow!("--workspace {text:?} is not a workspace id: {e}"))
}

/// Print the Billing page overview of one workspace or all.
pub async fn run_overview(
    args: OverviewArgs,
    store: Arc<dyn EventStore>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let directory = directory(&store).await?;
    let overviews = match &args.workspace {
        Some(w) => vec![directory.billing_overview(&workspace_id(w)?)?],
        None => directory.billing_overviews(),
    };
    if json {
        write_json(out, &serde_json::json!({ "workspaces": overviews }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if overviews.is_empty() {
        writeln!(out, "no workspaces yet")?;
    }
    for (i, overview) in overviews.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        write!(out, "{}", overview_text(overview))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One workspace's overview as a table, with what it does not count said below.
pub fn overview_text(o: &BillingOverview) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled).set_header(vec![
        "Module",
        "Regular users",
        "Guest users",
    ]);
    for m in &o.modules {
        t.add_row(vec![Cell::new(format!("{} ({})", m.name, m.sku)), right(m.users.regular), right(m.users.guest)]);
    }
    t.add_row(vec![Cell::new("Total"), right(o.totals.regular), right(o.totals.guest)]);
    let mut text = format!("Billing overview of {} ({}): active users per module\n{t}\n", o.workspace, o.name);
    let u = &o.users_with_modules;
    text.push_str(&format!("Users with at least one module: {} regular, {} guest\n", u.regular, u.guest));
    if inactive(&o.totals) {
        text.push_str(&format!(
            "Inactive holders, not counted above: {} regular, {} guest ({} regular and {} guest module assignments)\n",
            u.inactive_regular, u.inactive_guest, o.totals.inactive_regular, o.totals.inactive_guest
        ));
    }
    text
}

fn inactive(c: &UserCounts) -> bool {
    c.inactive_regular > 0 || c.inactive_guest > 0
}

/// Run a `users` subcommand. The export is CSV whatever `json` says.
pub async fn run_users(
    cmd: UsersCmd,
    store: Arc<dyn EventStore>,
    _json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        UsersCmd::Export { workspace, csv: _, out: file } => {
            let ws = workspace_id(&workspace)?;
            let rows = directory(&store).await?.user_rows(&ws)?;
            let bytes = users_csv(&rows)?;
            match file {
                Some(path) => {
                    write_whole(&path, &bytes)?;
                    writeln!(out, "exported {} users of workspace `{ws}` to {}", rows.len(), path.display())?;
                }
                None => out.write_all(&bytes)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The user export as CSV: the header row, then one row per user, CRLF
/// line ends (RFC 4180), fields quoted when they need it.
pub fn users_csv(rows: &[UserRow]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(vec![]);
    w.write_record(USER_CSV_HEADER)?;
    for row in rows {
        w.write_record(row.csv_record())?;
    }
    w.into_inner().map_err(|e| anyhow!("writing the CSV: {}", e.error()))
}

/// Write a file whole: to a sibling first, then renamed over the target.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().ok_or_else(|| anyhow!("--out {} is not a file name", path.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = path.with_file_name(partial_name);
    let written = std::fs::File::create(&partial)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&partial, path));
    if let Err(e) = written {
        // Best effort: the partial file may not exist.
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Print the licensing report of one workspace or all, as JSON (whatever `json` says).
pub async fn run_licensing_report(
    args: LicensingReportArgs,
    store: Arc<dyn EventStore>,
    _json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let scope = match &args.workspace {
        Some(w) => ReportScope::Workspace(workspace_id(w)?),
        None => ReportScope::All,
    };
    let report = directory(&store).await?.licensing_report(args.version, &scope)?;
    write_json(out, &report)?;
    Ok(ExitCode::SUCCESS)
}
