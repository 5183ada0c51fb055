//! `seatledger`: the event-sourced licensing ledger on the command line.

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use seatledger::invoice_cli::{self, AsOfArgs, InvoiceCmd};
use seatledger::render;
use seatledger::scenario::{run_lines, to_command, LineOutcome};
use seatledger::store_url::{open_store, StoreUrl, DEFAULT_STORE};
use seatledger_app::{invoicing, transfer};
use seatledger_app::{AppError, CommandHandler, ProjectionRunner, V7Ids};
use seatledger_projections::audit::{AuditLog, AuditQuery, AuditSearch, AuditTail};
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::licence_state::LicenceState;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, SystemClock};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc rather than the system allocator: replaying a ledger allocates
/// and frees small strings and maps by the million, and with glibc's malloc
/// that was 40 % of a replay (docs/benchmarks.md, "Levers").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "seatledger", version, about = "An event-sourced licensing ledger")]
struct Cli {
    /// Where the ledger lives: sqlite:PATH, memory:, postgres://… or kurrentdb://… (esdb://, +discover).
    #[arg(long, global = true, env = "SEATLEDGER_STORE", default_value = DEFAULT_STORE)]
    store: StoreUrl,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the main job: apply the seed scenarios and show what the ledger knows.
    Demo,
    /// Create the store if it does not exist.
    Init,
    /// Apply a command file (JSON Lines); all or nothing unless --continue-on-error.
    Apply {
        file: PathBuf,
        #[arg(long)]
        continue_on_error: bool,
        /// Business time for lines without `at` (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Import events written by `export`; all or nothing unless --continue-on-error.
    Import {
        file: PathBuf,
        #[arg(long)]
        continue_on_error: bool,
    },
    /// Write every stored event as JSON Lines.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Licence state per pool.
    State {
        /// The day to evaluate pools on (YYYY-MM-DD); defaults to today (UTC).
        #[arg(long)]
        at: Option<NaiveDate>,
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// The licence change log.
    Changelog {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        sku: Option<String>,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// Query the audit log.
    Audit {
        #[arg(long)]
        workspace: Option<String>,
        /// An entity such as user:u1, sku:HYBRID, subscription:s1 (or a bare id).
        #[arg(long)]
        entity: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        recorded_from: Option<DateTime<Utc>>,
        #[arg(long)]
        recorded_until: Option<DateTime<Utc>>,
        #[arg(long)]
        effective_from: Option<DateTime<Utc>>,
        #[arg(long)]
        effective_until: Option<DateTime<Utc>>,
        /// Show entries after this position (the cursor printed with the previous page).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// Invoices: preview, issue, show, explain, reproduce, diff and correct.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCmd,
    },
    /// Licence pools: list, add licences, alert and top-up settings, logs, top-ups.
    Licences {
        #[command(subcommand)]
        command: seatledger::licence_cli::LicencesCmd,
    },
    /// Notifications: list, deliver, recipients.
    Notifications {
        #[command(subcommand)]
        command: seatledger::licence_cli::NotificationsCmd,
    },
    /// Licence reports: available licences, utilisation, top-ups and additions.
    Report {
        #[command(subcommand)]
        command: seatledger::report_cli::ReportCmd,
    },
    /// The billing overview: modules per regular and guest user, per workspace.
    Overview(seatledger::directory_cli::OverviewArgs),
    /// Users of a workspace (CSV export).
    Users {
        #[command(subcommand)]
        command: seatledger::directory_cli::UsersCmd,
    },
    /// Licensing reporting data, versions 3.5 (legacy plans and modules) and 4.0 (modules only), as JSON.
    LicensingReport(seatledger::directory_cli::LicensingReportArgs),
    /// Walk the hash chain and name the first broken link.
    Verify,
    /// Keep read models (audit log, licence changes, invoices) in PostgreSQL
    /// tables that reporting tools query directly; each page is written in one
    /// transaction with its checkpoint.
    ReadModels {
        /// The PostgreSQL database for the tables (postgres://…); it may be
        /// the ledger's own database or another one.
        #[arg(long)]
        database: String,
        /// Empty the tables and fold the whole ledger again.
        #[arg(long)]
        rebuild: bool,
        /// After catching up, keep folding new events until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// Copy a whole ledger to another backend, keeping ids, versions and both
    /// timestamps. Resumable: run it again after an interruption.
    Migrate {
        /// The ledger to copy (any store URL; usually sqlite:PATH).
        #[arg(long)]
        from: StoreUrl,
        /// Where to copy it (postgres://…, kurrentdb://…, sqlite:PATH).
        #[arg(long)]
        to: StoreUrl,
    },
    /// Drop every projection checkpoint and rebuild from zero.
    Rebuild,
}

/// Print a line to stdout, failing (instead of panicking) when stdout is gone.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

fn progress_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    bar
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    render::write_json(&mut std::io::stdout().lock(), value)
}

struct Ctx {
    store: Arc<dyn EventStore>,
    json: bool,
}

impl Ctx {
    fn handler(&self) -> CommandHandler {
        CommandHandler::new(self.store.clone(), Arc::new(V7Ids))
    }

    async fn project(&self, projections: &mut [&mut dyn Projection]) -> anyhow::Result<()> {
        ProjectionRunner::new(self.store.clone()).run(projections, &mut |_, _| {}).await?;
        Ok(())
    }

    /// Project what the ledger knew `as_of`: from the checkpoints when
    /// reading everything, else a fresh fold that saves no checkpoint.
    async fn project_as_of(&self, as_of: &AsOfArgs, projections: &mut [&mut dyn Projection]) -> anyhow::Result<()> {
        if as_of.is_head() {
            return self.project(projections).await;
        }
        as_of.check(self.store.as_ref()).await?;
        invoice_cli::fold_as_of(self.store.as_ref(), as_of.as_of(), projections).await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEATLEDGER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        // A reader that stopped reading (`| head`) is not an error. Some writers
        // (csv, table renderers) hand the IO error on as text, so the message
        // is checked too.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    || c.to_string().ends_with("Broken pipe (os error 32)")
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Cmd::Migrate { from, to } = &cli.command {
        return migrate(from, to, cli.json).await;
    }
    let store = open_store(&cli.store, Arc::new(SystemClock)).await?;
    let ctx = Ctx { store, json: cli.json };
    match cli.command {
        Cmd::Demo => demo(&ctx, &cli.store).await,
        Cmd::Init => {
            say!("store ready at {} ({} events)", cli.store, ctx.store.head_position().await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply { file, continue_on_error, at } => apply(&ctx, &file, continue_on_error, at).await,
        Cmd::Import { file, continue_on_error } => import(&ctx, &file, continue_on_error).await,
        Cmd::Export { out } => {
            let mut progress = |_: u64, _: u64| {};
            let count = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let n = transfer::export(ctx.store.as_ref(), &mut w, &mut progress).await?;
                    eprintln!("exported {n} events to {}", path.display());
                    n
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout());
                    transfer::export(ctx.store.as_ref(), &mut w, &mut progress).await?
                }
            };
            tracing::info!(count, "exported");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::State { at, workspace, as_of } => {
            let mut state = LicenceState::default();
            let mut reports = seatledger_projections::reports::LicenceReports::default();
            ctx.project_as_of(&as_of, &mut [&mut state, &mut reports]).await?;
            let on = at.unwrap_or_else(|| Utc::now().date_naive());
            let mut rows: Vec<_> = state
                .pools_on(on)
                .into_iter()
                .filter(|r| workspace.as_ref().is_none_or(|w| &r.workspace == w))
                .collect();
            // Seats as they stood at the end of that day in business time, not
            // as they stand now: `--at` asks for the whole pool on that day.
            let day_end = on.succ_opt().unwrap_or(on).and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
            for row in &mut rows {
                let pool = seatledger_projections::reports::ReportPool::new(
                    row.workspace.parse()?,
                    row.organization.as_deref().map(str::parse).transpose()?,
                    row.sku.parse()?,
                );
                if let Ok(timeline) = reports.assigned_timeline(&pool) {
                    row.assigned = timeline.iter().take_while(|(t, _)| *t < day_end).last().map_or(0, |(_, n)| *n);
                    row.available = row.total.saturating_sub(row.assigned);
                }
            }
            if ctx.json {
                let mut value = serde_json::json!({ "on": on, "pools": rows });
                if let Some(p) = as_of.as_of_position {
                    value["as_of_position"] = p.into();
                }
                if let Some(t) = as_of.as_of_recorded {
                    value["as_of_recorded"] = t.to_rfc3339().into();
                }
                print_json(&value)?;
            } else {
                match as_of.describe() {
                    Some(known) => say!("licence state on {on}, {known}"),
                    None => say!("licence state on {on}"),
                }
                say!("{}", render::pools(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Changelog { workspace, sku, as_of } => {
            let mut log = ChangeLog::default();
            ctx.project_as_of(&as_of, &mut [&mut log]).await?;
            let entries: Vec<_> = log.filtered(workspace.as_deref(), sku.as_deref()).collect();
            if ctx.json {
                print_json(&entries)?;
            } else {
                say!("{}", render::change_log(entries));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            workspace,
            entity,
            actor,
            event_type,
            recorded_from,
            recorded_until,
            effective_from,
            effective_until,
            after,
            limit,
            as_of,
        } => {
            // One pass from the cursor, holding one page: never the whole log.
            as_of.check(ctx.store.as_ref()).await?;
            let query = AuditQuery {
                workspace,
                entity,
                actor,
                event_type,
                recorded_from,
                recorded_until,
                effective_from,
                effective_until,
                after_position: after,
                limit,
            };
            let mut search = AuditSearch::new(query);
            invoicing::fold_known_after(ctx.store.as_ref(), after, as_of.as_of(), &mut [&mut search]).await?;
            let page = search.into_page();
            if ctx.json {
                print_json(&page)?;
            } else {
                say!("{}", render::audit(&page.entries));
                if let Some(next) = page.next_after {
                    say!("more: --after {next}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Invoice { command } => invoice_cli::run(&ctx.store, ctx.json, command, &mut std::io::stdout()).await,
        Cmd::Licences { command } => {
            seatledger::licence_cli::run_licences(command, ctx.store.clone(), ctx.json, &mut std::io::stdout()).await
        }
        Cmd::Notifications { command } => {
            seatledger::licence_cli::run_notifications(command, ctx.store.clone(), ctx.json, &mut std::io::stdout())
                .await
        }
        Cmd::Report { command } => {
            seatledger::report_cli::run_report(command, ctx.store.clone(), ctx.json, &mut std::io::stdout()).await
        }
        Cmd::Overview(args) => {
            seatledger::directory_cli::run_overview(args, ctx.store.clone(), ctx.json, &mut std::io::stdout()).await
        }
        Cmd::Users { command } => {
            seatledger::directory_cli::run_users(command, ctx.store.clone(), ctx.json, &mut std::io::stdout()).await
        }
        Cmd::LicensingReport(args) => {
            seatledger::directory_cli::run_licensing_report(args, ctx.store.clone(), ctx.json, &mut std::io::stdout())
                .await
        }
        Cmd::ReadModels { database, rebuild, follow } => read_models(&ctx, &database, rebuild, follow).await,
        Cmd::Migrate { .. } => unreachable!("migrate is run before a store is opened"),
        Cmd::Verify => {
            let report = ctx.store.verify().await?;
            if ctx.json {
                print_json(&report)?;
            } else {
                say!("{}", render::verify(&report));
            }
            Ok(if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Cmd::Rebuild => {
            let mut state = LicenceState::default();
            let mut changes = ChangeLog::default();
            let bar = progress_bar("rebuilding");
            let report = ProjectionRunner::new(ctx.store.clone())
                .rebuild(&mut [&mut state, &mut changes], &mut |done, head| {
                    bar.set_length(head);
                    bar.set_position(done);
                })
                .await?;
            bar.finish_and_clear();
            // `audit` reads the log itself and keeps no checkpoint. Earlier
            // versions saved the whole audit log beside one; drop it, since
            // nothing reads it and on a large ledger it is most of the file.
            ctx.store.delete_checkpoint(AuditLog::default().name()).await?;
            if ctx.json {
                print_json(&serde_json::json!({ "position": report.position, "events": report.events_read }))?;
            } else {
                say!("rebuilt licence state and change log from {} events", report.events_read);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    BufReader::new(file).lines().collect::<Result<_, _>>().with_context(|| format!("reading {}", path.display()))
}

async fn apply(ctx: &Ctx, file: &Path, continue_on_error: bool, at: Option<DateTime<Utc>>) -> anyhow::Result<ExitCode> {
    let lines = read_lines(file)?;
    let now = at.unwrap_or_else(Utc::now);
    let mut parsed = vec![];
    let mut refused = vec![];
    for (i, text) in lines.iter().enumerate() {
        if text.trim().is_empty() || text.trim_start().starts_with("//") {
            continue;
        }
        match seatledger_codec::parse_command(text) {
            Ok(envelope) => {
                let (command, meta) = to_command(envelope, text, now, "cli", "cli");
                parsed.push((i + 1, command, meta));
            }
            Err(e) => refused.push((i + 1, e.to_string())),
        }
    }
    let report = if refused.is_empty() || continue_on_error {
        match ctx.handler().apply_all(&parsed, continue_on_error).await {
            Ok(report) => Some(report),
            Err(AppError::FileRejected(lines)) => {
                refused.extend(lines.into_iter().map(|r| (r.line, r.error)));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    if let Some(report) = &report {
        refused.extend(report.rejected.iter().map(|r| (r.line, r.error.clone())));
    }
    refused.sort();
    for (line, error) in &refused {
        eprintln!("{}:{line}: {error}", file.display());
    }
    match report {
        None => {
            eprintln!("{}: {} line(s) refused; nothing was appended", file.display(), refused.len());
            Ok(ExitCode::FAILURE)
        }
        Some(r) => {
            if ctx.json {
                print_json(&serde_json::json!({
                    "applied": r.applied, "already_applied": r.already_applied, "unchanged": r.unchanged,
                    "events": r.events_appended, "refused": refused.len(),
                }))?;
            } else {
                say!(
                    "{}: {} command(s) applied ({} events), {} already applied, {} unchanged, {} refused",
                    file.display(),
                    r.applied,
                    r.events_appended,
                    r.already_applied,
                    r.unchanged,
                    refused.len()
                );
            }
            Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
    }
}

async fn import(ctx: &Ctx, path: &Path, continue_on_error: bool) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let (events, rejected) = match transfer::check_file(ctx.store.as_ref(), &mut reader, continue_on_error).await {
        Ok(checked) => checked,
        Err(transfer::TransferError::Rejected(rejected)) => {
            for r in &rejected {
                eprintln!("{}:{}: {}", path.display(), r.line, r.error);
            }
            eprintln!("{}: {} line(s) refused; nothing was imported", path.display(), rejected.len());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    for r in &rejected {
        eprintln!("{}:{}: {}", path.display(), r.line, r.error);
    }
    let bar = progress_bar("importing");
    bar.set_length(events.len() as u64);
    let outcome = transfer::import_events(ctx.store.as_ref(), events, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    if ctx.json {
        print_json(&serde_json::json!({
            "imported": outcome.imported, "skipped": outcome.skipped, "refused": rejected.len(),
        }))?;
    } else {
        say!(
            "{}: {} events imported, {} already present, {} line(s) refused",
            path.display(),
            outcome.imported,
            outcome.skipped,
            rejected.len()
        );
    }
    Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

async fn read_models(ctx: &Ctx, database: &str, rebuild: bool, follow: bool) -> anyhow::Result<ExitCode> {
    use seatledger_readmodels_postgres::PgReadModels;
    let mut models = PgReadModels::connect(database).await?;
    let bar = progress_bar(if rebuild { "rebuilding read models" } else { "updating read models" });
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = if rebuild {
        models.rebuild(ctx.store.as_ref(), &mut progress).await?
    } else {
        models.catch_up(ctx.store.as_ref(), None, &mut progress).await?
    };
    bar.finish_and_clear();
    let database = seatledger_store::redact_url(database);
    if ctx.json {
        print_json(&serde_json::json!({ "database": database, "events": report.events, "position": report.position }))?;
    } else {
        say!("read models in {database}: {} events folded, at position {}", report.events, report.position);
    }
    if follow {
        say!("following new events; Ctrl-C stops");
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let followed = models.follow(ctx.store.as_ref(), std::time::Duration::from_millis(500), stop).await?;
        say!("stopped: {} more events folded, at position {}", followed.events, followed.position);
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(from_url: &StoreUrl, to_url: &StoreUrl, json: bool) -> anyhow::Result<ExitCode> {
    if from_url == to_url {
        bail!("--from and --to name the same store ({from_url}); nothing to migrate");
    }
    if let StoreUrl::Sqlite(path) = from_url {
        if !path.exists() {
            bail!("the source ledger {} does not exist", path.display());
        }
    }
    let from = open_store(from_url, Arc::new(SystemClock)).await?;
    let to = open_store(to_url, Arc::new(SystemClock)).await?;
    let bar = progress_bar("migrating");
    let report = transfer::migrate(from.as_ref(), to.as_ref(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await
    .with_context(|| format!("migrating {from_url} to {to_url}"))?;
    bar.finish_and_clear();
    if json {
        print_json(&report)?;
    } else {
        if report.resumed_after > 0 {
            say!("resumed after source position {}", report.resumed_after);
        }
        say!(
            "migrated {from_url} to {to_url}: {} events copied, {} already there; {} events in the source, \
             hash chain intact in the target ({} events checked)",
            report.copied,
            report.skipped,
            report.source_events,
            report.target_verify.checked
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(ctx: &Ctx, url: &StoreUrl) -> anyhow::Result<ExitCode> {
    let handler = ctx.handler();
    say!("seatledger demo on {url}\n");
    let catalog = run_lines(
        &handler,
        seatledger::scenario::CATALOG,
        seatledger::scenario::SEED_SCENARIOS[0].default_at(),
        "demo",
    )
    .await?;
    if let Some((line, LineOutcome::Refused { error })) =
        catalog.iter().find(|(_, o)| matches!(o, LineOutcome::Refused { .. }))
    {
        bail!("the demo catalog was refused at line {line}: {error}");
    }
    let fresh = catalog.iter().filter(|(_, o)| !matches!(o, LineOutcome::AlreadyApplied)).count();
    say!("catalog: {} products, prices and bundles ({fresh} new)\n", catalog.len());
    for scenario in seatledger::scenario::SEED_SCENARIOS {
        // A scenario is applied once. Running its lines again would decide
        // the lines refused the first time against the state the later lines
        // left, and could accept them: the demo must never do that.
        if seatledger::scenario::already_applied(ctx.store.as_ref(), scenario.commands).await? {
            say!("seed {} — {}", scenario.seed, scenario.title);
            say!("  already in the ledger; nothing new\n");
            continue;
        }
        let mut applied = 0;
        let mut again = 0;
        let mut refusals = vec![];
        for (line, outcome) in run_lines(&handler, scenario.commands, scenario.default_at(), "demo").await? {
            match outcome {
                LineOutcome::Applied { .. } | LineOutcome::Unchanged => applied += 1,
                LineOutcome::AlreadyApplied => again += 1,
                LineOutcome::Refused { error } => refusals.push((line, error)),
            }
        }
        say!("seed {} — {}", scenario.seed, scenario.title);
        say!(
            "  {applied} commands applied, {again} already in the ledger, {} refused as the rules demand:",
            refusals.len()
        );
        for (line, error) in &refusals {
            say!("    line {line}: {error}");
        }
        say!();
    }
    let mut state = LicenceState::default();
    let mut changes = ChangeLog::default();
    let mut audit = AuditTail::new(12);
    ctx.project(&mut [&mut state, &mut changes, &mut audit]).await?;
    let on = seatledger::scenario::DEMO_DAY;
    say!("licence state on {on}");
    say!("{}\n", render::pools(&state.pools_on(on)));
    say!("licence change log");
    say!("{}\n", render::change_log(&changes.entries));
    say!("audit log, last {} of {} entries", audit.entries().count(), audit.count());
    say!("{}\n", render::audit(audit.entries()));
    let report = ctx.store.verify().await?;
    say!("{}", render::verify(&report));
    if !report.is_intact() {
        bail!("the hash chain is broken");
    }
    Ok(ExitCode::SUCCESS)
}
