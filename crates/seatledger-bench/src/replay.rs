//! Histories in a SQLite store, and replaying them in a child process (so
//! that the peak memory, VmHWM, is that one scenario's).

use crate::report::{cpu_seconds, peak_rss};
use anyhow::Context;
use seatledger_app::decode_stored;
use seatledger_app::invoicing::{fold_inputs, fold_known, AsOf};
use seatledger_bench::gen::{generate, GenParams, GenStats};
use seatledger_bench::load::{LoadStats, Loader};
use seatledger_domain::Month;
use seatledger_projections::invoice::workspace_invoices;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, MAX_EVENTS_PER_APPEND, MAX_READ_COUNT};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A history written into a store file.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub label: String,
    pub params: GenParams,
    pub gen: GenStats,
    pub load: LoadStats,
    pub db: PathBuf,
    pub build_seconds: f64,
    /// Size of the database file once the store is closed (WAL folded back).
    pub file_bytes: u64,
}

/// Generate `params` and load it into a new store at `db`, in atomic
/// batches of 10,000 events.
pub async fn build(label: &str, params: GenParams, db: &Path) -> anyhow::Result<History> {
    let start = Instant::now();
    let store = crate::ledger::open(db)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8_192);
    let generator = std::thread::spawn(move || generate(&params, |line| tx.blocking_send(line.to_owned())));
    let mut loader = Loader::new(store.as_ref(), MAX_EVENTS_PER_APPEND);
    while let Some(line) = rx.recv().await {
        loader.line(&line).await?;
    }
    loader.flush().await?;
    let load = loader.stats;
    let gen = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
        .map_err(|_| anyhow::anyhow!("the loader stopped reading"))?;
    drop(store);
    let build_seconds = start.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(db)?.len();
    Ok(History { label: label.to_owned(), params, gen, load, db: db.to_owned(), build_seconds, file_bytes })
}

/// Write every stored event as one JSON line (the export format).
pub async fn export(db: &Path, out: &Path) -> anyhow::Result<u64> {
    let store = crate::ledger::open(db)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut after = 0;
    let mut n = 0;
    loop {
        let page = store.read_all(after, MAX_READ_COUNT).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in &page {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// What a child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildResult {
    pub mode: String,
    pub events: u64,
    pub seconds: f64,
    pub peak_rss: u64,
    /// CPU seconds of the whole child, every thread: in user space, and in
    /// the kernel (mostly handing out fresh memory).
    pub user_seconds: Option<f64>,
    pub system_seconds: Option<f64>,
    /// `invoices`: the month computed, invoices made, accounts that could not
    /// be invoiced, and the compute time alone.
    pub invoices: Option<u64>,
    pub invoice_problems: Option<u64>,
    pub compute_seconds: Option<f64>,
}

/// A log projection kept as its read-model writer keeps it
/// (`seatledger-readmodels-postgres` folds the audit log and the licence
/// change log into a fresh log for each page of 1,000 events it reads, and
/// writes that to a table): an entry is built for every event that makes
/// one, and the entries are handed on a page at a time instead of all
/// being held in memory. The fold's cost is the whole log's; its memory is
/// one page (here of up to 10,000 entries: more than the writer holds).
#[derive(Debug, Default)]
pub struct Paged<L> {
    page: L,
}

/// A projection whose state is a list of entries, one page of it at a time.
pub trait LogPage: Projection {
    fn entries(&self) -> usize;
    fn hand_on(&mut self);
}

impl LogPage for seatledger_projections::audit::AuditLog {
    fn entries(&self) -> usize {
        self.entries.len()
    }
    fn hand_on(&mut self) {
        self.entries.clear();
    }
}

impl LogPage for seatledger_projections::change_log::ChangeLog {
    fn entries(&self) -> usize {
        self.entries.len()
    }
    fn hand_on(&mut self) {
        self.entries.clear();
    }
}

/// Entries per page handed on (the store's longest read page).
const LOG_PAGE: usize = seatledger_store::MAX_READ_COUNT;

impl<L: LogPage> Projection for Paged<L> {
    fn name(&self) -> &'static str {
        self.page.name()
    }

    fn apply(&mut self, event: &seatledger_projections::Recorded<'_>) {
        self.page.apply(event);
        if self.page.entries() >= LOG_PAGE {
            std::hint::black_box(&self.page);
            self.page.hand_on();
        }
    }
}

/// Every read model folded on its own, for `child --mode fold:NAME`.
pub fn all_projections() -> Vec<Box<dyn Projection>> {
    use seatledger_projections::*;
    let mut all: Vec<Box<dyn Projection>> =
        vec![Box::new(licence_state::LicenceState::default()), Box::new(directory::Directory::default())];
    all.extend(beside_the_licence_state());
    all
}

/// The read models whose state is not the licence state's.
fn beside_the_licence_state() -> Vec<Box<dyn Projection>> {
    use seatledger_projections::*;
    vec![
        Box::new(Paged::<change_log::ChangeLog>::default()),
        Box::new(Paged::<audit::AuditLog>::default()),
        Box::new(invoice::InvoiceInputs::default()),
        Box::new(notifications::Notifications::default()),
        Box::new(reports::LicenceReports::default()),
    ]
}

/// Run one replay scenario in this process (the child).
pub async fn child(mode: &str, db: &Path, month: Option<&str>) -> anyhow::Result<ChildResult> {
    let mut result = ChildResult {
        mode: mode.to_owned(),
        events: 0,
        seconds: 0.0,
        peak_rss: 0,
        user_seconds: None,
        system_seconds: None,
        invoices: None,
        invoice_problems: None,
        compute_seconds: None,
    };
    let start = Instant::now();
    match mode {
        "jsonfold" => {
            let (events, took) = crate::limits::json_fold(db)?;
            result.events = events;
            result.seconds = took.as_secs_f64();
        }
        "read" | "decode" => {
            let store = crate::ledger::open(db)?;
            let mut after = 0;
            loop {
                let page = store.read_all(after, MAX_READ_COUNT).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                result.events += page.len() as u64;
                if mode == "decode" {
                    for e in page {
                        decode_stored(e).map_err(anyhow::Error::msg)?;
                    }
                }
            }
            result.seconds = start.elapsed().as_secs_f64();
        }
        fold if fold == "fold" || fold.starts_with("fold:") => {
            let store = crate::ledger::open(db)?;
            let last = match fold.strip_prefix("fold:") {
                // Every read model, each state folded once: the directory is
                // the licence state seen through its queries
                // (`Directory::from`, `the_directory_is_the_licence_state_fold`
                // in projections/tests/directory.rs), so it is made from the
                // folded licence state at the end (lever 23; no process of
                // the product keeps both today, `fold:directory` folds it
                // alone).
                None => {
                    use seatledger_projections::{directory::Directory, licence_state::LicenceState};
                    let mut state = LicenceState::default();
                    let mut others = beside_the_licence_state();
                    let mut refs: Vec<&mut dyn Projection> = vec![&mut state];
                    refs.extend(others.iter_mut().map(|p| p.as_mut() as &mut dyn Projection));
                    let last = fold_known(store.as_ref(), AsOf::Head, &mut refs).await?;
                    std::hint::black_box((&Directory::from(state), &others));
                    last
                }
                Some(name) => {
                    let mut projections: Vec<_> = all_projections().into_iter().filter(|p| p.name() == name).collect();
                    anyhow::ensure!(!projections.is_empty(), "no projection is named {name:?}");
                    let mut refs: Vec<&mut dyn Projection> = projections.iter_mut().map(|p| p.as_mut() as _).collect();
                    let last = fold_known(store.as_ref(), AsOf::Head, &mut refs).await?;
                    std::hint::black_box(&projections);
                    last
                }
            };
            result.seconds = start.elapsed().as_secs_f64();
            result.events = last;
        }
        "invoices" => {
            let month = Month::parse(month.context("--month is required")?).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = crate::ledger::open(db)?;
            let inputs = fold_inputs(store.as_ref(), AsOf::Head).await?;
            result.events = store.head_position().await?;
            let t = Instant::now();
            let (mut invoices, mut problems) = (0, 0);
            for id in inputs.workspaces.keys() {
                match workspace_invoices(&inputs, id, month) {
                    Ok(docs) => invoices += docs.len() as u64,
                    Err(e) => {
                        if problems == 0 {
                            eprintln!("first workspace not invoiceable: {id}: {e}");
                        }
                        problems += 1
                    }
                }
            }
            result.compute_seconds = Some(t.elapsed().as_secs_f64());
            result.seconds = start.elapsed().as_secs_f64();
            result.invoices = Some(invoices);
            result.invoice_problems = Some(problems);
        }
        // For profiling the writer: `child --mode batches --path NEW.db`
        // (30 appends of 10,000 events), or `batches:N` (300,000 events in
        // appends of N).
        batches if batches == "batches" || batches.starts_with("batches:") => {
            let size = match batches.strip_prefix("batches:") {
                Some(n) => n.parse::<usize>().context("`batches:N` takes a batch size")?.clamp(1, 300_000),
                None => 10_000,
            };
            let store = crate::ledger::open(db)?;
            let (rate, _) = crate::ledger::batches(store.as_ref(), size, 300_000 / size).await?;
            result.events = (300_000 / size * size) as u64;
            result.seconds = result.events as f64 / rate;
        }
        "concurrent64" => {
            let store = crate::ledger::open(db)?;
            let c = crate::ledger::concurrent(store, 64, false, std::time::Duration::from_secs(5), 0).await?;
            result.events = c.events;
            result.seconds = c.seconds;
        }
        // SQLite alone: `child --mode raw1 --path DIR` (one append per COMMIT,
        // seatledger's statements), or in the 64-appender shape
        // `child --mode raw64:seatledger|raw64:compact|raw64:noindex --path DIR`.
        raw if raw == "raw1" || raw.starts_with("raw64:") => {
            use crate::limits::StreamsShape;
            let (streams, per_commit, shape) = match raw {
                "raw1" => (1, 1, StreamsShape::Seatledger),
                "raw64:seatledger" => (64, 32, StreamsShape::Seatledger),
                "raw64:compact" => (64, 32, StreamsShape::Compact { stream_index: true }),
                "raw64:noindex" => (64, 32, StreamsShape::Compact { stream_index: false }),
                other => anyhow::bail!("unknown raw shape `{other}`"),
            };
            let payload = crate::ledger::reservation(0).payload;
            let took = std::time::Duration::from_secs(5);
            let (rate, _) = crate::limits::rusqlite_streams(db, took, streams, per_commit, shape, &payload)?;
            result.seconds = took.as_secs_f64();
            result.events = (rate * result.seconds) as u64;
        }
        // SQLite alone, one append of N events per COMMIT with seatledger's
        // statements: `child --mode rawbatch:N --path DIR`.
        raw if raw.starts_with("rawbatch:") => {
            let size: usize = raw["rawbatch:".len()..].parse().context("`rawbatch:N` takes a batch size")?;
            let payload = crate::ledger::reservation(0).payload;
            let took = std::time::Duration::from_secs(5);
            let (rate, _) = crate::limits::rusqlite_seatledger_batches(db, took, size, &payload)?;
            result.seconds = took.as_secs_f64();
            result.events = (rate * result.seconds) as u64;
        }
        // For profiling single appends: `child --mode single --path NEW.db`.
        "single" => {
            let store = crate::ledger::open(db)?;
            let (rate, lat) = crate::ledger::single_appends(store.as_ref(), 5_000).await?;
            result.events = 5_000;
            result.seconds = 5_000.0 / rate;
            eprintln!("p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs", lat.p50_us, lat.p99_us, lat.p999_us);
        }
        other => anyhow::bail!("unknown child mode `{other}`"),
    }
    result.peak_rss = peak_rss().unwrap_or(0);
    (result.user_seconds, result.system_seconds) = cpu_seconds().unzip();
    Ok(result)
}

/// Run the `fold` child `runs` times on `path`: the median run by rate, and
/// every run in the order they ran (the fold over many pools moves by up to
/// 1.5× between identical runs with the kernel's time to hand out fresh
/// memory; see docs/benchmarks.md).
pub fn spawn_fold_median(path: &Path, runs: usize) -> anyhow::Result<(ChildResult, Vec<ChildResult>)> {
    let all = (0..runs.max(1)).map(|_| spawn_child("fold", path, None)).collect::<anyhow::Result<Vec<_>>>()?;
    let rate = |r: &ChildResult| r.events as f64 / r.seconds;
    let mut by_rate: Vec<&ChildResult> = all.iter().collect();
    by_rate.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let median = by_rate[by_rate.len() / 2].clone();
    Ok((median, all))
}

/// Run [`child`] in a fresh process of this binary and read its answer.
pub fn spawn_child(mode: &str, path: &Path, month: Option<&str>) -> anyhow::Result<ChildResult> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("child").arg("--mode").arg(mode).arg("--path").arg(path);
    if let Some(m) = month {
        cmd.arg("--month").arg(m);
    }
    let out = cmd.output().context("starting the child")?;
    anyhow::ensure!(out.status.success(), "child `{mode}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("child answer: {text}"))
}
