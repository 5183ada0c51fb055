//! The top-up process manager under a live stream.
//!
//! Sets up, in a `MemoryStore` through the real command handler, 50
//! workspaces of 200 users, each with one pool of 5 `SEAT` licences that
//! tops up to 2 free seats (caps high enough never to stop it). Then a
//! feeder appends a live stream of about 10,000 events per second for a few
//! seconds — in ticks of 10 ms, one command file per tick — while a
//! `TopUpManager` follows the log. One command in ten takes a seat (a
//! drain: once a pool is down to its threshold every drain triggers a
//! top-up); the others are reservations, which change no pool.
//!
//! About every millisecond a sampler compares the head with the manager's
//! position: the lag in events, and in milliseconds (how long the oldest
//! event the manager has not handled yet has been stored). It prints their
//! percentiles, the rate actually fed, the top-ups done and how long the
//! manager took to catch up once the feed stopped, then checks that no
//! trigger was topped up twice and every pool ended at its threshold.
//!
//! Run: `cargo bench -p seatledger-app --bench topup`
//! (`SEATLEDGER_BENCH_SECONDS`, `SEATLEDGER_BENCH_RATE` override the
//! duration, default 5 s, and the rate, default 10,000 events/s).

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use seatledger_app::topup::TopUpManager;
use seatledger_app::{decode_stored, CommandHandler, CommandMeta, V7Ids};
use seatledger_codec::parse_command;
use seatledger_domain::*;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKSPACES: u32 = 50;
const USERS: u32 = 200;
/// One command in this many takes a seat.
const DRAIN_EVERY: u64 = 10;
const TICK: Duration = Duration::from_millis(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).single().expect("a valid time") + ChronoDuration::minutes(minutes)
}

/// A command line as the handler takes it.
fn line(n: &mut u128, text: String) -> (usize, Command, CommandMeta) {
    *n += 1;
    let env = parse_command(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let cmd = Command { at: env.at.expect("bench lines carry `at`"), body: env.body };
    (*n as usize, cmd, CommandMeta::new("bench", "cli", uuid::Uuid::now_v7()))
}

async fn setup(handler: &CommandHandler, n: &mut u128) {
    let mut lines = vec![line(n, r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#.to_owned())];
    for w in 0..WORKSPACES {
        let t = at(0).to_rfc3339();
        for text in [
            format!(
                r#"{{"command":"create_workspace","workspace":"w{w}","at":"{t}","name":"W","billing_mode":"single","created_on":"2024-03-01"}}"#
            ),
            format!(
                r#"{{"command":"open_billing_account","workspace":"w{w}","at":"{t}","account":"a","name":"A","currency":"EUR"}}"#
            ),
            format!(r#"{{"command":"create_organization","workspace":"w{w}","at":"{t}","org":"hq","name":"HQ"}}"#),
            format!(
                r#"{{"command":"create_subscription","workspace":"w{w}","at":"{t}","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{{"ordered_by":"ops"}},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}}"#
            ),
            format!(
                r#"{{"command":"configure_licences","workspace":"w{w}","at":"{t}","sku":"SEAT","settings":{{"top_up":{{"vacant_seat_threshold":2,"max_per_top_up":1000,"max_per_month":1000000}}}}}}"#
            ),
        ] {
            lines.push(line(n, text));
        }
        for u in 0..USERS {
            lines.push(line(n, format!(r#"{{"command":"add_user","workspace":"w{w}","at":"{t}","user":"u{u}","org":"hq","profile":{{"first_name":"U","last_name":"{u}","email":"u{u}@w{w}.example","username":"u{u}"}}}}"#)));
        }
    }
    for chunk in lines.chunks(1_000) {
        handler.apply_all(chunk, false).await.expect("the setup is accepted");
    }
}

/// The `i`-th command of the live stream.
fn live_command(i: u64, drained: &mut BTreeMap<u32, u32>) -> String {
    let t = at(60 + (i / 1_000) as i64).to_rfc3339();
    let phase = i % DRAIN_EVERY; // (`is_multiple_of` is newer than the workspace's rust-version)
    if phase == 0 {
        // Drains go round the workspaces in turn.
        let w = ((i / DRAIN_EVERY) % u64::from(WORKSPACES)) as u32;
        let next = drained.entry(w).or_insert(0);
        if *next < USERS {
            let u = *next;
            *next += 1;
            return format!(
                r#"{{"command":"assign_module","workspace":"w{w}","at":"{t}","sku":"SEAT","target":{{"user":"u{u}"}}}}"#
            );
        }
    }
    let w = (i % u64::from(WORKSPACES)) as u32;
    format!(
        r#"{{"command":"record_reservation","workspace":"w{w}","at":"{t}","reservation":"r{i}","user":"u0","starts_at":"{t}","ends_at":"{t}"}}"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "  {name:<22} p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  max {:>8.1}",
        percentile(&values, 50.0),
        percentile(&values, 90.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(0.0)
    );
}

fn main() {
    let seconds = env_or("SEATLEDGER_BENCH_SECONDS", 5);
    let rate = env_or("SEATLEDGER_BENCH_RATE", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async move {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let feeder = CommandHandler::new(store.clone(), Arc::new(V7Ids));
        let mut n = 0u128;
        let t = Instant::now();
        setup(&feeder, &mut n).await;
        let setup_events = store.head_position().await.expect("a head");
        println!(
            "setup: {WORKSPACES} workspaces × {USERS} users, {setup_events} events in {:.2} s",
            t.elapsed().as_secs_f64()
        );

        let manager_handler = Arc::new(CommandHandler::new(store.clone(), Arc::new(V7Ids)));
        let mut manager = TopUpManager::new(manager_handler).with_poll_interval(Duration::from_millis(1));
        manager.run_to_head().await.expect("the manager starts");
        let progress = manager.progress();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let follower = tokio::spawn(async move {
            let report = manager
                .follow(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
                .expect("the manager follows");
            (report, manager.position())
        });

        // The sampler: lag in events and in milliseconds, every millisecond.
        let (sampling_tx, sampling_rx) = tokio::sync::watch::channel(true);
        let sampler = {
            let store = store.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut behind = vec![];
                let mut lag_ms = vec![];
                while *sampling_rx.borrow() {
                    let head = store.head_position().await.expect("a head");
                    let at = *progress.borrow();
                    let events = head.saturating_sub(at);
                    let ms = if events == 0 {
                        0.0
                    } else {
                        match store.read_all(at, 1).await.expect("a read").first() {
                            Some(e) => (Utc::now() - e.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1_000.0,
                            None => 0.0,
                        }
                    };
                    behind.push(events as f64);
                    lag_ms.push(ms.max(0.0));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (behind, lag_ms)
            })
        };

        // The feeder: one command file per tick, keeping to the rate on average.
        let total = rate * seconds;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut refused = 0usize;
        let mut drained = BTreeMap::new();
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < total {
            interval.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if due <= sent {
                continue;
            }
            let batch: Vec<_> = (sent..due).map(|i| line(&mut n, live_command(i, &mut drained))).collect();
            for chunk in batch.chunks(5_000) {
                let report = feeder.apply_all(chunk, true).await.expect("the feed is stored");
                refused += report.rejected.len();
            }
            sent = due;
        }
        let fed_in = started.elapsed();
        let head_at_stop = store.head_position().await.expect("a head");
        let stopped = Instant::now();
        let mut rx = progress.clone();
        let mut catch_up = None;
        loop {
            let head = store.head_position().await.expect("a head");
            if *rx.borrow() >= head {
                // Caught up with the head, its own last top-ups included;
                // then make sure nothing else arrives.
                catch_up.get_or_insert_with(|| stopped.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
                if store.head_position().await.expect("a head") == head && *rx.borrow() >= head {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(1), rx.changed()).await;
        }
        let catch_up = catch_up.unwrap_or_default();
        let _ = sampling_tx.send(false);
        let (behind, lag_ms) = sampler.await.expect("the sampler ends");
        let _ = stop_tx.send(true);
        let (report, position) = follower.await.expect("the manager ends");

        // Checks: one top-up per trigger; every pool at its threshold.
        let mut per_trigger: BTreeMap<uuid::Uuid, u32> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 10_000).await.expect("a read");
            let Some(last) = page.last().map(|e| e.position) else { break };
            after = last;
            for stored in page {
                if let Some(d) = decode_stored(stored).expect("readable") {
                    if let Event::QuantityChanged { reason: QuantityReason::AutomaticTopUp { trigger_event }, .. } =
                        d.event
                    {
                        *per_trigger.entry(trigger_event).or_default() += 1;
                    }
                }
            }
        }
        let twice = per_trigger.values().filter(|c| **c > 1).count();
        let mut off_threshold = 0;
        let pool = PoolKey { scope: PoolScope::Workspace, sku: Sku::new("SEAT").expect("a SKU") };
        for w in 0..WORKSPACES {
            let id = WorkspaceId::new(format!("w{w}")).expect("an id");
            let (_, ws) = feeder.load(Some(&id)).await.expect("a load");
            let ws = ws.expect("the workspace");
            let day = at(60).date_naive();
            if ws.pool_total_on(&pool, day).saturating_sub(ws.pool_assigned(&pool)) != 2 {
                off_threshold += 1;
            }
        }

        let sampled_for = started.elapsed();
        println!(
            "feed: {sent} commands in {:.2} s = {:.0} events/s offered (target {rate}/s); {refused} refused",
            fed_in.as_secs_f64(),
            sent as f64 / fed_in.as_secs_f64()
        );
        println!(
            "manager: {} live events read (its own top-ups included), {} top-ups from {} attempts; \
             caught up {:.1} ms after the feed stopped (head {head_at_stop} then, position {position} at the end)",
            report.events_read,
            report.topped_up(),
            report.attempts.len(),
            catch_up.as_secs_f64() * 1_000.0
        );
        println!(
            "lag over {} samples, one every {:.2} ms on average:",
            behind.len(),
            sampled_for.as_secs_f64() * 1_000.0 / behind.len().max(1) as f64
        );
        summary("events behind", behind);
        summary("milliseconds behind", lag_ms);
        println!(
            "checks: {} triggers topped up, {twice} of them twice; {off_threshold} of {WORKSPACES} pools off their threshold",
            per_trigger.len()
        );
        assert_eq!(twice, 0, "a trigger was topped up twice");
        assert_eq!(off_threshold, 0, "a pool ended away from its threshold");
    });
}
