//! The workload generator: a realistic licensing history, seeded and
//! deterministic, as command JSON Lines (the format `seatledger apply` reads,
//! see `seatledger_codec::commands`).
//!
//! The history: a catalog of three modules (SEAT, per licence and seat
//! limited; HYBRID and DESK, per active user); `workspaces` workspaces
//! spread over the three billing modes in turn (single, assigned, pooled),
//! each with its billing accounts (EUR, plus USD for the second account of
//! an assigned workspace), two organizations, a per-licence SEAT
//! subscription per pool and per-active-user HYBRID and DESK subscriptions
//! per account, top-up and alert settings on every seat pool, two groups
//! holding HYBRID and DESK, and `users` users, each in a group and holding
//! a SEAT licence. Then, every month for `months` months from January 2024:
//! `reservations` desk reservations per user, status flips (5 % of users a
//! month, active ⇄ inactive), seat churn (2 % of users lose or regain their
//! SEAT licence), one quantity change per seat subscription and one top-up
//! per seat pool, shuffled and spread over the month.
//!
//! Everything — ids, command ids, times, choices — comes from one [`Rng`]
//! seeded with `seed`; nothing reads a clock. The same parameters give the
//! same bytes. Quantities are kept above what is assigned, so every command
//! is accepted: a history with refusals would measure the refusal path.

use crate::rng::Rng;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::{json, Map, Value};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenParams {
    pub seed: u64,
    pub workspaces: u32,
    /// Users per workspace.
    pub users: u32,
    /// Months of activity, from January 2024.
    pub months: u32,
    /// Desk reservations per user and month.
    pub reservations: u32,
}

impl Default for GenParams {
    fn default() -> Self {
        Self { seed: 0x5EA7_1ED6_E42B_2024, workspaces: 30, users: 20, months: 12, reservations: 4 }
    }
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenStats {
    pub commands: u64,
    /// Seat pools (one per workspace, two in assigned mode).
    pub pools: u64,
}

const MODES: [&str; 3] = ["single", "assigned", "pooled"];
const POLICIES: [&str; 3] = ["end_of_period", "peak", "daily_prorated"];
const ACTOR: &str = "ops@bench.example";
/// Licences above the users a seat pool must serve, so that quantity changes
/// and churn never exhaust it.
const HEADROOM: u32 = 10;

/// One seat pool of a workspace: its subscription and (assigned mode) its
/// organization.
#[derive(Debug, Clone)]
struct SeatPool {
    subscription: String,
    organization: Option<String>,
}

/// What the generator must remember of a workspace to stay valid.
#[derive(Debug)]
struct WsState {
    id: String,
    mode: &'static str,
    pools: Vec<SeatPool>,
    /// Per user: inactive, holds a SEAT licence.
    inactive: Vec<bool>,
    seated: Vec<bool>,
    reservation: u64,
}

/// Stream the history, one command line at a time, to `sink`.
pub fn generate<E>(params: &GenParams, mut sink: impl FnMut(&str) -> Result<(), E>) -> Result<GenStats, E> {
    let mut rng = Rng::new(params.seed);
    let mut stats = GenStats::default();
    let mut emit = |rng: &mut Rng, name: &str, ws: Option<&str>, at: DateTime<Utc>, fields: Value| {
        stats.commands += 1;
        sink(&line(rng, name, ws, at, fields))
    };

    let catalog_at = Utc.with_ymd_and_hms(2023, 12, 1, 8, 0, 0).single().unwrap_or_default();
    for (sku, name, model, unit) in [
        ("SEAT", "Seat licence", "per_licence", "licence"),
        ("HYBRID", "Hybrid work", "per_active_user", "user"),
        ("DESK", "Desk booking", "per_active_user", "user"),
    ] {
        emit(
            &mut rng,
            "define_product",
            None,
            catalog_at,
            json!({"sku": sku, "name": name, "kind": "module", "charge_model": model, "sales_unit": unit}),
        )?;
    }

    let mut states: Vec<WsState> = (0..params.workspaces)
        .map(|i| {
            let mode = MODES[i as usize % 3];
            let id = format!("ws-{i:06}");
            let pools = if mode == "assigned" {
                vec![
                    SeatPool { subscription: "seat-eu".into(), organization: Some("eu".into()) },
                    SeatPool { subscription: "seat-us".into(), organization: Some("us".into()) },
                ]
            } else {
                vec![SeatPool { subscription: "seat".into(), organization: None }]
            };
            stats.pools += pools.len() as u64;
            WsState {
                id,
                mode,
                pools,
                inactive: vec![false; params.users as usize],
                seated: vec![true; params.users as usize],
                reservation: 0,
            }
        })
        .collect();

    let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    for ws in &states {
        let at = spread(start, Duration::hours(6), 0);
        let mut cmds = setup(&mut rng, ws, params.users, start);
        let n = cmds.len() as u32;
        for (i, (name, fields)) in cmds.drain(..).enumerate() {
            emit(&mut rng, name, Some(&ws.id), at(i as u32, n), fields)?;
        }
    }

    for month in 0..params.months {
        let first = start.checked_add_months(chrono::Months::new(month)).unwrap_or(start);
        let days = first.checked_add_months(chrono::Months::new(1)).map_or(28, |next| (next - first).num_days());
        for ws in &mut states {
            let mut cmds = monthly(&mut rng, ws, params, first, days);
            rng.shuffle(&mut cmds);
            let n = cmds.len() as u32;
            let at = spread(first, Duration::days(days), 6 * 3_600);
            for (i, (name, fields)) in cmds.drain(..).enumerate() {
                emit(&mut rng, name, Some(&ws.id), at(i as u32, n), fields)?;
            }
        }
    }
    Ok(stats)
}

/// Times for `n` commands, evenly spread over `span` from `first` plus
/// `offset_s` seconds, in whole milliseconds, increasing.
fn spread(first: NaiveDate, span: Duration, offset_s: i64) -> impl Fn(u32, u32) -> DateTime<Utc> {
    let base = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default()) + Duration::seconds(offset_s);
    let span_ms = span.num_milliseconds() - offset_s * 1_000 - 1_000;
    move |i, n| base + Duration::milliseconds(span_ms * i64::from(i) / i64::from(n.max(1)))
}

fn line(rng: &mut Rng, name: &str, ws: Option<&str>, at: DateTime<Utc>, fields: Value) -> String {
    let mut map = Map::new();
    map.insert("command".into(), name.into());
    if let Some(ws) = ws {
        map.insert("workspace".into(), ws.into());
    }
    map.insert("at".into(), at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into());
    map.insert("actor".into(), ACTOR.into());
    map.insert("channel".into(), "portal".into());
    map.insert("command_id".into(), rng.uuid().to_string().into());
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    Value::Object(map).to_string()
}

type Cmd = (&'static str, Value);

#[allow(clippy::too_many_arguments)]
fn subscription(
    id: &str,
    account: &str,
    organization: Option<&str>,
    sku: &str,
    currency: &str,
    quantity: u32,
    price: (&str, &str),
    policy: Option<&str>,
    start: NaiveDate,
) -> Cmd {
    let mut v = json!({
        "subscription": id, "account": account, "sku": sku, "name": id,
        "effective_start": start.to_string(), "subscription_channel": "portal", "quantity": quantity,
        "order": {"ordered_by": ACTOR}, "price_list": "std", "currency": currency,
        "selling_per_unit": price.0, "cost_per_unit": price.1,
    });
    if let Value::Object(m) = &mut v {
        if let Some(o) = organization {
            m.insert("organization".into(), o.into());
        }
        if let Some(p) = policy {
            m.insert("counting_policy".into(), p.into());
        }
    }
    ("create_subscription", v)
}

fn setup(rng: &mut Rng, ws: &WsState, users: u32, start: NaiveDate) -> Vec<Cmd> {
    let mut c: Vec<Cmd> = vec![(
        "create_workspace",
        json!({"name": format!("Workspace {}", ws.id), "billing_mode": ws.mode, "created_on": start.to_string()}),
    )];
    let accounts: &[(&str, &str)] = match ws.mode {
        "single" => &[("a1", "EUR")],
        "assigned" => &[("a1", "EUR"), ("a2", "USD")],
        _ => &[("a1", "EUR"), ("a2", "EUR")],
    };
    for (a, cur) in accounts {
        c.push((
            "open_billing_account",
            json!({"account": a, "name": format!("{} {a}", ws.id), "currency": cur, "tax_rate": "20"}),
        ));
    }
    let orgs = org_names(ws.mode);
    for (i, o) in orgs.iter().enumerate() {
        let mut v = json!({"org": o, "name": o});
        if ws.mode == "assigned" {
            if let Value::Object(m) = &mut v {
                m.insert("account".into(), accounts[i].0.into());
            }
        }
        c.push(("create_organization", v));
    }
    let quantity = users + HEADROOM;
    let policy = POLICIES[rng.below(3) as usize];
    match ws.mode {
        "single" => {
            c.push(subscription("seat", "a1", None, "SEAT", "EUR", quantity, ("12.00", "7.00"), None, start));
            c.push(subscription("hybrid", "a1", None, "HYBRID", "EUR", 0, ("5.00", "2.00"), Some(policy), start));
            c.push(subscription("desk", "a1", None, "DESK", "EUR", 0, ("3.00", "1.00"), Some(policy), start));
        }
        "assigned" => {
            for ((a, cur), o) in accounts.iter().zip(orgs) {
                let (seat, hybrid) = (format!("seat-{o}"), format!("hybrid-{o}"));
                c.push(subscription(&seat, a, Some(o), "SEAT", cur, quantity, ("12.00", "7.00"), None, start));
                c.push(subscription(&hybrid, a, Some(o), "HYBRID", cur, 0, ("5.00", "2.00"), Some(policy), start));
                let desk = format!("desk-{o}");
                c.push(subscription(&desk, a, Some(o), "DESK", cur, 0, ("3.00", "1.00"), Some(policy), start));
            }
        }
        _ => {
            c.push(subscription("seat", "a1", None, "SEAT", "EUR", quantity, ("12.00", "7.00"), None, start));
            c.push(subscription("hybrid", "a2", None, "HYBRID", "EUR", 0, ("5.00", "2.00"), Some(policy), start));
            c.push(subscription("desk", "a2", None, "DESK", "EUR", 0, ("3.00", "1.00"), Some(policy), start));
        }
    }
    for pool in &ws.pools {
        let mut v = json!({"sku": "SEAT", "settings": {"alert_threshold": 2,
            "top_up": {"vacant_seat_threshold": 3, "max_per_top_up": 5, "max_per_month": 10}}});
        if let (Value::Object(m), Some(o)) = (&mut v, &pool.organization) {
            m.insert("organization".into(), o.as_str().into());
        }
        c.push(("configure_licences", v));
    }
    for (g, sku) in [("g1", "HYBRID"), ("g2", "DESK")] {
        c.push(("create_group", json!({"group": g, "name": format!("Team {g}")})));
        c.push(("assign_module", json!({"sku": sku, "target": {"group": g}})));
    }
    for u in 0..users {
        let user = format!("u{u}");
        c.push((
            "add_user",
            json!({"user": user, "org": orgs[u as usize % 2], "profile": {
                "first_name": format!("First{u}"), "last_name": format!("Last{}", rng.below(10_000)),
                "email": format!("{user}@{}.example", ws.id), "username": user,
                "kind": "regular", "audience": "internal"}}),
        ));
        c.push(("add_group_member", json!({"group": if u % 2 == 0 { "g1" } else { "g2" }, "user": user})));
        c.push(("assign_module", json!({"sku": "SEAT", "target": {"user": user}})));
    }
    c
}

fn org_names(mode: &str) -> [&'static str; 2] {
    if mode == "assigned" {
        ["eu", "us"]
    } else {
        ["hq", "field"]
    }
}

fn monthly(rng: &mut Rng, ws: &mut WsState, params: &GenParams, first: NaiveDate, days: i64) -> Vec<Cmd> {
    let mut c: Vec<Cmd> = vec![];
    let day0 = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default());
    for u in 0..params.users as usize {
        let user = format!("u{u}");
        for _ in 0..params.reservations {
            ws.reservation += 1;
            let starts =
                day0 + Duration::days(rng.below(days as u64) as i64) + Duration::hours(7 + rng.below(10) as i64);
            let ends = starts + Duration::minutes(30 * (1 + rng.below(8) as i64));
            c.push((
                "record_reservation",
                json!({"reservation": format!("r{}", ws.reservation), "user": user,
                    "starts_at": starts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    "ends_at": ends.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)}),
            ));
        }
        if rng.chance(50) {
            ws.inactive[u] = !ws.inactive[u];
            let status = if ws.inactive[u] { "inactive" } else { "active" };
            c.push(("change_user_status", json!({"user": user, "status": status})));
        }
        if rng.chance(20) {
            ws.seated[u] = !ws.seated[u];
            let name = if ws.seated[u] { "assign_module" } else { "unassign_module" };
            c.push((name, json!({"sku": "SEAT", "target": {"user": user}})));
        }
    }
    for pool in &ws.pools {
        c.push((
            "change_quantity",
            json!({"subscription": pool.subscription, "quantity": params.users + HEADROOM + rng.below(10) as u32,
                "order": {"ordered_by": ACTOR}, "subscription_channel": "portal"}),
        ));
        let mut v = json!({"sku": "SEAT", "subscription": pool.subscription,
            "quantity": 1 + rng.below(5), "trigger_event": rng.uuid().to_string()});
        if let (Value::Object(m), Some(o)) = (&mut v, &pool.organization) {
            m.insert("organization".into(), o.as_str().into());
        }
        c.push(("top_up_licences", v));
    }
    c
}
