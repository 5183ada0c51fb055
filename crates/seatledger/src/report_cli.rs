//! `seatledger report …`: the Licence Manager's reports (seed 002) as
//! tables, JSON, CSV, Excel workbooks and SVG charts.
//!
//! - `report licences`: one pool (workspace, SKU, and the top-level
//!   organization in assigned mode) over a day, an ISO week, a month or a
//!   custom range: available licences, time-weighted average utilisation,
//!   top-ups and licences added, and the daily series.
//! - `report additions`: the end-of-month report of licence additions
//!   (automatic top-ups and manual "add licences") per SKU.
//!
//! The numbers come from [`LicenceReports`], folded over the events known
//! `as_of` (everything by default). Definitions: `docs/reports.md`.

use crate::invoice_cli::{fold_as_of, AsOfArgs};
use crate::render::{right, table};
use anyhow::{anyhow, bail, Context};
use chrono::{Datelike, NaiveDate, SecondsFormat};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Cell, Table};
use rust_decimal::Decimal;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet};
use seatledger_domain::{Month, OrgId, Sku, WorkspaceId};
use seatledger_projections::reports::{
    Addition, AdditionsReport, LicenceReports, PoolReport, ReportPool, ReportRange, Tally,
};
use seatledger_store::EventStore;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Readable tables.
    Table,
    /// The report document as JSON.
    Json,
    /// Comma-separated values, one row per day (licences) or per addition.
    Csv,
    /// An Excel workbook; needs --out.
    Xlsx,
}

/// The days a licence report covers: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(id = "period", required = true, multiple = false)]
pub struct PeriodArgs {
    /// One day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub day: Option<NaiveDate>,
    /// The ISO week (Monday to Sunday) containing this day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub week: Option<NaiveDate>,
    /// A calendar month.
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// The first day of a custom range (with --to; both days included).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
    pub from: Option<NaiveDate>,
}

impl PeriodArgs {
    /// The checked range: not inverted, at most 366 days.
    pub fn range(&self, to: Option<NaiveDate>) -> anyhow::Result<ReportRange> {
        let range = match (self.day, self.week, &self.month, self.from) {
            (Some(day), ..) => ReportRange::day(day),
            (_, Some(day), ..) => ReportRange::iso_week(day),
            (_, _, Some(month), _) => ReportRange::month(parse_month(month)?),
            (_, _, _, Some(from)) => {
                let to = to.ok_or_else(|| anyhow!("--from needs --to: a custom range names both its days"))?;
                ReportRange::custom(from, to)
            }
            _ => bail!("choose the report's days with --day, --week, --month or --from and --to"),
        };
        Ok(range?)
    }
}

/// Output options shared by both reports.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// table, json, csv or xlsx. Default: from --out's extension (.json,
    /// .csv, .xlsx), else json with --json, else table.
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl OutputArgs {
    fn format(&self, json: bool) -> ReportFormat {
        if let Some(f) = self.format {
            return f;
        }
        let extension = self.out.as_deref().and_then(Path::extension).and_then(|e| e.to_str());
        match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => ReportFormat::Json,
            Some("csv") => ReportFormat::Csv,
            Some("xlsx") => ReportFormat::Xlsx,
            _ if json => ReportFormat::Json,
            _ => ReportFormat::Table,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// One licence pool over a day, an ISO week, a month or a custom range:
    /// available licences, average utilisation, top-ups and licences added.
    Licences {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        sku: String,
        /// The top-level organization whose pool it is (assigned mode only).
        #[arg(long)]
        organization: Option<String>,
        #[command(flatten)]
        period: PeriodArgs,
        /// The last day of a custom range (with --from).
        #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
        to: Option<NaiveDate>,
        #[command(flatten)]
        output: OutputArgs,
        /// Also draw the daily utilisation and available licences as an SVG chart.
        #[arg(long, value_name = "FILE.svg")]
        chart: Option<PathBuf>,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// The end-of-month report of licence additions (automatic and manual) per SKU.
    Additions {
        #[arg(long)]
        workspace: String,
        /// The month, as YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        month: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
}

/// Run one `report` subcommand, printing to `out` (or writing `--out`).
pub async fn run_report(
    cmd: ReportCmd,
    store: Arc<dyn EventStore>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCmd::Licences { workspace, sku, organization, period, to, output, chart, as_of } => {
            let pool = ReportPool::new(
                WorkspaceId::new(workspace).context("--workspace")?,
                organization.map(OrgId::new).transpose().context("--organization")?,
                Sku::new(sku).context("--sku")?,
            );
            let range = period.range(to)?;
            let format = output.format(json);
            if format == ReportFormat::Xlsx && output.out.is_none() {
                bail!("--format xlsx writes a workbook: name the file with --out FILE.xlsx");
            }
            let reports = fold(&store, &as_of).await?;
            let report = reports.pool_report(&pool, range)?;
            match (format, &output.out) {
                (ReportFormat::Xlsx, Some(path)) => licences_xlsx(&report, path)?,
                (_, Some(path)) => {
                    let mut bytes = vec![];
                    write_licences(&report, format, &mut bytes)?;
                    write_file(path, &bytes)?;
                }
                (_, None) => write_licences(&report, format, out)?,
            }
            if let Some(path) = &output.out {
                note(out, format, &format!("wrote the licence report to {}", path.display()))?;
            }
            if let Some(path) = &chart {
                write_file(path, chart_svg(&report)?.as_bytes())?;
                note(out, format, &format!("wrote the chart to {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ReportCmd::Additions { workspace, month, output, as_of } => {
            let workspace = WorkspaceId::new(workspace).context("--workspace")?;
            let month = parse_month(&month)?;
            let format = output.format(json);
            if format == ReportFormat::Xlsx && output.out.is_none() {
                bail!("--format xlsx writes a workbook: name the file with --out FILE.xlsx");
            }
            let reports = fold(&store, &as_of).await?;
            let report = reports.additions_report(&workspace, month)?;
            match (format, &output.out) {
                (ReportFormat::Xlsx, Some(path)) => additions_xlsx(&report, path)?,
                (_, Some(path)) => {
                    let mut bytes = vec![];
                    write_additions(&report, format, &mut bytes)?;
                    write_file(path, &bytes)?;
                }
                (_, None) => write_additions(&report, format, out)?,
            }
            if let Some(path) = &output.out {
                note(out, format, &format!("wrote the additions report to {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn fold(store: &Arc<dyn EventStore>, as_of: &AsOfArgs) -> anyhow::Result<LicenceReports> {
    as_of.check(store.as_ref()).await?;
    let mut reports = LicenceReports::default();
    fold_as_of(store.as_ref(), as_of.as_of(), &mut [&mut reports]).await?;
    Ok(reports)
}

fn parse_month(text: &str) -> anyhow::Result<Month> {
    Month::parse(text).map_err(|e| anyhow!("--month: {e}"))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Say what was written to a file; on standard output only for people
/// (table format), so that JSON and CSV on standard output stay clean.
fn note(out: &mut dyn Write, format: ReportFormat, text: &str) -> anyhow::Result<()> {
    if format == ReportFormat::Table || format == ReportFormat::Xlsx {
        writeln!(out, "{text}")?;
    } else {
        eprintln!("{text}");
    }
    Ok(())
}

fn percent_text(p: Option<Decimal>) -> String {
    p.map_or_else(|| "n/a".to_owned(), |p| format!("{p}%"))
}

/// The one place report figures become floats: Excel keeps every number as
/// an IEEE double and the chart draws in `f64` coordinates. Only counts and
/// utilisation percentages pass through here, never money; the JSON and CSV
/// outputs keep the exact decimal text.
fn to_f64(d: Decimal) -> f64 {
    f64::try_from(d).unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------
// The licence report
// ---------------------------------------------------------------------------

fn write_licences(report: &PoolReport, format: ReportFormat, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        ReportFormat::Csv => licences_csv(report, out)?,
        ReportFormat::Table => writeln!(out, "{}", licences_table(report))?,
        ReportFormat::Xlsx => bail!("an Excel workbook is written to a file only: give --out FILE.xlsx"),
    }
    Ok(())
}

fn pool_title(report: &PoolReport) -> String {
    let org = report.organization.as_ref().map(|o| format!(", organization {o}")).unwrap_or_default();
    let product = if report.product.is_empty() { String::new() } else { format!(" ({})", report.product) };
    format!("workspace {}{org}, SKU {}{product}", report.workspace, report.sku)
}

fn tally_text(t: Tally) -> String {
    let unit = if t.licences == 1 { "licence" } else { "licences" };
    format!("{} ({} {unit})", t.count, t.licences)
}

/// The summary, the daily series and the additions, as tables.
pub fn licences_table(report: &PoolReport) -> String {
    let mut text = format!(
        "licence report — {}\n{} {} to {} ({} days)\n",
        pool_title(report),
        report.period.as_str(),
        report.start,
        report.end,
        report.days
    );
    let mut summary = table(&["Figure", "Value"]);
    let rows: Vec<(&str, String)> = vec![
        ("Available licences (end of range)", report.available_at_end.to_string()),
        ("Total licences (end of range)", report.total_at_end.to_string()),
        ("Assigned seats (end of range)", report.assigned_at_end.to_string()),
        ("Average utilisation (time-weighted)", percent_text(report.average_utilisation_percent)),
        ("Licence-days / assigned seat-days", format!("{} / {}", report.licence_days, report.assigned_seat_days)),
        ("Total top-ups (automatic + manual)", report.total_top_ups.to_string()),
        ("Total licences added (automatic + manual)", report.total_licences_added.to_string()),
        ("  automatic top-ups", tally_text(report.automatic)),
        ("  manual additions", tally_text(report.manual)),
        ("Order increases (not top-ups)", tally_text(report.order_increases)),
        ("Top-ups stopped by a cap", report.capped_top_ups.to_string()),
    ];
    for (name, value) in rows {
        summary.add_row(vec![Cell::new(name), right(value)]);
    }
    text.push_str(&summary.to_string());
    text.push('\n');
    let mut daily = table(&[
        "Day",
        "Total",
        "Assigned",
        "Available",
        "Utilisation",
        "Top-ups",
        "Added (automatic)",
        "Added (manual)",
        "Added (orders)",
    ]);
    for d in &report.daily {
        daily.add_row(vec![
            Cell::new(d.day),
            right(d.total),
            right(d.assigned),
            right(d.available),
            right(percent_text(d.utilisation_percent)),
            right(d.top_ups),
            right(d.automatic_added),
            right(d.manual_added),
            right(d.order_added),
        ]);
    }
    text.push_str(&daily.to_string());
    if !report.additions.is_empty() {
        text.push('\n');
        text.push_str(&additions_list(&report.additions).to_string());
    }
    text
}

fn additions_list(additions: &[Addition]) -> Table {
    let mut t = table(&["Effective", "SKU", "Kind", "Licences", "From → to", "Who", "Order", "Subscription"]);
    for a in additions {
        t.add_row(vec![
            Cell::new(a.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(&a.sku),
            Cell::new(a.kind.as_str()),
            right(a.licences),
            right(format!("{} → {}", a.from, a.to)),
            Cell::new(&a.ordered_by),
            Cell::new(a.order_reference.as_deref().unwrap_or("-")),
            Cell::new(&a.subscription),
        ]);
    }
    t
}

/// One CSV row: the whole range (`row` = `period`) or one day (`row` = `day`).
#[derive(Debug, Serialize)]
struct LicenceCsvRow<'a> {
    row: &'static str,
    workspace: &'a str,
    organization: Option<&'a str>,
    sku: &'a str,
    start: NaiveDate,
    end: NaiveDate,
    total: u64,
    assigned: u64,
    available: u64,
    utilisation_percent: Option<String>,
    top_ups: u64,
    licences_added: u64,
    automatic_added: u64,
    manual_added: u64,
    order_added: u64,
}

/// The period row first (values at the end of the range, the average
/// utilisation, the range's totals), then one row per day.
fn licences_csv(report: &PoolReport, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let base = |row, start, end| LicenceCsvRow {
        row,
        workspace: &report.workspace,
        organization: report.organization.as_deref(),
        sku: &report.sku,
        start,
        end,
        total: 0,
        assigned: 0,
        available: 0,
        utilisation_percent: None,
        top_ups: 0,
        licences_added: 0,
        automatic_added: 0,
        manual_added: 0,
        order_added: 0,
    };
    w.serialize(LicenceCsvRow {
        total: report.total_at_end,
        assigned: report.assigned_at_end,
        available: report.available_at_end,
        utilisation_percent: report.average_utilisation_percent.map(|p| p.to_string()),
        top_ups: report.total_top_ups,
        licences_added: report.total_licences_added,
        automatic_added: report.automatic.licences,
        manual_added: report.manual.licences,
        order_added: report.order_increases.licences,
        ..base("period", report.start, report.end)
    })?;
    for d in &report.daily {
        w.serialize(LicenceCsvRow {
            total: d.total,
            assigned: d.assigned,
            available: d.available,
            utilisation_percent: d.utilisation_percent.map(|p| p.to_string()),
            top_ups: d.top_ups,
            licences_added: d.automatic_added + d.manual_added,
            automatic_added: d.automatic_added,
            manual_added: d.manual_added,
            order_added: d.order_added,
            ..base("day", d.day, d.day)
        })?;
    }
    w.flush()?;
    Ok(())
}

fn excel_date(day: NaiveDate) -> anyhow::Result<ExcelDateTime> {
    // Report days are within 1970 … 9999, so each part fits.
    let (y, m, d) = (u16::try_from(day.year())?, u8::try_from(day.month())?, u8::try_from(day.day())?);
    ExcelDateTime::from_ymd(y, m, d).map_err(|e| anyhow!("{day} in Excel: {e}"))
}

struct Formats {
    bold: Format,
    date: Format,
    percent: Format,
    decimal: Format,
}

impl Formats {
    fn new() -> Self {
        Self {
            bold: Format::new().set_bold(),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            percent: Format::new().set_num_format("0.00"),
            decimal: Format::new().set_num_format("0.0000"),
        }
    }
}

fn xlsx(e: rust_xlsxwriter::XlsxError) -> anyhow::Error {
    anyhow!("writing the workbook: {e}")
}

fn header(sheet: &mut Worksheet, names: &[&str], f: &Formats) -> anyhow::Result<()> {
    for (col, name) in names.iter().enumerate() {
        sheet.write_string_with_format(0, u16::try_from(col)?, *name, &f.bold).map_err(xlsx)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(xlsx)?;
    Ok(())
}

fn additions_sheet(sheet: &mut Worksheet, additions: &[Addition], f: &Formats) -> anyhow::Result<()> {
    sheet.set_name("Additions").map_err(xlsx)?;
    header(
        sheet,
        &[
            "Effective (UTC)",
            "SKU",
            "Organization",
            "Kind",
            "Licences",
            "From",
            "To",
            "Ordered by",
            "Recorded by",
            "Order reference",
            "Subscription",
            "Trigger event",
        ],
        f,
    )?;
    for (i, a) in additions.iter().enumerate() {
        let row = u32::try_from(i + 1)?;
        sheet.write_string(row, 0, a.effective_at.format("%Y-%m-%d %H:%M:%S").to_string()).map_err(xlsx)?;
        sheet.write_string(row, 1, a.sku.as_str()).map_err(xlsx)?;
        sheet.write_string(row, 2, a.organization.as_deref().unwrap_or("")).map_err(xlsx)?;
        sheet.write_string(row, 3, a.kind.as_str()).map_err(xlsx)?;
        sheet.write_number(row, 4, a.licences as f64).map_err(xlsx)?;
        sheet.write_number(row, 5, a.from).map_err(xlsx)?;
        sheet.write_number(row, 6, a.to).map_err(xlsx)?;
        sheet.write_string(row, 7, a.ordered_by.as_str()).map_err(xlsx)?;
        sheet.write_string(row, 8, a.actor.as_str()).map_err(xlsx)?;
        sheet.write_string(row, 9, a.order_reference.as_deref().unwrap_or("")).map_err(xlsx)?;
        sheet.write_string(row, 10, a.subscription.as_str()).map_err(xlsx)?;
        sheet.write_string(row, 11, a.trigger_event.map(|t| t.to_string()).unwrap_or_default()).map_err(xlsx)?;
    }
    sheet.set_column_width(0, 20).map_err(xlsx)?;
    Ok(())
}

/// A workbook: `Summary` (one figure per row), `Daily` (the series) and
/// `Additions` (every addition in the range).
fn licences_xlsx(report: &PoolReport, path: &Path) -> anyhow::Result<()> {
    let f = Formats::new();
    let mut book = Workbook::new();

    let sheet = book.add_worksheet();
    sheet.set_name("Summary").map_err(xlsx)?;
    header(sheet, &["Figure", "Value"], &f)?;
    let texts = [
        ("Workspace", report.workspace.clone()),
        ("Organization", report.organization.clone().unwrap_or_default()),
        ("SKU", report.sku.clone()),
        ("Product", report.product.clone()),
        ("Period", report.period.as_str().to_owned()),
    ];
    let mut row = 1u32;
    for (name, value) in texts {
        sheet.write_string(row, 0, name).map_err(xlsx)?;
        sheet.write_string(row, 1, value).map_err(xlsx)?;
        row += 1;
    }
    for (name, day) in [("Start", report.start), ("End", report.end)] {
        sheet.write_string(row, 0, name).map_err(xlsx)?;
        sheet.write_datetime_with_format(row, 1, excel_date(day)?, &f.date).map_err(xlsx)?;
        row += 1;
    }
    let counts = [
        ("Days", report.days),
        ("Available licences (end of range)", report.available_at_end),
        ("Total licences (end of range)", report.total_at_end),
        ("Assigned seats (end of range)", report.assigned_at_end),
        ("Total top-ups (automatic + manual)", report.total_top_ups),
        ("Total licences added (automatic + manual)", report.total_licences_added),
        ("Automatic top-ups", report.automatic.count),
        ("Licences added automatically", report.automatic.licences),
        ("Manual additions", report.manual.count),
        ("Licences added manually", report.manual.licences),
        ("Order increases", report.order_increases.count),
        ("Licences added by orders", report.order_increases.licences),
        ("Top-ups stopped by a cap", report.capped_top_ups),
    ];
    for (name, value) in counts {
        sheet.write_string(row, 0, name).map_err(xlsx)?;
        sheet.write_number(row, 1, value as f64).map_err(xlsx)?;
        row += 1;
    }
    sheet.write_string(row, 0, "Average utilisation % (time-weighted)").map_err(xlsx)?;
    match report.average_utilisation_percent {
        Some(p) => sheet.write_number_with_format(row, 1, to_f64(p), &f.percent).map_err(xlsx)?,
        None => sheet.write_string(row, 1, "n/a (no licences)").map_err(xlsx)?,
    };
    row += 1;
    for (name, value) in [("Licence-days", report.licence_days), ("Assigned seat-days", report.assigned_seat_days)] {
        sheet.write_string(row, 0, name).map_err(xlsx)?;
        sheet.write_number_with_format(row, 1, to_f64(value), &f.decimal).map_err(xlsx)?;
        row += 1;
    }
    sheet.set_column_width(0, 42).map_err(xlsx)?;
    sheet.set_column_width(1, 18).map_err(xlsx)?;

    let sheet = book.add_worksheet();
    sheet.set_name("Daily").map_err(xlsx)?;
    header(
        sheet,
        &[
            "Day",
            "Total",
            "Assigned",
            "Available",
            "Utilisation %",
            "Top-ups",
            "Added automatically",
            "Added manually",
            "Added by orders",
        ],
        &f,
    )?;
    for (i, d) in report.daily.iter().enumerate() {
        let row = u32::try_from(i + 1)?;
        sheet.write_datetime_with_format(row, 0, excel_date(d.day)?, &f.date).map_err(xlsx)?;
        for (col, value) in [(1u16, d.total), (2, d.assigned), (3, d.available)] {
            sheet.write_number(row, col, value as f64).map_err(xlsx)?;
        }
        if let Some(p) = d.utilisation_percent {
            sheet.write_number_with_format(row, 4, to_f64(p), &f.percent).map_err(xlsx)?;
        }
        for (col, value) in [(5u16, d.top_ups), (6, d.automatic_added), (7, d.manual_added), (8, d.order_added)] {
            sheet.write_number(row, col, value as f64).map_err(xlsx)?;
        }
    }
    sheet.set_column_width(0, 12).map_err(xlsx)?;

    additions_sheet(book.add_worksheet(), &report.additions, &f)?;
    book.save(path).map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// The daily utilisation (left axis, percent) and available licences (right
/// axis) as an SVG line chart. Days without licences break the utilisation line.
pub fn chart_svg(report: &PoolReport) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let draw = |e: &dyn std::fmt::Display| anyhow!("drawing the chart: {e}");
    let days = report.daily.len();
    let last = i32::try_from(days.saturating_sub(1))?.max(1);
    let top_percent =
        report.daily.iter().filter_map(|d| d.utilisation_percent).map(to_f64).fold(100.0_f64, f64::max).ceil();
    let top_available = report.daily.iter().map(|d| d.available).max().unwrap_or(0).max(1) as f64 * 1.1;
    let label = |x: &i32| {
        u64::try_from(*x)
            .ok()
            .and_then(|x| report.daily.get(x as usize))
            .map(|d| d.day.format("%m-%d").to_string())
            .unwrap_or_default()
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let organization = report.organization.as_deref().map(|o| format!(" ({o})")).unwrap_or_default();
        let caption = format!("{}{organization}: {} to {}", report.sku, report.start, report.end);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
            .build_cartesian_2d(0i32..last, 0f64..top_percent)
            .map_err(|e| draw(&e))?
            .set_secondary_coord(0i32..last, 0f64..top_available);
        chart
            .configure_mesh()
            .x_labels(days.clamp(2, 16))
            .x_label_formatter(&label)
            .y_desc("utilisation %")
            .x_desc("day")
            .draw()
            .map_err(|e| draw(&e))?;
        chart
            .configure_secondary_axes()
            .y_desc("available licences")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| draw(&e))?;

        // One line per run of days that had licences.
        let mut runs: Vec<Vec<(i32, f64)>> = vec![vec![]];
        for (i, d) in report.daily.iter().enumerate() {
            match d.utilisation_percent {
                Some(p) => runs.last_mut().map(|run| run.push((i32::try_from(i).unwrap_or(i32::MAX), to_f64(p)))),
                None => {
                    runs.push(vec![]);
                    None
                }
            };
        }
        let mut labelled = false;
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let points = if run.len() == 1 { vec![run[0], (run[0].0 + 1, run[0].1)] } else { run };
            let series = chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2))).map_err(|e| draw(&e))?;
            if !labelled {
                series
                    .label("utilisation %")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
                labelled = true;
            }
        }
        let mut available: Vec<(i32, f64)> = report
            .daily
            .iter()
            .enumerate()
            .map(|(i, d)| (i32::try_from(i).unwrap_or(i32::MAX), d.available as f64))
            .collect();
        if available.len() == 1 {
            available.push((1, available[0].1));
        }
        chart
            .draw_secondary_series(LineSeries::new(available, RED.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label("available licences")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------
// The additions report
// ---------------------------------------------------------------------------

fn write_additions(report: &AdditionsReport, format: ReportFormat, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        ReportFormat::Csv => additions_csv(report, out)?,
        ReportFormat::Table => writeln!(out, "{}", additions_table(report))?,
        ReportFormat::Xlsx => bail!("an Excel workbook is written to a file only: give --out FILE.xlsx"),
    }
    Ok(())
}

/// Totals per SKU, then every addition.
pub fn additions_table(report: &AdditionsReport) -> String {
    let mut text = format!(
        "licence additions — workspace {}, {} ({} to {})\n",
        report.workspace, report.month, report.start, report.end
    );
    if report.skus.is_empty() {
        text.push_str("no licences were added automatically or manually in this month");
        return text;
    }
    let mut totals = table(&["SKU", "Organization", "Product", "Automatic", "Manual", "Total"]);
    for s in &report.skus {
        totals.add_row(vec![
            Cell::new(&s.sku),
            Cell::new(s.organization.as_deref().unwrap_or("(workspace)")),
            Cell::new(&s.product),
            right(tally_text(s.automatic)),
            right(tally_text(s.manual)),
            right(tally_text(s.total)),
        ]);
    }
    totals.add_row(vec![
        Cell::new("all"),
        Cell::new(""),
        Cell::new(""),
        right(tally_text(report.automatic)),
        right(tally_text(report.manual)),
        right(tally_text(report.total)),
    ]);
    text.push_str(&totals.to_string());
    text.push('\n');
    let all: Vec<Addition> = report.skus.iter().flat_map(|s| s.additions.iter().cloned()).collect();
    text.push_str(&additions_list(&all).to_string());
    text
}

/// One CSV row per addition.
#[derive(Debug, Serialize)]
struct AdditionCsvRow<'a> {
    workspace: &'a str,
    month: &'a str,
    sku: &'a str,
    organization: Option<&'a str>,
    product: &'a str,
    effective_at: String,
    kind: &'static str,
    licences: u64,
    from: u32,
    to: u32,
    ordered_by: &'a str,
    actor: &'a str,
    order_reference: Option<&'a str>,
    order_date: Option<NaiveDate>,
    order_thru: Option<&'a str>,
    subscription: &'a str,
    trigger_event: Option<uuid::Uuid>,
    event_id: uuid::Uuid,
}

fn additions_csv(report: &AdditionsReport, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut any = false;
    for s in &report.skus {
        for a in &s.additions {
            any = true;
            w.serialize(AdditionCsvRow {
                workspace: &report.workspace,
                month: &report.month,
                sku: &s.sku,
                organization: s.organization.as_deref(),
                product: &s.product,
                effective_at: a.effective_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                kind: a.kind.as_str(),
                licences: a.licences,
                from: a.from,
                to: a.to,
                ordered_by: &a.ordered_by,
                actor: &a.actor,
                order_reference: a.order_reference.as_deref(),
                order_date: a.order_date,
                order_thru: a.order_thru.as_deref(),
                subscription: &a.subscription,
                trigger_event: a.trigger_event,
                event_id: a.event_id,
            })?;
        }
    }
    if !any {
        // The header alone, so that an empty month still parses as the same table.
        w.write_record([
            "workspace",
            "month",
            "sku",
            "organization",
            "product",
            "effective_at",
            "kind",
            "licences",
            "from",
            "to",
            "ordered_by",
            "actor",
            "order_reference",
            "order_date",
            "order_thru",
            "subscription",
            "trigger_event",
            "event_id",
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// A workbook: `Summary` (totals per SKU) and `Additions` (every addition).
fn additions_xlsx(report: &AdditionsReport, path: &Path) -> anyhow::Result<()> {
    let f = Formats::new();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Summary").map_err(xlsx)?;
    header(
        sheet,
        &[
            "SKU",
            "Organization",
            "Product",
            "Automatic top-ups",
            "Licences added automatically",
            "Manual additions",
            "Licences added manually",
            "Additions",
            "Licences added",
        ],
        &f,
    )?;
    let mut row = 1u32;
    let write_totals = |sheet: &mut Worksheet, row: u32, cells: [&str; 3], a: Tally, m: Tally, t: Tally| {
        for (col, text) in cells.into_iter().enumerate() {
            sheet.write_string(row, u16::try_from(col).unwrap_or(0), text).map_err(xlsx)?;
        }
        for (col, value) in [a.count, a.licences, m.count, m.licences, t.count, t.licences].into_iter().enumerate() {
            sheet.write_number(row, u16::try_from(col + 3).unwrap_or(0), value as f64).map_err(xlsx)?;
        }
        anyhow::Ok(())
    };
    for s in &report.skus {
        write_totals(
            sheet,
            row,
            [&s.sku, s.organization.as_deref().unwrap_or(""), &s.product],
            s.automatic,
            s.manual,
            s.total,
        )?;
        row += 1;
    }
    write_totals(sheet, row, ["all", "", ""], report.automatic, report.manual, report.total)?;
    sheet.set_column_width(2, 24).map_err(xlsx)?;
    let all: Vec<Addition> = report.skus.iter().flat_map(|s| s.additions.iter().cloned()).collect();
    additions_sheet(book.add_worksheet(), &all, &f)?;
    book.save(path).map_err(|e| anyhow!("writing {}: {e}", path.display()))
}
