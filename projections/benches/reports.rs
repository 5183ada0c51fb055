//! Licence reports over a year of daily series for 1,000 pools.
//!
//! Builds, in memory and deterministically, the 2024 history of one
//! workspace with 1,000 seat-limited SKUs (one pool each): per pool one or
//! two subscriptions (some trials that lapse, some deactivated in
//! November), 30 users added through the year and assigned directly or
//! through the pool's group, unassignments, deletions, group departures,
//! monthly manual additions, two automatic top-ups a month and quarterly
//! orders — about 116,000 events, fed to `LicenceReports` in business-time
//! order (not through the store or the codec). Then it times:
//!
//! 1. folding every event into the projection;
//! 2. computing the yearly report (366 daily rows) of every one of the
//!    1,000 pools;
//! 3. for comparison, the December report of every pool.
//!
//! Run: `cargo bench -p seatledger-projections --bench reports`. It exits
//! with a failure when the 1,000 yearly reports take a second or more.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use seatledger_domain::*;
use seatledger_projections::reports::{LicenceReports, ReportPool, ReportRange};
use seatledger_projections::{Projection, Recorded};
use std::process::ExitCode;
use std::time::Instant;

const POOLS: u32 = 1_000;
const USERS_PER_POOL: u32 = 30;
const SEED: u64 = 0x2E90_2750_A11C_E024;

/// xorshift64*: small, deterministic, good enough to shape a history.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An instant in 2024 at or after `from_day` (0-based day of the year).
    fn instant(&mut self, from_day: u64) -> DateTime<Utc> {
        self.instant_within(from_day, 366 - from_day.min(365))
    }

    /// An instant in the `days` days from `from_day` on.
    fn instant_within(&mut self, from_day: u64, days: u64) -> DateTime<Utc> {
        let day = from_day + self.below(days.max(1));
        start() + Duration::days(day as i64) + Duration::seconds(self.below(86_400) as i64)
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("a valid instant")
}

fn id<T: std::str::FromStr>(text: String) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("a valid id")
}

fn terms(sub: &str, sku: &Sku, quantity: u32, effective_start: NaiveDate, trial: bool) -> SubscriptionTerms {
    let eur = Currency::from_code("EUR").expect("EUR");
    SubscriptionTerms {
        subscription: id(sub.to_owned()),
        account: id("main".to_owned()),
        organization: None,
        sku: sku.clone(),
        parent: None,
        bundle_role: BundleRole::Standalone,
        name: "Seats".into(),
        friendly_name: None,
        effective_start,
        billable: true,
        trial,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: OrderDetails::default(),
        price_list: id("standard".to_owned()),
        selling_per_unit: Money::zero(eur),
        cost_per_unit: Money::zero(eur),
        discount: Percent::ZERO,
        taxable: false,
        exempt_from_indexation: false,
        product_class: None,
        sales_unit: "licence".into(),
        description: None,
        provider: None,
        guest_selling_per_unit: None,
        counting_policy: None,
    }
}

fn quantity(sub: &str, sku: &Sku, from: u32, to: u32, reason: QuantityReason) -> Event {
    Event::QuantityChanged {
        subscription: id(sub.to_owned()),
        pool: PoolKey { scope: PoolScope::Workspace, sku: sku.clone() },
        from,
        to,
        reason,
        order: OrderDetails {
            order_reference: Some(format!("ref-{sub}-{to}")),
            order_date: None,
            ordered_by: "buyer@bench.example".into(),
            order_thru: None,
        },
        channel: SubscriptionChannel::Portal,
    }
}

/// The history of one pool, as (effective time, event), unsorted.
fn pool_history(p: u32, rng: &mut Rng, out: &mut Vec<(DateTime<Utc>, Event)>) {
    let sku: Sku = id(format!("SKU-{p:04}"));
    let jan1 = start().date_naive();
    let main = format!("s{p}");
    let mut q = 20 + rng.below(20) as u32;
    out.push((start(), Event::SubscriptionCreated { terms: Box::new(terms(&main, &sku, q, jan1, false)) }));
    out.push((start(), quantity(&main, &sku, 0, q, QuantityReason::Order)));
    // (`is_multiple_of` is newer than the workspace's rust-version)
    let (by_four, by_ten) = (p % 4, p % 10);
    if by_four == 0 {
        let trial = format!("t{p}");
        let begins = rng.instant(0);
        out.push((
            begins,
            Event::SubscriptionCreated { terms: Box::new(terms(&trial, &sku, 5, begins.date_naive(), true)) },
        ));
        let ends = begins + Duration::days(30);
        out.push((ends, Event::TrialEnded { subscription: id(trial), converted: false, ended_on: ends.date_naive() }));
    }
    if by_ten == 0 {
        let deactivate_on = NaiveDate::from_ymd_opt(2024, 11, 15).expect("a date");
        out.push((
            rng.instant(200),
            Event::DeactivationScheduled { subscription: id(main.clone()), deactivate_on: Some(deactivate_on) },
        ));
    }
    // Licence additions, in time order so that `from` follows `to`.
    let mut changes: Vec<(DateTime<Utc>, QuantityReason, u32)> = vec![];
    for month in 0..12u64 {
        let first = month * 30;
        changes.push((rng.instant_within(first, 30), QuantityReason::ManualAddition, 1 + rng.below(3) as u32));
        for n in 0..2u128 {
            let trigger = uuid::Uuid::from_u128((u128::from(p) << 32) | (u128::from(month) << 8) | n);
            let reason = QuantityReason::AutomaticTopUp { trigger_event: trigger };
            changes.push((rng.instant_within(first, 30), reason, 1 + rng.below(2) as u32));
        }
        if month % 3 == 2 {
            changes.push((rng.instant_within(first, 30), QuantityReason::Order, 5));
        }
    }
    changes.sort_by_key(|c| c.0);
    for (at, reason, n) in changes {
        out.push((at, quantity(&main, &sku, q, q + n, reason)));
        q += n;
    }
    // Users, directly or through the pool's group.
    let group: GroupId = id(format!("g{p}"));
    out.push((start(), Event::GroupCreated { group: group.clone(), name: format!("Group {p}") }));
    out.push((
        start() + Duration::days(10),
        Event::ModuleAssigned { sku: sku.clone(), target: ModuleTarget::Group(group.clone()) },
    ));
    for u in 0..USERS_PER_POOL {
        let user: UserId = id(format!("u{p}-{u}"));
        let added = rng.instant_within(0, 180);
        out.push((
            added,
            Event::UserAdded {
                user: user.clone(),
                org: id("hq".to_owned()),
                profile: UserProfile {
                    first_name: "U".into(),
                    last_name: format!("{p}-{u}"),
                    email: format!("u{p}-{u}@bench.example"),
                    username: format!("u{p}-{u}"),
                    kind: UserKind::Regular,
                    audience: Audience::Internal,
                    administrator: false,
                },
                status: UserStatus::Active,
                source: UserSource::Manual,
            },
        ));
        let holds_from = added + Duration::hours(1 + rng.below(200) as i64);
        if u % 3 == 0 {
            out.push((holds_from, Event::GroupMemberAdded { group: group.clone(), user: user.clone() }));
            if rng.below(4) == 0 {
                out.push((
                    holds_from + Duration::days(1 + rng.below(120) as i64),
                    Event::GroupMemberRemoved { group: group.clone(), user: user.clone() },
                ));
            }
        } else {
            out.push((
                holds_from,
                Event::ModuleAssigned { sku: sku.clone(), target: ModuleTarget::User(user.clone()) },
            ));
            if rng.below(4) == 0 {
                out.push((
                    holds_from + Duration::days(1 + rng.below(120) as i64),
                    Event::ModuleUnassigned { sku: sku.clone(), target: ModuleTarget::User(user.clone()) },
                ));
            }
        }
        if rng.below(10) == 0 {
            out.push((
                holds_from + Duration::days(1 + rng.below(150) as i64),
                Event::UserStatusChanged {
                    user,
                    from: UserStatus::Active,
                    to: UserStatus::Deleted,
                    source: StatusChangeSource::Manual,
                },
            ));
        }
    }
}

fn main() -> ExitCode {
    let mut rng = Rng(SEED);
    let workspace: WorkspaceId = id("bench".to_owned());
    let mut catalog = vec![];
    for p in 0..POOLS {
        catalog.push(Event::ProductDefined {
            sku: id(format!("SKU-{p:04}")),
            name: format!("Seat licence {p}"),
            kind: ProductKind::Module,
            charge_model: ChargeModel::PerLicence,
            product_class: None,
            sales_unit: "licence".into(),
            manufacturer: None,
        });
    }
    let before = start() - Duration::days(1);
    let mut history: Vec<(DateTime<Utc>, Event)> = vec![
        (
            before,
            Event::WorkspaceCreated {
                workspace: workspace.clone(),
                name: "Bench".into(),
                billing_mode: BillingMode::Single,
                created_on: before.date_naive(),
                legacy_plan: None,
            },
        ),
        (
            before,
            Event::OrganizationCreated { org: id("hq".to_owned()), name: "HQ".into(), parent: None, account: None },
        ),
    ];
    for p in 0..POOLS {
        pool_history(p, &mut rng, &mut history);
    }
    // A ledger records facts roughly in business-time order.
    history.sort_by_key(|(at, _)| *at);

    let catalog_stream = StreamId::Catalog;
    let workspace_stream = StreamId::Workspace(workspace.clone());
    let recorded = |position: u64, stream, at, event| Recorded {
        position,
        id: uuid::Uuid::from_u128(u128::from(position)),
        stream,
        stream_version: position,
        event_type: "bench",
        recorded_at: at,
        effective_at: at,
        actor: "bench",
        channel: "bench",
        event,
    };
    let events = catalog.len() + history.len();
    let fold_started = Instant::now();
    let mut reports = LicenceReports::default();
    let mut position = 0;
    for event in &catalog {
        position += 1;
        reports.apply(&recorded(position, &catalog_stream, before, event));
    }
    for (at, event) in &history {
        position += 1;
        reports.apply(&recorded(position, &workspace_stream, *at, event));
    }
    let fold = fold_started.elapsed();

    let pools: Vec<ReportPool> =
        (0..POOLS).map(|p| ReportPool::new(workspace.clone(), None, id(format!("SKU-{p:04}")))).collect();
    let year = match ReportRange::custom(start().date_naive(), NaiveDate::from_ymd_opt(2024, 12, 31).expect("a date")) {
        Ok(range) => range,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let december = match Month::new(2024, 12).map(ReportRange::month) {
        Ok(Ok(range)) => range,
        _ => return ExitCode::FAILURE,
    };

    let mut checksum = 0u64;
    let mut rows = 0usize;
    let yearly_started = Instant::now();
    for pool in &pools {
        match reports.pool_report(pool, year) {
            Ok(r) => {
                checksum = checksum.wrapping_add(r.available_at_end + r.total_licences_added + r.daily.len() as u64);
                rows += r.daily.len();
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let yearly = yearly_started.elapsed();

    let monthly_started = Instant::now();
    for pool in &pools {
        match reports.pool_report(pool, december) {
            Ok(r) => checksum = checksum.wrapping_add(r.available_at_end),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let monthly = monthly_started.elapsed();

    let sample = reports.pool_report(&pools[0], year).ok();
    println!("licence reports: 1 workspace, {POOLS} pools, {USERS_PER_POOL} users per pool, {events} events of 2024");
    println!("  fold every event into LicenceReports: {:>9.1} ms", fold.as_secs_f64() * 1e3);
    println!(
        "  {POOLS} yearly reports ({rows} daily rows): {:>9.1} ms ({:.1} µs per report)",
        yearly.as_secs_f64() * 1e3,
        yearly.as_secs_f64() * 1e6 / f64::from(POOLS)
    );
    println!(
        "  {POOLS} December reports:                {:>9.1} ms ({:.1} µs per report)",
        monthly.as_secs_f64() * 1e3,
        monthly.as_secs_f64() * 1e6 / f64::from(POOLS)
    );
    if let Some(r) = sample {
        println!(
            "  pool SKU-0000 over the year: utilisation {}%, {} top-ups adding {} licences, {} available at the end",
            r.average_utilisation_percent.map_or("n/a".to_owned(), |p| p.to_string()),
            r.total_top_ups,
            r.total_licences_added,
            r.available_at_end
        );
    }
    println!("  (checksum {checksum})");
    if yearly.as_secs_f64() >= 1.0 {
        eprintln!("the {POOLS} yearly reports took {:.3} s: they must take well under a second", yearly.as_secs_f64());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
