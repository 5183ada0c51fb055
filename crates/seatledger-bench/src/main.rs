//! `seatledger-bench`: the workload generator and the benchmark runner.
//!
//! ```text
//! seatledger-bench gen --seed 42 --workspaces 30 --months 12 --out history.jsonl
//! seatledger-bench gen --seed 42 --workspaces 30 --store sqlite:ledger.db
//! seatledger-bench run [--quick] [--json results.json] [--dir DIR]
//! ```
//!
//! See docs/benchmarks.md for what each figure means.

#![forbid(unsafe_code)]

mod ledger;
mod limits;
mod replay;
mod report;

use anyhow::Context;
use clap::{Parser, Subcommand};
use report::{mib, num, replay_budget_text, Percentiles, Row};
use seatledger_bench::gen::{generate, GenParams};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The same allocator as the `seatledger` binary, so that replay figures
/// are the ones a user gets (see docs/benchmarks.md, "Levers").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "seatledger-bench", about = "Benchmarks for the seatledger event-sourced licensing ledger")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Generate a seeded, deterministic history of commands.
    Gen {
        #[arg(long, default_value_t = GenParams::default().seed)]
        seed: u64,
        #[arg(long, default_value_t = GenParams::default().workspaces)]
        workspaces: u32,
        /// Users per workspace.
        #[arg(long, default_value_t = GenParams::default().users)]
        users: u32,
        #[arg(long, default_value_t = GenParams::default().months)]
        months: u32,
        /// Desk reservations per user and month.
        #[arg(long, default_value_t = GenParams::default().reservations)]
        reservations: u32,
        /// Write command JSON Lines here (`-` for stdout).
        #[arg(long, conflicts_with = "store")]
        out: Option<PathBuf>,
        /// Write straight into a store instead: `sqlite:PATH`.
        #[arg(long)]
        store: Option<String>,
        /// With --store: go through `CommandHandler::apply_all`, 500 commands
        /// per atomic call, instead of the bench's own loader (slower on big
        /// workspaces: the handler clones each touched workspace per call).
        #[arg(long, requires = "store")]
        via_handler: bool,
    },
    /// Run the benchmarks; print a table and optionally write it as JSON.
    Run {
        /// A small, fast pass (seconds, not minutes): the same measurements
        /// on histories of about 100k events instead of 1M.
        #[arg(long)]
        quick: bool,
        /// Also measure cost growth at 10M events (adds many minutes).
        #[arg(long)]
        with_10m: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where the stores and files go (a fresh directory is made inside).
        /// Must be on the disk being measured, not a tmpfs.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Where the peers' setup scripts are.
        #[arg(long, default_value = "bench/peers")]
        peers: PathBuf,
        /// Keep the data directory afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Internal: one replay scenario, run in a child process by `run`.
    #[command(hide = true)]
    Child {
        #[arg(long)]
        mode: String,
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        month: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Cmd::Gen { seed, workspaces, users, months, reservations, out, store, via_handler } => {
            let params = GenParams { seed, workspaces, users, months, reservations };
            rt.block_on(gen(params, out, store, via_handler))
        }
        Cmd::Run { quick, with_10m, json, dir, peers, keep } => {
            rt.block_on(run(quick, with_10m, json, dir, peers, keep))
        }
        Cmd::Child { mode, path, month } => {
            let r = rt.block_on(replay::child(&mode, &path, month.as_deref()))?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

async fn gen(params: GenParams, out: Option<PathBuf>, store: Option<String>, via_handler: bool) -> anyhow::Result<()> {
    match (out, store) {
        (_, Some(url)) if via_handler => {
            let path = url.strip_prefix("sqlite:").context("only `sqlite:PATH` stores are supported")?;
            let (commands, events) = gen_via_handler(&params, Path::new(path)).await?;
            eprintln!("{commands} commands applied through CommandHandler::apply_all, {events} events, no refusal");
            Ok(())
        }
        (_, Some(url)) => {
            let path = url.strip_prefix("sqlite:").context("only `sqlite:PATH` stores are supported")?;
            let h = replay::build("gen", params, Path::new(path)).await?;
            eprintln!(
                "{} commands, {} events ({} unchanged) in {} atomic appends, {} seat pools, {:.1} s; {} bytes on disk",
                h.load.commands,
                h.load.events,
                h.load.unchanged,
                h.load.appends,
                h.gen.pools,
                h.build_seconds,
                h.file_bytes
            );
            Ok(())
        }
        (Some(path), None) => {
            let stdout;
            let mut w: Box<dyn Write> = if path.as_os_str() == "-" {
                stdout = std::io::stdout();
                Box::new(std::io::BufWriter::new(stdout.lock()))
            } else {
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
            };
            let stats = generate(&params, |line| writeln!(w, "{line}"))?;
            w.flush()?;
            eprintln!("{} commands, {} seat pools", stats.commands, stats.pools);
            Ok(())
        }
        (None, None) => anyhow::bail!("say where the history goes: --out FILE or --store sqlite:PATH"),
    }
}

/// Apply a generated history through the application's own command handler,
/// a few hundred commands per atomic `apply_all`; any refusal is an error.
async fn gen_via_handler(params: &GenParams, path: &Path) -> anyhow::Result<(usize, usize)> {
    use seatledger_app::{AppError, CommandHandler, CommandMeta, V7Ids};
    let store = ledger::open(path)?;
    let handler = CommandHandler::new(store, std::sync::Arc::new(V7Ids));
    let mut lines = vec![];
    generate(params, |l| {
        lines.push(l.to_owned());
        Ok::<_, std::convert::Infallible>(())
    })?;
    let mut parsed = Vec::with_capacity(lines.len());
    for (i, text) in lines.iter().enumerate() {
        let e = seatledger_codec::parse_command(text).with_context(|| format!("line {}", i + 1))?;
        let (Some(at), Some(id)) = (e.at, e.command_id) else {
            anyhow::bail!("line {} lacks `at` or `command_id`", i + 1)
        };
        let meta = CommandMeta::new(e.actor.unwrap_or_default(), e.channel.unwrap_or_default(), id);
        parsed.push((i + 1, seatledger_domain::Command { at, body: e.body }, meta));
    }
    let mut events = 0;
    for chunk in parsed.chunks(500) {
        match handler.apply_all(chunk, false).await {
            Ok(report) => events += report.events_appended,
            Err(AppError::FileRejected(lines)) => anyhow::bail!("refused: {lines:?}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((parsed.len(), events))
}

/// What the machine is, for the record.
fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo").lines().find(|l| l.starts_with("model name")).map(|l| l.to_owned());
    let mem = read("/proc/meminfo").lines().next().map(|l| l.to_owned());
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu.and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned())),
        "memory": mem,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load": load(),
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn say(text: impl AsRef<str>) {
    eprintln!("[{}] {}", load(), text.as_ref());
}

fn lat_extra(rate: f64, p: &Percentiles) -> serde_json::Value {
    serde_json::json!({"per_s": rate, "latency": p})
}

/// The replay target of issue #6, in events a second.
const REPLAY_TARGET: f64 = 1_500_000.0;

/// How many times each replay into every projection runs; the median counts.
const FOLD_RUNS: usize = 3;

/// A fold row's runs and CPU time.
fn fold_runs_text(median: &replay::ChildResult, runs: &[replay::ChildResult]) -> String {
    let rates: Vec<String> = runs.iter().map(|r| num(r.events as f64 / r.seconds)).collect();
    let cpu = match (median.user_seconds, median.system_seconds) {
        (Some(user), Some(system)) => format!("; its CPU: {user:.2} s user, {system:.2} s system"),
        _ => String::new(),
    };
    format!("median of {} runs ({} events/s){cpu}", rates.len(), rates.join(" / "))
}

/// User-space and kernel CPU seconds per event of a child's whole run
/// (every thread: opening the store, reading, decoding, folding; NaN when
/// unknown).
fn cpu_per_event(r: &replay::ChildResult) -> (f64, f64) {
    let per_event = |seconds: Option<f64>| seconds.map_or(f64::NAN, |s| s / r.events.max(1) as f64);
    (per_event(r.user_seconds), per_event(r.system_seconds))
}

/// Params of a history spread over many workspaces: `pools` seat pools
/// (four for every three workspaces), five users each, twelve months, one
/// reservation per user and month: about 100 events per seat pool.
fn spread(pools: u32) -> GenParams {
    GenParams { workspaces: pools * 3 / 4, users: 5, months: 12, reservations: 1, ..GenParams::default() }
}

/// Params of a history in ONE workspace stream: `users` users, twelve
/// months, sixteen reservations per user and month: about 200 events a user.
fn one_stream(users: u32) -> GenParams {
    GenParams { workspaces: 1, users, months: 12, reservations: 16, ..GenParams::default() }
}

async fn run(
    quick: bool,
    with_10m: bool,
    json: Option<PathBuf>,
    dir: PathBuf,
    peers: PathBuf,
    keep: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let data = tempfile::Builder::new().prefix("seatledger-bench-").tempdir_in(&dir)?;
    let d = data.path().to_owned();
    let started = chrono::Utc::now();
    let machine = machine();
    say(format!("data in {}; machine {machine}", d.display()));
    let mut rows: Vec<Row> = vec![];
    let scale = if quick { 10 } else { 1 };

    // ---- 1. Limits: the machine with nothing of seatledger in the way.
    let payload = ledger::reservation(0).payload;
    let n_single = if quick { 300 } else { 3_000 };
    say("limit: write + fdatasync loop");
    let (fsync_rate, fsync_p) = limits::fdatasync_loop(&d, n_single, 512)?;
    rows.push(
        Row::info("limit", "write 512 B + fdatasync, one at a time", fsync_rate, "ops/s")
            .detail(fsync_p.text())
            .extra(lat_extra(fsync_rate, &fsync_p)),
    );
    say("limit: raw rusqlite inserts");
    let (sql1_rate, sql1_p) = limits::rusqlite_loop(&d, n_single, 1, &payload)?;
    rows.push(
        Row::info("limit", "raw rusqlite INSERT + COMMIT (WAL, synchronous=FULL)", sql1_rate, "events/s")
            .detail(sql1_p.text())
            .extra(lat_extra(sql1_rate, &sql1_p)),
    );
    let mut raw_batch = std::collections::BTreeMap::new();
    for (size, n) in [(64usize, n_single / 10), (100, n_single / 10), (1_000, 60 / scale), (10_000, 20 / scale)] {
        let (rate, p) = limits::rusqlite_loop(&d, n.max(3), size, &payload)?;
        raw_batch.insert(size, rate);
        rows.push(
            Row::info("limit", format!("raw rusqlite {size} INSERTs per COMMIT"), rate, "events/s")
                .detail(format!("per commit: {}", p.text()))
                .extra(lat_extra(rate, &p)),
        );
    }

    // What SQLite alone makes of seatledger's append shapes: one append per
    // COMMIT, and 32 single-event appends over 64 streams per COMMIT.
    let took = Duration::from_millis(if quick { 400 } else { 3_000 });
    let mut alone = Vec::new();
    for (streams, per_commit, shape) in [
        (1, 1, limits::StreamsShape::Seatledger),
        (64, 32, limits::StreamsShape::Seatledger),
        (64, 32, limits::StreamsShape::Compact { stream_index: true }),
        (64, 32, limits::StreamsShape::Compact { stream_index: false }),
    ] {
        let what = if streams == 1 {
            "one one-event append per COMMIT".to_owned()
        } else {
            format!("{per_commit} one-event appends over {streams} streams per COMMIT")
        };
        say(format!("limit: raw rusqlite, {what}, {}", shape.label()));
        let (rate, p) = limits::rusqlite_streams(&d, took, streams, per_commit, shape, &payload)?;
        alone.push(rate);
        let latency = if per_commit == 1 { p.text() } else { format!("per commit: {}", p.text()) };
        rows.push(
            Row::info("limit", format!("raw rusqlite, {what}: {}", shape.label()), rate, "events/s")
                .detail(latency)
                .extra(lat_extra(rate, &p)),
        );
    }
    let (sql1_ours, raw64) = (alone[0], &alone[1..]);
    let mut alone_batch = std::collections::BTreeMap::new();
    for size in [100usize, 1_000, 10_000] {
        let what = format!("raw rusqlite, one append of {size} events per COMMIT: seatledger's schema and statements");
        say(format!("limit: {what}"));
        let (rate, p) = limits::rusqlite_seatledger_batches(&d, took, size, &payload)?;
        alone_batch.insert(size, rate);
        rows.push(
            Row::info("limit", what, rate, "events/s")
                .detail(format!("per commit: {}", p.text()))
                .extra(lat_extra(rate, &p)),
        );
    }

    // ---- 2. seatledger appends.
    let store = ledger::open(&d.join("appends.db"))?;
    say("seatledger: single durable appends");
    let (single_rate, single_p) = ledger::single_appends(store.as_ref(), n_single).await?;
    let ratio = single_rate / fsync_rate;
    rows.push(
        Row::info("seatledger/sqlite", "single appends, Exact version, one at a time", single_rate, "events/s")
            .detail(format!(
                "{:.0} % of the fdatasync loop, {:.0} % of raw rusqlite, {:.0} % of SQLite alone running \
                 seatledger's statements",
                ratio * 100.0,
                single_rate / sql1_rate * 100.0,
                single_rate / sql1_ours * 100.0
            ))
            .target("≥ 90 % of the fdatasync loop", ratio >= 0.9)
            .extra(lat_extra(single_rate, &single_p)),
    );
    rows.push(
        Row::info("seatledger/sqlite", "single appends: p99 latency", single_p.p99_us / 1e3, "ms")
            .detail(format!("{}; the fdatasync loop alone: p99 {:.3} ms", single_p.text(), fsync_p.p99_us / 1e3))
            .target("p99 < 1 ms", single_p.p99_us < 1_000.0),
    );
    let duration = Duration::from_millis(if quick { 400 } else { 3_000 });
    for (run, tasks) in [1usize, 4, 16, 64].into_iter().enumerate() {
        for same in [false, true] {
            say(format!("seatledger: {tasks} concurrent appenders, same stream: {same}"));
            let c = ledger::concurrent(std::sync::Arc::clone(&store), tasks, same, duration, run as u32).await?;
            let what = if same { "on ONE stream" } else { "each on its own stream" };
            let mut row = Row::info(
                "seatledger/sqlite",
                format!("{tasks} concurrent appenders {what}"),
                c.events_per_s,
                "events/s",
            )
            .detail(format!(
                "{} events in {:.1} s, {} conflicts retried, {:.1} appends per group commit",
                c.events,
                c.seconds,
                c.conflicts,
                c.requests as f64 / c.commits.max(1) as f64
            ))
            .extra(serde_json::to_value(c)?);
            if tasks == 64 && !same {
                let limit = raw_batch.get(&64).copied().unwrap_or(f64::NAN);
                let (ours, compact) = (raw64[0], raw64[1]);
                row.detail = format!(
                    "{}; {:.0} % of SQLite alone running seatledger's statements in this shape ({} events/s), \
                     {:.0} % of compact rows with a per-stream index ({}); raw rusqlite with 64 INSERTs per \
                     COMMIT on one stream: {} events/s",
                    row.detail,
                    c.events_per_s / ours * 100.0,
                    num(ours),
                    c.events_per_s / compact * 100.0,
                    num(compact),
                    num(limit)
                );
                row = row.target("≥ 60,000 events/s", c.events_per_s >= 60_000.0);
            }
            rows.push(row);
        }
    }
    let mut batch100_rate = f64::NAN;
    for (size, n) in [(100usize, 200 / scale), (1_000, 60 / scale), (10_000, 20 / scale)] {
        say(format!("seatledger: batches of {size}"));
        let (rate, p) = ledger::batches(store.as_ref(), size, n.max(3)).await?;
        let raw = raw_batch.get(&size).copied().unwrap_or(f64::NAN);
        let ours = alone_batch.get(&size).copied().unwrap_or(f64::NAN);
        let mut row =
            Row::info("seatledger/sqlite", format!("batches of {size} events, Exact version"), rate, "events/s")
                .detail(format!(
                    "per batch: {}; {:.0} % of raw rusqlite at that batch size, {:.0} % of SQLite alone with \
                     seatledger's schema and statements",
                    p.text(),
                    rate / raw * 100.0,
                    rate / ours * 100.0
                ))
                .extra(lat_extra(rate, &p));
        match size {
            100 => {
                batch100_rate = rate;
                row = row.target("≥ 250,000 events/s", rate >= 250_000.0);
            }
            10_000 => row = row.target("≥ 1,000,000 events/s", rate >= 1_000_000.0),
            _ => {}
        }
        rows.push(row);
    }
    drop(store);

    // ---- 3. Histories, replay, invoices, disk.
    let (big, small) = if quick { (100_000u32, 10_000u32) } else { (1_000_000, 100_000) };
    let big_label = if quick { "100k" } else { "1M" };
    let pools = big / 100;
    let mut histories = vec![];
    for (label, params) in [
        (format!("{big_label} events over {} seat pools", num(f64::from(pools))), spread(pools)),
        (format!("{big_label} events on one stream"), one_stream(big / 200)),
    ] {
        let db = d.join(format!("history-{}.db", histories.len()));
        say(format!("building history: {label}"));
        let h = replay::build(&label, params, &db).await?;
        say(format!("  {} events in {:.1} s", h.load.events, h.build_seconds));
        rows.push(
            Row::info(
                "seatledger/sqlite",
                format!("load history ({label}), atomic batches of 10,000"),
                h.load.events as f64 / h.build_seconds,
                "events/s",
            )
            .detail(format!("{} commands generated, decided and appended; {} events", h.load.commands, h.load.events))
            .extra(serde_json::to_value(&h)?),
        );
        rows.push(
            Row::info(
                "seatledger/sqlite",
                format!("disk per stored event ({label})"),
                h.file_bytes as f64 / h.load.events as f64,
                "bytes",
            )
            .detail(format!("{} MiB file after the WAL is checkpointed", num(mib(h.file_bytes))))
            .extra(serde_json::json!({"file_bytes": h.file_bytes, "events": h.load.events})),
        );
        histories.push(h);
    }
    // The replay limit runs on the same events, exported as JSON Lines.
    let jsonl = d.join("history-0.jsonl");
    let exported = replay::export(&histories[0].db, &jsonl).await?;
    let jsonl_bytes = std::fs::metadata(&jsonl)?.len();
    if let Some(r) =
        rows.iter_mut().find(|r| r.measure.starts_with("disk per stored event") && r.measure.contains("pools"))
    {
        r.detail = format!(
            "{} MiB file after the WAL is checkpointed; the JSON Lines export takes {:.0} bytes/event",
            num(mib(histories[0].file_bytes)),
            jsonl_bytes as f64 / exported as f64
        );
    }
    say("limit: serde_json decode-and-fold of the export");
    let jf = replay::spawn_child("jsonfold", &jsonl, None)?;
    let json_limit = jf.events as f64 / jf.seconds;
    rows.push(
        Row::info(
            "limit",
            format!("serde_json decode + fold of a JSONL file ({big_label} events)"),
            json_limit,
            "events/s",
        )
        .detail(format!("{} events in {:.2} s; peak RSS {:.0} MiB", jf.events, jf.seconds, mib(jf.peak_rss)))
        .extra(serde_json::to_value(&jf)?),
    );

    let month = "2024-12";
    let mut fold_rates = vec![];
    let mut fold_peaks = vec![];
    let mut fold_cpu = vec![];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for h in &histories {
        // The decode child's CPU per event (reading and decoding, nothing
        // folded), for the fold row's budget.
        let mut read_decode_us = f64::NAN;
        for mode in ["read", "decode", "fold"] {
            say(format!("replay {mode}: {}", h.label));
            let (r, runs) = if mode == "fold" {
                replay::spawn_fold_median(&h.db, FOLD_RUNS)?
            } else {
                (replay::spawn_child(mode, &h.db, None)?, vec![])
            };
            let rate = r.events as f64 / r.seconds;
            let what = match mode {
                "read" => "replay: read_all only",
                "decode" => "replay: read_all + decode",
                _ => "replay: read + decode + fold into all 7 read models (the directory made from the licence state; audit and change logs paged out)",
            };
            let (user_us, system_us) = cpu_per_event(&r);
            let cpu_us = (user_us + system_us) * 1e6;
            let mut row = Row::info("seatledger/sqlite", format!("{what} ({})", h.label), rate, "events/s")
                .detail(format!(
                    "{} events in {:.2} s; peak RSS {:.0} MiB; {:.0} % of the serde_json limit; \
                     CPU {cpu_us:.2} µs per event (user + system, every thread)",
                    r.events,
                    r.seconds,
                    mib(r.peak_rss),
                    rate / json_limit * 100.0
                ))
                .extra(serde_json::to_value(&r)?);
            if mode == "decode" {
                read_decode_us = cpu_us;
            }
            if mode == "fold" {
                let budget = replay_budget_text(REPLAY_TARGET, cores, read_decode_us);
                row.detail = format!("{}; {}; {budget}", row.detail, fold_runs_text(&r, &runs));
                row = row.target("≥ 1,500,000 events/s", rate >= REPLAY_TARGET);
                fold_rates.push(rate);
                fold_peaks.push(r.peak_rss);
                fold_cpu.push(cpu_per_event(&r));
            }
            rows.push(row);
        }
    }
    say(format!("invoices for {month}: {}", histories[0].label));
    let inv = replay::spawn_child("invoices", &histories[0].db, Some(month))?;
    let compute = inv.compute_seconds.unwrap_or(f64::NAN);
    rows.push(
        Row::info("seatledger/sqlite", format!("all invoices of {month} ({})", histories[0].label), compute, "s")
            .detail(format!(
                "{} invoices, {} workspaces not invoiceable; fold of the inputs first: {:.2} s; peak RSS {:.0} MiB",
                inv.invoices.unwrap_or(0),
                inv.invoice_problems.unwrap_or(0),
                inv.seconds - compute,
                mib(inv.peak_rss)
            ))
            .target("< 1 s", compute < 1.0)
            .extra(serde_json::to_value(&inv)?),
    );

    // ---- 4. Cost growth: the spread shape at 1/10 and (optionally) 10× the size.
    // Each point: (events, fold events/s, read + decode events/s, invoice seconds).
    let decode_big = rows
        .iter()
        .find(|r| r.measure.starts_with("replay: read_all + decode") && r.measure.contains("pools"))
        .and_then(|r| r.value)
        .unwrap_or(f64::NAN);
    let mut growth = vec![(histories[0].load.events, fold_rates.first().copied().unwrap_or(0.0), decode_big, compute)];
    let mut growth_memory = vec![(histories[0].load.events, fold_peaks.first().copied().unwrap_or(0))];
    // (events, (user, system) CPU seconds per event of the median fold's whole child)
    let mut growth_cpu = vec![(histories[0].load.events, fold_cpu.first().copied().unwrap_or((f64::NAN, f64::NAN)))];
    let mut sizes = vec![(small, num(f64::from(small)))];
    if with_10m && !quick {
        sizes.push((10_000_000, "10M".to_owned()));
    }
    for (events, label) in sizes {
        let db = d.join(format!("growth-{events}.db"));
        say(format!("growth: building {label}"));
        let h = replay::build(&label, spread(events / 100), &db).await?;
        // Every point is the median of as many runs as the 1M point, the
        // 10M one too: its first run pays for memory the guest has never
        // touched (docs/benchmarks.md, runs W, X and Y), as the first run at
        // 1M does, and a lone run would be compared with medians.
        let (f, _) = replay::spawn_fold_median(&db, FOLD_RUNS)?;
        let r = replay::spawn_child("decode", &db, None)?;
        let i = replay::spawn_child("invoices", &db, Some(month))?;
        growth.push((
            h.load.events,
            f.events as f64 / f.seconds,
            r.events as f64 / r.seconds,
            i.compute_seconds.unwrap_or(f64::NAN),
        ));
        growth_memory.push((h.load.events, f.peak_rss));
        growth_cpu.push((h.load.events, cpu_per_event(&f)));
        std::fs::remove_file(&db).ok();
    }
    growth.sort_by_key(|g| g.0);
    let lines: Vec<String> = growth
        .iter()
        .map(|(events, fold, decode, inv)| {
            format!(
                "{} events: fold {:.2} s ({} ev/s), read + decode {} ev/s, invoices {:.3} s",
                num(*events as f64),
                *events as f64 / fold,
                num(*fold),
                num(*decode),
                inv
            )
        })
        .collect();
    let (lo, hi) = (growth[0], growth[growth.len() - 1]);
    // Linear: the cost per event stays within ±30 % from the smallest to the largest.
    let fold_ratio = lo.1 / hi.1;
    let decode_ratio = lo.2 / hi.2;
    let inv_ratio = (hi.3 / hi.0 as f64) / (lo.3 / lo.0 as f64);
    rows.push(
        Row::info("seatledger/sqlite", "cost growth: fold time per event, largest ÷ smallest history", fold_ratio, "×")
            .detail(format!("{} (each fold the median of {FOLD_RUNS} runs)", lines.join("; ")))
            .target("linear or better (≤ 1.3×)", fold_ratio <= 1.3)
            .extra(serde_json::json!({
                "points [events, fold/s, decode/s, invoice s]": growth,
                "fold peak RSS [events, bytes]": growth_memory,
            })),
    );
    // What the wall time hides: the CPU the fold spends in user space per
    // event, against the kernel time for fresh memory, which moves between
    // identical runs.
    growth_cpu.sort_by_key(|g| g.0);
    let ((_, (user_lo, _)), (_, (user_hi, _))) = (growth_cpu[0], growth_cpu[growth_cpu.len() - 1]);
    let cpu_ratio = user_hi / user_lo;
    rows.push(
        Row::info(
            "seatledger/sqlite",
            "cost growth: replay CPU time in user space per event (read, decode, fold), largest ÷ smallest",
            cpu_ratio,
            "×",
        )
        .detail(
            growth_cpu
                .iter()
                .map(|(events, (user, system))| {
                    format!("{} events: {:.2} µs (system {:.2} µs)", num(*events as f64), user * 1e6, system * 1e6)
                })
                .collect::<Vec<_>>()
                .join("; ")
                + " (counted in the kernel's 10 ms ticks: coarse below a second of fold; system time is \
                   mostly the kernel handing out fresh memory)",
        )
        .extra(serde_json::json!({ "points [events, [user, system] CPU s per event]": growth_cpu })),
    );
    rows.push(Row::info(
        "seatledger/sqlite",
        "cost growth: read + decode time per event, largest ÷ smallest",
        decode_ratio,
        "×",
    ));
    // Invoices are computed per workspace and month: a cost per event that
    // falls as the history grows (fixed costs spread thinner) is no failure.
    rows.push(
        Row::info(
            "seatledger/sqlite",
            "cost growth: invoice time per event, largest ÷ smallest history",
            inv_ratio,
            "×",
        )
        .target("linear or better (≤ 1.3×)", inv_ratio <= 1.3),
    );

    // ---- 4b. Memory against the length of the history, the pools fixed:
    // 1,000 seat pools (250 with --quick) over 12 and over 48 months. What
    // the projections must hold grows with the pools; a replay whose peak
    // memory grew with the months would be holding history.
    let pools = if quick { 250 } else { 1_000 };
    let mut memory = vec![];
    for months in [12, 48] {
        let db = d.join(format!("months-{months}.db"));
        say(format!("memory: building {pools} seat pools over {months} months"));
        let params = GenParams { months, ..spread(pools) };
        let h = replay::build(&format!("{months} months"), params, &db).await?;
        // Peak memory moves by about a tenth between identical runs (which
        // 2 MiB pages the allocator happens to touch): the median of three.
        let (_, runs) = replay::spawn_fold_median(&db, FOLD_RUNS)?;
        let mut peaks: Vec<u64> = runs.iter().map(|r| r.peak_rss).collect();
        peaks.sort_unstable();
        memory.push((months, h.load.events, peaks[peaks.len() / 2]));
        std::fs::remove_file(&db).ok();
    }
    let (short, long) = (memory[0], memory[1]);
    let events_ratio = long.1 as f64 / short.1 as f64;
    let memory_ratio = long.2 as f64 / short.2.max(1) as f64;
    rows.push(
        Row::info(
            "seatledger/sqlite",
            format!("replay peak memory, same {} seat pools, 48 months ÷ 12 months of history", num(f64::from(pools))),
            memory_ratio,
            "×",
        )
        .detail(format!(
            "{} events: {:.0} MiB; {} events: {:.0} MiB ({events_ratio:.1}× the events; each the median of {FOLD_RUNS} runs)",
            num(short.1 as f64),
            mib(short.2),
            num(long.1 as f64),
            mib(long.2)
        ))
        .target("grows < ½ as fast as the history", memory_ratio < events_ratio / 2.0)
        .extra(serde_json::json!({"points [months, events, peak RSS bytes]": memory})),
    );

    // ---- 5. Peers.
    let ours: std::collections::HashMap<&str, f64> = [
        ("single", single_rate),
        ("batch100", batch100_rate),
        // The peers' replays decode and fold a count, with no projection:
        // set them against seatledger's read + decode, like with like.
        ("replay", decode_big),
    ]
    .into();
    for name in [
        "python-eventsourcing-sqlite",
        "python-eventsourcing-postgres",
        "emmett-postgresql",
        "message-db-style-postgres",
        "cqrs-es-postgres",
    ] {
        let script = peers.join(name).join("run.sh");
        if !script.exists() {
            rows.push(Row::not_run(
                &format!("peer/{name}"),
                "single appends, batches, replay",
                format!("not installed: no setup script at {}", script.display()),
            ));
            continue;
        }
        // The disk's fsync latency moves minute by minute on a shared
        // machine: measure seatledger's durable appends again right before
        // each peer, so that the fsync-bound ratios compare the same minute.
        say(format!("seatledger again, just before peer {name}"));
        let n_near = if quick { 100 } else { 500 };
        let near_store = ledger::open(&d.join(format!("near-{name}.db")))?;
        let (near_single, near_p) = ledger::single_appends(near_store.as_ref(), n_near).await?;
        let (near_batch, _) = ledger::batches(near_store.as_ref(), 100, n_near / 10).await?;
        drop(near_store);
        rows.push(
            Row::info("seatledger/sqlite", format!("single appends, just before peer {name}"), near_single, "events/s")
                .detail(format!("{}; batches of 100 then: {} events/s", near_p.text(), num(near_batch)))
                .extra(serde_json::json!({"single": near_single, "latency": near_p, "batch100": near_batch})),
        );
        let mut near = ours.clone();
        near.insert("single", near_single);
        near.insert("batch100", near_batch);
        say(format!("peer {name}"));
        rows.extend(run_peer(name, &script, &d, quick, &near));
    }

    let finished = chrono::Utc::now();
    println!("{}", report::table(&rows));
    if let Some(path) = json {
        let doc = serde_json::json!({
            "started": started, "finished": finished, "quick": quick, "machine": machine,
            "load_at_end": load(), "rows": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        say(format!("wrote {}", path.display()));
    }
    if keep {
        let kept = data.keep();
        say(format!("kept {}", kept.display()));
    }
    Ok(())
}

/// Run one peer's script: `run.sh DATA_DIR quick|full` prints one JSON object
/// per measurement (`{"measure", "value", "unit", "detail", "compare"}`,
/// `compare` naming the seatledger figure it is set against: `single`,
/// `batch100` or `replay`) on stdout, or `{"not_installed": "why"}`.
fn run_peer(
    name: &str,
    script: &Path,
    data: &Path,
    quick: bool,
    ours: &std::collections::HashMap<&str, f64>,
) -> Vec<Row> {
    let system = format!("peer/{name}");
    let dir = data.join(name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return vec![Row::not_run(&system, "all", format!("could not make {}: {e}", dir.display()))];
    }
    let out =
        std::process::Command::new("bash").arg(script).arg(&dir).arg(if quick { "quick" } else { "full" }).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return vec![Row::not_run(&system, "all", format!("could not start: {e}"))],
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = vec![];
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let field = |k: &str| v.get(k).and_then(|m| m.as_str()).unwrap_or("").to_owned();
        if v.get("not_installed").is_some() {
            rows.push(Row::not_run(&system, "all", format!("not installed: {}", field("not_installed"))));
            continue;
        }
        let value = v.get("value").and_then(|m| m.as_f64()).unwrap_or(f64::NAN);
        let mut row = Row::info(&system, field("measure"), value, &field("unit")).extra(v.clone());
        let compare = field("compare");
        let mut detail = field("detail");
        if let Some(ours) = ours.get(compare.as_str()) {
            let ratio = ours / value;
            let what = match compare.as_str() {
                "single" => "single appends",
                "batch100" => "batches of 100",
                _ => "read + decode",
            };
            detail = format!("{detail}; seatledger ({what}) is {ratio:.1}× this");
            let need = if name.starts_with("python") { 30.0 } else { 10.0 };
            if name.starts_with("python") || name.starts_with("emmett") || name.starts_with("cqrs") {
                row = row.target(format!("seatledger ≥ {need}×"), ratio >= need);
            }
        }
        rows.push(row.detail(detail));
    }
    if rows.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        rows.push(Row::not_run(&system, "all", format!("no result (exit {}): {tail}", out.status)));
    }
    rows
}
