//! cqrs-es with postgres-es, the seatledger peer workload. Usage:
//! `cqrs-es-peer URL quick|full`; prints JSON lines for seatledger-bench.
//! The framework loads the aggregate from its events before each command
//! and appends with the next sequence numbers under the table's primary key
//! (aggregate_type, aggregate_id, sequence): its optimistic concurrency check.

use async_trait::async_trait;
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::{default_postgress_pool, postgres_cqrs};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pool {
    reservations: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PoolEvent {
    ReservationMade { reservation: String, user: String, starts_at: String, ends_at: String },
}

impl DomainEvent for PoolEvent {
    fn event_type(&self) -> String {
        "ReservationMade".to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Deserialize)]
enum PoolCommand {
    Reserve { first: u64, count: u32 },
}

#[derive(Debug)]
struct PoolError(String);

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PoolError {}

#[async_trait]
impl Aggregate for Pool {
    type Command = PoolCommand;
    type Event = PoolEvent;
    type Error = PoolError;
    type Services = ();

    fn aggregate_type() -> String {
        "pool".to_owned()
    }

    async fn handle(
        &self,
        command: Self::Command,
        _services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        let PoolCommand::Reserve { first, count } = command;
        Ok((0..u64::from(count))
            .map(|i| PoolEvent::ReservationMade {
                reservation: format!("r{}", first + i),
                user: format!("u{}", i % 500),
                starts_at: "2024-03-04T09:00:00Z".to_owned(),
                ends_at: "2024-03-04T11:00:00Z".to_owned(),
            })
            .collect())
    }

    fn apply(&mut self, _event: Self::Event) {
        self.reservations += 1;
    }
}

fn pct(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 * q - 1e-9).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

fn out(measure: &str, value: f64, unit: &str, detail: String, compare: &str) {
    println!(
        "{}",
        serde_json::json!({"measure": measure, "value": value, "unit": unit, "detail": detail, "compare": compare})
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, quick) = (args[1].as_str(), args.get(2).is_some_and(|m| m == "quick"));
    let pool = default_postgress_pool(url).await;
    let cqrs = postgres_cqrs::<Pool>(pool, vec![], ());

    let n = if quick { 300 } else { 2_000 };
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        cqrs.execute("single", PoolCommand::Reserve { first: i as u64, count: 1 }).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    out(
        "single appends, one command each (aggregate loaded from its events, then appended)",
        rate,
        "events/s",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms (n={n}); no snapshots, so each command replays the stream so far",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            pct(&mut lat, 0.999)
        ),
        "single",
    );

    let batches = if quick { 20 } else { 100 };
    let start = Instant::now();
    for b in 0..batches {
        cqrs.execute("batch", PoolCommand::Reserve { first: b * 100, count: 100 }).await?;
    }
    let rate = (batches * 100) as f64 / start.elapsed().as_secs_f64();
    out("batches of 100 events per command", rate, "events/s", format!("{batches} batches"), "batch100");

    // The replay stream was filled by run.sh with SQL; loading the aggregate
    // reads, decodes and applies every event (a command deciding nothing).
    let start = Instant::now();
    cqrs.execute("replay", PoolCommand::Reserve { first: 0, count: 0 }).await?;
    let took = start.elapsed().as_secs_f64();
    let events: f64 = args.get(3).and_then(|e| e.parse().ok()).unwrap_or(0.0);
    out(
        "replay: load one aggregate (read + decode + apply every event)",
        events / took,
        "events/s",
        format!("{events} events in {took:.2} s"),
        "replay",
    );
    Ok(())
}
