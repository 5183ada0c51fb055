//! Invoices over a year of history.
//!
//! Builds, in memory and deterministically, the 2024 history of 1,000
//! workspaces of 200 users each — users added, modules assigned directly
//! and through a group, status flips during the year, per-licence
//! subscriptions whose quantity changes every month, per-active-user module
//! pricing subscriptions — as encoded `StoredEvent`s imported into a
//! `MemoryStore` (not through the command path). Then it times:
//!
//! 1. folding every event into `InvoiceInputs` once (`fold_inputs`, one
//!    pass over the log: read, decode, apply);
//! 2. computing every invoice of one month over all workspaces from those
//!    inputs with `workspace_invoices`.
//!
//! Run: `cargo bench -p seatledger-app --bench invoices`.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use seatledger_app::invoicing::{fold_inputs, AsOf};
use seatledger_codec::encode;
use seatledger_domain::*;
use seatledger_projections::invoice::workspace_invoices;
use seatledger_store::{EventMetadata, EventStore, MemoryStore, StoredEvent, SystemClock};
use std::collections::HashMap;
use std::time::Instant;

/// Workspaces built; `SEATLEDGER_BENCH_WORKSPACES` overrides it (a smaller
/// run is handy under a profiler).
const WORKSPACES: u32 = 1_000;
const USERS: u32 = 200;
const SEED: u64 = 0x5EA7_1ED6_E42B_2024;
/// The month invoiced: the last of the year, 31 days, the longest timelines.
const MONTH: (i32, u32) = (2024, 12);

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

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A random instant of 2024 from day `from` (0-based day of the year) on.
    fn instant_from(&mut self, from: DateTime<Utc>) -> DateTime<Utc> {
        let end = year_start() + Duration::days(366);
        let span = (end - from).num_seconds().max(1) as u64;
        from + Duration::seconds(self.below(span) as i64)
    }
}

fn year_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn day(d: i64) -> DateTime<Utc> {
    year_start() + Duration::days(d)
}

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

/// One generated fact: when it takes effect, its workspace (`None`: the
/// catalog), its order within the workspace, and the event.
struct Fact {
    at: DateTime<Utc>,
    workspace: Option<u32>,
    seq: u32,
    event: Event,
}

fn catalog() -> Vec<Fact> {
    let product = |s: &str, charge_model| Event::ProductDefined {
        sku: sku(s),
        name: s.to_lowercase(),
        kind: ProductKind::Module,
        charge_model,
        product_class: None,
        sales_unit: "unit".into(),
        manufacturer: None,
    };
    [
        product("SEAT", ChargeModel::PerLicence),
        product("HYBRID", ChargeModel::PerActiveUser),
        product("DESK", ChargeModel::PerActiveUser),
        product("ROOMS", ChargeModel::PerActiveUser),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, event)| Fact { at: year_start() - Duration::days(1), workspace: None, seq: i as u32, event })
    .collect()
}

#[allow(clippy::too_many_arguments)]
fn terms(
    id: &str,
    sku_: &str,
    currency: Currency,
    start: NaiveDate,
    quantity: u32,
    price: Decimal,
    policy: Option<CountingPolicy>,
    discount: Percent,
) -> SubscriptionTerms {
    SubscriptionTerms {
        subscription: SubscriptionId::new(id).unwrap(),
        account: AccountId::new("a").unwrap(),
        organization: None,
        sku: sku(sku_),
        parent: None,
        bundle_role: BundleRole::Standalone,
        name: format!("{sku_} subscription"),
        friendly_name: None,
        effective_start: start,
        billable: true,
        trial: false,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
        price_list: PriceListId::new("std").unwrap(),
        selling_per_unit: Money::new(price, currency),
        cost_per_unit: Money::zero(currency),
        discount,
        taxable: true,
        exempt_from_indexation: false,
        product_class: None,
        sales_unit: "unit".into(),
        description: None,
        provider: None,
        guest_selling_per_unit: Some(Money::new(price / Decimal::TWO, currency)),
        counting_policy: policy,
    }
}

fn quantity_changed(sub: &str, from: u32, to: u32) -> Event {
    Event::QuantityChanged {
        subscription: SubscriptionId::new(sub).unwrap(),
        pool: PoolKey { scope: PoolScope::Workspace, sku: sku("SEAT") },
        from,
        to,
        reason: QuantityReason::Order,
        order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
        channel: SubscriptionChannel::Portal,
    }
}

/// The year of one workspace.
fn workspace(w: u32, rng: &mut Rng) -> Vec<Fact> {
    let mut facts = vec![];
    let mut push = |at: DateTime<Utc>, event: Event| {
        let seq = facts.len() as u32;
        facts.push(Fact { at, workspace: Some(w), seq, event });
    };
    let id = WorkspaceId::new(format!("w{w:04}")).unwrap();
    let t0 = year_start() + Duration::seconds(i64::from(w));
    let (currency, unit) = match w % 3 {
        0 => ("EUR", Decimal::new(1250, 2)),
        1 => ("JPY", Decimal::from(1800)),
        _ => ("BHD", Decimal::new(4725, 3)),
    };
    let currency = Currency::from_code(currency).unwrap();
    let discount = Percent::new(Decimal::from(rng.below(4) * 5), "discount").unwrap();
    push(
        t0,
        Event::WorkspaceCreated {
            workspace: id,
            name: format!("Workspace {w}"),
            billing_mode: BillingMode::Single,
            created_on: t0.date_naive(),
            legacy_plan: None,
        },
    );
    push(
        t0,
        Event::BillingAccountOpened {
            account: AccountId::new("a").unwrap(),
            name: "Main".into(),
            currency,
            tax_rate: Percent::new(Decimal::from(20), "tax rate").unwrap(),
            billing_contract: None,
        },
    );
    let org = OrgId::new("o").unwrap();
    push(t0, Event::OrganizationCreated { org: org.clone(), name: "HQ".into(), parent: None, account: None });
    let group = GroupId::new("g").unwrap();
    push(t0, Event::GroupCreated { group: group.clone(), name: "Team".into() });
    push(t0, Event::ModuleAssigned { sku: sku("DESK"), target: ModuleTarget::Group(group.clone()) });

    // Per-active-user module pricing, for the whole year.
    let policies =
        [CountingPolicy::EndOfPeriod, CountingPolicy::Peak, CountingPolicy::AnyTime, CountingPolicy::DailyProrated];
    for (i, module) in ["HYBRID", "DESK", "ROOMS"].into_iter().enumerate() {
        let policy = policies[(w as usize + i) % policies.len()];
        let t = terms(&format!("m-{module}"), module, currency, t0.date_naive(), 0, unit, Some(policy), discount);
        push(t0, Event::SubscriptionCreated { terms: Box::new(t) });
    }

    // Per-licence subscriptions: one from January, and for a quarter of the
    // workspaces a second one from some day of the year; the quantity
    // changes once a month, on some day at some time.
    let mut seat_subs = vec![("seats".to_owned(), t0)];
    let quarter = w % 4; // (`is_multiple_of` is newer than the workspace's rust-version)
    if quarter == 0 {
        seat_subs.push(("seats-extra".to_owned(), day(rng.below(300) as i64 + 30)));
    }
    for (sub, start) in seat_subs {
        let mut q = 50 + rng.below(150) as u32;
        let t = terms(&sub, "SEAT", currency, start.date_naive(), q, unit * Decimal::TWO, None, discount);
        push(start, Event::SubscriptionCreated { terms: Box::new(t) });
        push(start, quantity_changed(&sub, 0, q));
        for month in 1..=12u32 {
            let first = Utc.with_ymd_and_hms(2024, month, 1, 0, 0, 0).unwrap();
            let at = first + Duration::days(rng.below(28) as i64) + Duration::seconds(rng.below(86_400) as i64);
            if at <= start {
                continue;
            }
            let to = (q as i64 + rng.below(41) as i64 - 20).clamp(1, 1_000) as u32;
            if to != q {
                push(at, quantity_changed(&sub, q, to));
                q = to;
            }
        }
    }

    // Users: most from January, the rest joining during the year.
    for u in 0..USERS {
        let user = UserId::new(format!("u{u}")).unwrap();
        let added = if rng.percent(75) {
            t0 + Duration::seconds(1 + rng.below(31 * 86_400) as i64)
        } else {
            rng.instant_from(day(31))
        };
        let kind = if rng.percent(10) { UserKind::Guest } else { UserKind::Regular };
        push(
            added,
            Event::UserAdded {
                user: user.clone(),
                org: org.clone(),
                profile: UserProfile {
                    first_name: "First".into(),
                    last_name: format!("Last{u}"),
                    email: format!("u{u}@w{w}.example"),
                    username: format!("u{u}"),
                    kind,
                    audience: Audience::Internal,
                    administrator: false,
                },
                status: UserStatus::Active,
                source: UserSource::Manual,
            },
        );
        let later = |rng: &mut Rng| added + Duration::seconds(1) + Duration::seconds(rng.below(86_400 * 3) as i64);
        let mut holds = [false, false];
        for (m, (module, p)) in [("HYBRID", 80), ("ROOMS", 30)].into_iter().enumerate() {
            if rng.percent(p) {
                holds[m] = true;
                push(later(rng), Event::ModuleAssigned { sku: sku(module), target: ModuleTarget::User(user.clone()) });
            }
        }
        if rng.percent(40) {
            push(later(rng), Event::GroupMemberAdded { group: group.clone(), user: user.clone() });
        }
        // A few module changes during the year.
        let mut t = added + Duration::days(3);
        for _ in 0..rng.below(4) {
            t = rng.instant_from(t);
            let m = rng.below(2) as usize;
            let target = ModuleTarget::User(user.clone());
            let module = sku(["HYBRID", "ROOMS"][m]);
            let event = if holds[m] {
                Event::ModuleUnassigned { sku: module, target }
            } else {
                Event::ModuleAssigned { sku: module, target }
            };
            holds[m] = !holds[m];
            push(t, event);
        }
        // Status flips a few times a year: active ⇄ inactive, sometimes deleted at the end.
        let mut status = UserStatus::Active;
        let mut t = added + Duration::days(3);
        for _ in 0..2 + rng.below(4) {
            t = rng.instant_from(t);
            let to = if status == UserStatus::Active { UserStatus::Inactive } else { UserStatus::Active };
            push(
                t,
                Event::UserStatusChanged { user: user.clone(), from: status, to, source: StatusChangeSource::Manual },
            );
            status = to;
        }
        if rng.percent(3) {
            t = rng.instant_from(t);
            let event = Event::UserStatusChanged {
                user: user.clone(),
                from: status,
                to: UserStatus::Deleted,
                source: StatusChangeSource::Manual,
            };
            push(t, event);
        }
    }
    facts
}

/// The whole year as stored events, in recorded order (recorded when effective).
fn history(workspaces: u32) -> Vec<StoredEvent> {
    let mut rng = Rng(SEED);
    let mut facts = catalog();
    for w in 0..workspaces {
        facts.extend(workspace(w, &mut rng));
    }
    facts.sort_by_key(|f| (f.at, f.workspace, f.seq));
    let mut versions: HashMap<Option<u32>, u64> = HashMap::new();
    let mut streams: HashMap<Option<u32>, String> = HashMap::new();
    facts
        .into_iter()
        .enumerate()
        .map(|(n, f)| {
            let encoded = encode(&f.event);
            let version = versions.entry(f.workspace).or_insert(0);
            let stream = streams
                .entry(f.workspace)
                .or_insert_with(|| match f.workspace {
                    None => StreamId::Catalog.name(),
                    Some(w) => StreamId::Workspace(WorkspaceId::new(format!("w{w:04}")).unwrap()).name(),
                })
                .clone();
            let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n as u128);
            let stored = StoredEvent {
                position: 0,
                id,
                stream: stream.into(),
                stream_version: *version,
                event_type: encoded.event_type.into(),
                schema_version: encoded.schema_version,
                recorded_at: f.at,
                metadata: EventMetadata {
                    effective_at: f.at,
                    actor: "bench".into(),
                    channel: "cli".into(),
                    correlation_id: id,
                    causation_id: None,
                    command_id: None,
                },
                payload: encoded.payload,
                hash: String::new(),
            };
            *version += 1;
            stored
        })
        .collect()
}

/// Peak resident set size so far, from `/proc/self/status`.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l["VmHWM:".len()..].trim().to_owned()))
        .unwrap_or_else(|| "n/a".to_owned())
}

fn mib(kb: &str) -> String {
    kb.trim_end_matches(" kB").trim().parse::<f64>().map_or(kb.to_owned(), |k| format!("{:.0} MiB", k / 1024.0))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let workspaces =
        std::env::var("SEATLEDGER_BENCH_WORKSPACES").ok().and_then(|w| w.parse().ok()).unwrap_or(WORKSPACES);
    rt.block_on(async {
        let t = Instant::now();
        let events = history(workspaces);
        let count = events.len() as u64;
        let generated = t.elapsed();
        let t = Instant::now();
        let store = MemoryStore::new(std::sync::Arc::new(SystemClock));
        let mut events = events.into_iter();
        loop {
            let batch: Vec<StoredEvent> = events.by_ref().take(10_000).collect();
            if batch.is_empty() {
                break;
            }
            store.import(batch).await.unwrap();
        }
        let imported = t.elapsed();
        let rss_built = peak_rss();

        // 1. One pass over the log: read, decode, fold.
        let t = Instant::now();
        let inputs = fold_inputs(&store, AsOf::Head).await.unwrap();
        let fold = t.elapsed();
        let rss_folded = peak_rss();

        // 2. Every invoice of the month, from the same inputs.
        let month = Month::new(MONTH.0, MONTH.1).unwrap();
        let t = Instant::now();
        let mut invoices = 0u64;
        let mut lines = 0u64;
        let mut totals: HashMap<Currency, Decimal> = HashMap::new();
        for id in inputs.workspaces.keys() {
            for invoice in workspace_invoices(&inputs, id, month).unwrap() {
                invoices += 1;
                lines += invoice.lines.len() as u64;
                *totals.entry(invoice.currency).or_default() += invoice.total.amount;
            }
        }
        let compute = t.elapsed();
        let rss_end = peak_rss();

        let mut totals: Vec<String> = totals.into_iter().map(|(c, a)| format!("{a} {c}")).collect();
        totals.sort();
        println!();
        println!(
            "Invoices over a year of history ({workspaces} workspaces × {USERS} users, 2024; invoiced month {month})"
        );
        println!();
        println!("| measure | value |");
        println!("|---|---|");
        println!("| events | {count} |");
        println!("| generate + encode | {:.2} s |", generated.as_secs_f64());
        println!("| import into MemoryStore | {:.2} s |", imported.as_secs_f64());
        println!("| fold into InvoiceInputs (read + decode + apply) | {:.2} s |", fold.as_secs_f64());
        println!("| fold throughput | {:.0} events/s |", count as f64 / fold.as_secs_f64());
        println!("| compute {month} ({invoices} invoices, {lines} lines) | {:.2} s |", compute.as_secs_f64());
        println!("| compute throughput | {:.0} invoices/s |", invoices as f64 / compute.as_secs_f64());
        println!(
            "| peak RSS after build / fold / compute | {} / {} / {} |",
            mib(&rss_built),
            mib(&rss_folded),
            mib(&rss_end)
        );
        println!();
        println!("invoiced totals: {}", totals.join(", "));
    });
}
