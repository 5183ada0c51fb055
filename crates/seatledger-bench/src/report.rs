//! Result rows: what was measured, against which target, and the verdict;
//! printed as one table and written as JSON.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};
use serde::Serialize;
use std::time::Duration;

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "MISS")]
    Miss,
    /// Measured, no target: context for other figures.
    #[serde(rename = "info")]
    Info,
    /// Could not be measured (a peer not installed, a step skipped).
    #[serde(rename = "not run")]
    NotRun,
}

impl Verdict {
    pub fn check(pass: bool) -> Self {
        if pass {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "",
            Verdict::NotRun => "not run",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `limit`, `seatledger/sqlite`, or `peer/<name>`.
    pub system: String,
    pub measure: String,
    /// The headline figure, in `unit`.
    pub value: Option<f64>,
    pub unit: String,
    /// Latencies, counts, memory: everything else worth reading.
    pub detail: String,
    pub target: String,
    pub verdict: Verdict,
    /// Machine-readable extras (percentiles, counts, peak memory…).
    pub extra: serde_json::Value,
    /// The 1, 5 and 15 minute load averages when the figure was taken: the
    /// machine is shared, and the figures move with it.
    pub load: String,
}

/// The load averages, from /proc/loadavg.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Row {
    pub fn info(system: &str, measure: impl Into<String>, value: f64, unit: &str) -> Self {
        Row {
            system: system.to_owned(),
            measure: measure.into(),
            value: Some(value),
            unit: unit.to_owned(),
            detail: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
            extra: serde_json::Value::Null,
            load: load(),
        }
    }

    pub fn not_run(system: &str, measure: impl Into<String>, why: impl Into<String>) -> Self {
        Row {
            system: system.to_owned(),
            measure: measure.into(),
            value: None,
            unit: String::new(),
            detail: why.into(),
            target: String::new(),
            verdict: Verdict::NotRun,
            extra: serde_json::Value::Null,
            load: load(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Self {
        self.target = target.into();
        self.verdict = Verdict::check(pass);
        self
    }

    pub fn extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = extra;
        self
    }
}

/// Format a figure with thousands separators and sensible precision.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 100.0 {
        let n = v.round() as i128;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn table(rows: &[Row]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["system", "measure", "result", "detail", "target", "verdict", "load"]);
    for r in rows {
        let result = match r.value {
            Some(v) => format!("{} {}", num(v), r.unit),
            None => "—".to_owned(),
        };
        t.add_row([
            Cell::new(&r.system),
            Cell::new(&r.measure),
            Cell::new(result),
            Cell::new(&r.detail),
            Cell::new(&r.target),
            Cell::new(r.verdict.text()),
            Cell::new(&r.load),
        ]);
    }
    t
}

/// Latency percentiles over samples (sorted here).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 * q - 1e-9).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1e6
        };
        let total: f64 = samples.iter().map(Duration::as_secs_f64).sum();
        Percentiles {
            count: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: at(1.0),
            mean_us: if samples.is_empty() { 0.0 } else { total / samples.len() as f64 * 1e6 },
        }
    }

    pub fn text(&self) -> String {
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (n={})",
            self.p50_us / 1e3,
            self.p99_us / 1e3,
            self.p999_us / 1e3,
            self.max_us / 1e3,
            self.count
        )
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU time this process has used so far, all its threads together:
/// (user, system) seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields 14 and 15 (utime,
    // stime, in clock ticks) are the 12th and 13th after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    let ticks = clock_ticks_per_second()?;
    Some((user / ticks, system / ticks))
}

/// `AT_CLKTCK` from the auxiliary vector the kernel gave this process.
fn clock_ticks_per_second() -> Option<f64> {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").ok()?;
    auxv.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_CLKTCK && value > 0).then_some(value as f64)
    })
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The CPU a replay may spend on each event to reach `rate` events a
/// second with `cores` cores all busy, in µs: `cores ÷ rate`.
pub fn cpu_budget_us(rate: f64, cores: usize) -> f64 {
    cores as f64 / rate * 1e6
}

/// What a replay target leaves for the projections, once reading and
/// decoding have taken `read_decode_us` of CPU per event: a sentence for the
/// fold row, which shows whether the target is within this machine's reach
/// at all with the stages measured before it.
pub fn replay_budget_text(rate: f64, cores: usize, read_decode_us: f64) -> String {
    let budget = cpu_budget_us(rate, cores);
    let share = read_decode_us / budget * 100.0;
    if read_decode_us >= budget {
        format!(
            "at {} events/s the {cores} cores give {budget:.2} µs of CPU per event, and opening the store, reading and decoding alone \
             took {read_decode_us:.2} µs ({share:.0} % of it): out of reach before any projection",
            num(rate)
        )
    } else {
        format!(
            "at {} events/s the {cores} cores give {budget:.2} µs of CPU per event; opening the store, reading and decoding took \
             {read_decode_us:.2} µs ({share:.0} %), leaving {:.2} µs for every projection together",
            num(rate),
            budget - read_decode_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_what_this_process_spent() {
        let (user_before, _) = cpu_seconds().expect("reading /proc/self/stat");
        // Spin until a tenth of a second of user time shows (a busy machine
        // may give this thread less than a core), for at most ten seconds.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let spent = loop {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            let (user, _) = cpu_seconds().expect("reading /proc/self/stat");
            if user - user_before >= 0.1 {
                break user - user_before;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "ten seconds of spinning counted no user time");
        };
        // Every thread of the test binary together cannot outrun its cores.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let wall = start.elapsed().as_secs_f64();
        assert!(spent <= wall * cores + 0.05, "{spent} s of user time in {wall} s of wall time on {cores} cores");
        assert!(cpu_seconds().is_some_and(|(_, system)| system >= 0.0));
    }

    #[test]
    fn a_replay_target_leaves_what_its_cores_give_less_reading_and_decoding() {
        // 2 cores ÷ 1,500,000 events/s = 1.333… µs of CPU per event.
        assert!((cpu_budget_us(1_500_000.0, 2) - 4.0 / 3.0).abs() < 1e-9);
        // 1 core ÷ 500,000 events/s = 2 µs.
        assert!((cpu_budget_us(500_000.0, 1) - 2.0).abs() < 1e-9);
        // 1.25 of 1.333 µs: 94 %, 0.08 µs left.
        let text = replay_budget_text(1_500_000.0, 2, 1.25);
        assert!(text.contains("1.33 µs") && text.contains("(94 %)") && text.contains("leaving 0.08 µs"), "{text}");
        // 2 µs of 1.333: 150 %, nothing left.
        let text = replay_budget_text(1_500_000.0, 2, 2.0);
        assert!(text.contains("(150 % of it): out of reach"), "{text}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(999.6), "1,000");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.5), "0.500");
    }

    #[test]
    fn percentiles_pick_the_right_sample() {
        let mut s: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let p = Percentiles::of(&mut s);
        for (got, want) in [(p.p50_us, 500.0), (p.p99_us, 990.0), (p.p999_us, 999.0), (p.max_us, 1000.0)] {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }
    }
}
