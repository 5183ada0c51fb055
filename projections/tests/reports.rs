//! The licence reports projection, fed events directly (no store, no
//! command handler): business time, liveness, seats through groups and
//! statuses, additions and the errors. The hand-worked fixtures driven
//! through the command path are in `crates/seatledger/tests/cli_reports.rs`.
//!
//! Every figure below is worked by hand in the comment next to it.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use seatledger_domain::*;
use seatledger_projections::reports::{
    AdditionKind, LicenceReports, ReportError, ReportPool, ReportRange, MAX_RANGE_DAYS,
};
use seatledger_projections::{Projection, Recorded};

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn pct(text: &str) -> Option<Decimal> {
    Some(text.parse().unwrap())
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Feeds events to a fresh projection, numbering positions in order.
struct Feed {
    reports: LicenceReports,
    position: u64,
    stream: StreamId,
}

const SKU: &str = "SEAT";

impl Feed {
    /// A catalog with the seat-limited SKU `SEAT`, and workspace `w` in `mode`.
    fn new(mode: BillingMode) -> Self {
        let mut feed = Feed { reports: LicenceReports::default(), position: 0, stream: StreamId::Workspace(ws()) };
        feed.catalog(Event::ProductDefined {
            sku: sku(),
            name: "Seat licence".into(),
            kind: ProductKind::Module,
            charge_model: ChargeModel::PerLicence,
            product_class: None,
            sales_unit: "licence".into(),
            manufacturer: None,
        });
        feed.at(
            "2024-01-01T00:00:00Z",
            Event::WorkspaceCreated {
                workspace: ws(),
                name: "W".into(),
                billing_mode: mode,
                created_on: d("2024-01-01"),
                legacy_plan: None,
            },
        );
        feed.at("2024-01-01T00:00:00Z", org_created("hq", None));
        feed
    }

    fn catalog(&mut self, event: Event) {
        self.position += 1;
        let stream = StreamId::Catalog;
        let r = recorded(self.position, &stream, t("2024-01-01T00:00:00Z"), &event);
        self.reports.apply(&r);
    }

    /// Record `event` (now, in position order) effective at `at`.
    fn at(&mut self, at: &str, event: Event) -> uuid::Uuid {
        self.position += 1;
        let r = recorded(self.position, &self.stream, t(at), &event);
        self.reports.apply(&r);
        r.id
    }

    fn subscription(&mut self, at: &str, id: &str, quantity: u32, start: &str) {
        self.subscription_with(at, id, quantity, start, |_| {});
    }

    fn subscription_with(
        &mut self,
        at: &str,
        id: &str,
        quantity: u32,
        start: &str,
        shape: impl FnOnce(&mut SubscriptionTerms),
    ) {
        let mut terms = terms(id, quantity, start);
        shape(&mut terms);
        let pool = PoolKey {
            scope: terms.organization.clone().map_or(PoolScope::Workspace, PoolScope::Organization),
            sku: sku(),
        };
        self.at(at, Event::SubscriptionCreated { terms: Box::new(terms) });
        self.quantity(at, id, pool, 0, quantity, QuantityReason::Order);
    }

    fn quantity(&mut self, at: &str, id: &str, pool: PoolKey, from: u32, to: u32, reason: QuantityReason) {
        self.at(
            at,
            Event::QuantityChanged {
                subscription: SubscriptionId::new(id).unwrap(),
                pool,
                from,
                to,
                reason,
                order: OrderDetails {
                    order_reference: Some(format!("ref-{to}")),
                    order_date: None,
                    ordered_by: "buyer@w.example".into(),
                    order_thru: None,
                },
                channel: SubscriptionChannel::Portal,
            },
        );
    }

    fn user(&mut self, at: &str, id: &str, org: &str) {
        self.at(
            at,
            Event::UserAdded {
                user: UserId::new(id).unwrap(),
                org: OrgId::new(org).unwrap(),
                profile: UserProfile {
                    first_name: id.into(),
                    last_name: "T".into(),
                    email: format!("{id}@w.example"),
                    username: id.into(),
                    kind: UserKind::Regular,
                    audience: Audience::Internal,
                    administrator: false,
                },
                status: UserStatus::Active,
                source: UserSource::Manual,
            },
        );
    }

    fn assign(&mut self, at: &str, target: ModuleTarget) {
        self.at(at, Event::ModuleAssigned { sku: sku(), target });
    }

    fn unassign(&mut self, at: &str, target: ModuleTarget) {
        self.at(at, Event::ModuleUnassigned { sku: sku(), target });
    }

    fn status(&mut self, at: &str, user: &str, from: UserStatus, to: UserStatus) {
        self.at(
            at,
            Event::UserStatusChanged { user: UserId::new(user).unwrap(), from, to, source: StatusChangeSource::Manual },
        );
    }

    fn report(&self, range: ReportRange) -> seatledger_projections::reports::PoolReport {
        self.reports.pool_report(&pool(None), range).unwrap()
    }
}

fn recorded<'a>(position: u64, stream: &'a StreamId, at: DateTime<Utc>, event: &'a Event) -> Recorded<'a> {
    Recorded {
        position,
        id: uuid::Uuid::from_u128(u128::from(position)),
        stream,
        stream_version: position,
        event_type: "test",
        recorded_at: t("2030-01-01T00:00:00Z"),
        effective_at: at,
        actor: "tester",
        channel: "test",
        event,
    }
}

fn ws() -> WorkspaceId {
    WorkspaceId::new("w").unwrap()
}

fn sku() -> Sku {
    Sku::new(SKU).unwrap()
}

fn pool(org: Option<&str>) -> ReportPool {
    ReportPool::new(ws(), org.map(|o| OrgId::new(o).unwrap()), sku())
}

fn key() -> PoolKey {
    PoolKey { scope: PoolScope::Workspace, sku: sku() }
}

fn user(id: &str) -> ModuleTarget {
    ModuleTarget::User(UserId::new(id).unwrap())
}

fn group(id: &str) -> ModuleTarget {
    ModuleTarget::Group(GroupId::new(id).unwrap())
}

fn org_created(id: &str, parent: Option<&str>) -> Event {
    Event::OrganizationCreated {
        org: OrgId::new(id).unwrap(),
        name: id.into(),
        parent: parent.map(|p| OrgId::new(p).unwrap()),
        account: None,
    }
}

fn terms(id: &str, quantity: u32, start: &str) -> SubscriptionTerms {
    let eur = Currency::from_code("EUR").unwrap();
    SubscriptionTerms {
        subscription: SubscriptionId::new(id).unwrap(),
        account: AccountId::new("main").unwrap(),
        organization: None,
        sku: sku(),
        parent: None,
        bundle_role: BundleRole::Standalone,
        name: "Seats".into(),
        friendly_name: None,
        effective_start: d(start),
        billable: true,
        trial: false,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: OrderDetails::default(),
        price_list: PriceListId::new("standard").unwrap(),
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

fn month(text: &str) -> ReportRange {
    ReportRange::month(Month::parse(text).unwrap()).unwrap()
}

fn custom(from: &str, to: &str) -> ReportRange {
    ReportRange::custom(d(from), d(to)).unwrap()
}

#[test]
fn utilisation_is_time_weighted_to_the_hour() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T00:00:00Z", "s1", 4, "2024-03-01");
    f.user("2024-03-01T00:00:00Z", "u1", "hq");
    f.user("2024-03-01T00:00:00Z", "u2", "hq");
    f.assign("2024-03-01T06:00:00Z", user("u1"));
    f.assign("2024-03-02T18:00:00Z", user("u2"));
    // 1–2 March: T = 4 for 2 days = 8 licence-days.
    // u1 holds from 1 March 06:00 (42 h to the end of the 2nd), u2 from the
    // 2nd 18:00 (6 h): 48 seat-hours = 2 seat-days. 2 ÷ 8 = 25.00 %.
    let r = f.report(custom("2024-03-01", "2024-03-02"));
    assert_eq!(r.licence_days, dec("8"));
    assert_eq!(r.assigned_seat_days, dec("2"));
    assert_eq!(r.average_utilisation_percent, pct("25.00"));
    // Day 1: 18 h × 1 = 0.75 seat-days of 4 → 18.75 %. Day 2: 1 + 0.25 = 1.25 of 4 → 31.25 %.
    let days: Vec<_> = r.daily.iter().map(|d| d.utilisation_percent).collect();
    assert_eq!(days, [pct("18.75"), pct("31.25")]);
    assert_eq!((r.total_at_end, r.assigned_at_end, r.available_at_end), (4, 2, 2));
}

#[test]
fn a_backdated_event_lands_where_it_belongs() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T00:00:00Z", "s1", 10, "2024-03-01");
    f.user("2024-03-01T00:00:00Z", "u1", "hq");
    f.user("2024-03-01T00:00:00Z", "u2", "hq");
    f.assign("2024-03-01T00:00:00Z", user("u1"));
    f.assign("2024-03-20T00:00:00Z", user("u2"));
    // Recorded last, effective on 11 March: u1 was deleted then.
    f.status("2024-03-11T00:00:00Z", "u1", UserStatus::Active, UserStatus::Deleted);
    // u1: 10 days (1–10 March); u2: 12 days (20–31 March) → 22 seat-days of 310.
    // 22 ÷ 310 = 7.096…% → 7.10 %.
    let r = f.report(month("2024-03"));
    assert_eq!(r.assigned_seat_days, dec("22"));
    assert_eq!(r.average_utilisation_percent, pct("7.10"));
    let assigned: Vec<u64> = r.daily.iter().map(|d| d.assigned).collect();
    let expected: Vec<u64> = (1..=31)
        .map(|day| {
            if day <= 10 {
                1
            } else if day < 20 {
                0
            } else {
                1
            }
        })
        .collect();
    assert_eq!(assigned, expected);
    // The timelines say the same, instant by instant.
    let timeline = f.reports.assigned_timeline(&pool(None)).unwrap();
    assert_eq!(
        timeline,
        [(t("2024-03-01T00:00:00Z"), 1), (t("2024-03-11T00:00:00Z"), 0), (t("2024-03-20T00:00:00Z"), 1)]
    );
}

#[test]
fn licences_follow_start_deactivation_end_and_a_lapsed_trial_by_day() {
    let mut f = Feed::new(BillingMode::Single);
    // s1: 5 from 3 March, deactivated from 10 March (not live on the 10th).
    f.subscription("2024-02-20T10:00:00Z", "s1", 5, "2024-03-03");
    f.at(
        "2024-03-05T12:00:00Z",
        Event::DeactivationScheduled {
            subscription: SubscriptionId::new("s1").unwrap(),
            deactivate_on: Some(d("2024-03-10")),
        },
    );
    // s2: a trial of 2 from 1 March; it ends without converting on 6 March (decided at 15:00).
    f.subscription_with("2024-03-01T00:00:00Z", "s2", 2, "2024-03-01", |t| t.trial = true);
    f.at(
        "2024-03-06T15:00:00Z",
        Event::TrialEnded {
            subscription: SubscriptionId::new("s2").unwrap(),
            converted: false,
            ended_on: d("2024-03-06"),
        },
    );
    // s3: 3 from 1 March, ended on 8 March.
    f.subscription("2024-03-01T00:00:00Z", "s3", 3, "2024-03-01");
    f.at(
        "2024-03-07T09:00:00Z",
        Event::SubscriptionEnded { subscription: SubscriptionId::new("s3").unwrap(), ended_on: d("2024-03-08") },
    );
    // s4: a trial of 1 from 1 March that converts: it stays.
    f.subscription_with("2024-03-01T00:00:00Z", "s4", 1, "2024-03-01", |t| t.trial = true);
    f.at(
        "2024-03-04T10:00:00Z",
        Event::TrialEnded {
            subscription: SubscriptionId::new("s4").unwrap(),
            converted: true,
            ended_on: d("2024-03-04"),
        },
    );
    let r = f.report(custom("2024-03-01", "2024-03-11"));
    //           1  2  3  4  5  6  7  8  9 10 11
    // s1 (5)    .  .  5  5  5  5  5  5  5  .  .
    // s2 (2)    2  2  2  2  2  .  .  .  .  .  .
    // s3 (3)    3  3  3  3  3  3  3  .  .  .  .
    // s4 (1)    1  1  1  1  1  1  1  1  1  1  1
    let totals: Vec<u64> = r.daily.iter().map(|d| d.total).collect();
    assert_eq!(totals, [6, 6, 11, 11, 11, 9, 9, 6, 6, 1, 1]);
    // Σ = 6+6+11+11+11+9+9+6+6+1+1 = 77 licence-days.
    assert_eq!(r.licence_days, dec("77"));
    assert_eq!(r.average_utilisation_percent, pct("0.00"));
}

#[test]
fn seats_through_groups_follow_membership_module_and_status() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T00:00:00Z", "s1", 10, "2024-03-01");
    for u in ["a", "b", "c"] {
        f.user("2024-03-01T00:00:00Z", u, "hq");
    }
    f.at("2024-03-01T00:00:00Z", Event::GroupCreated { group: GroupId::new("g").unwrap(), name: "G".into() });
    for u in ["a", "b"] {
        f.at(
            "2024-03-01T00:00:00Z",
            Event::GroupMemberAdded { group: GroupId::new("g").unwrap(), user: UserId::new(u).unwrap() },
        );
    }
    // a also holds the SKU directly: one seat, not two.
    f.assign("2024-03-01T00:00:00Z", user("a"));
    f.assign("2024-03-02T00:00:00Z", group("g")); // a, b → 2 seats
    f.at(
        "2024-03-03T00:00:00Z",
        Event::GroupMemberAdded { group: GroupId::new("g").unwrap(), user: UserId::new("c").unwrap() },
    ); // 3
    f.at(
        "2024-03-04T00:00:00Z",
        Event::GroupMemberRemoved { group: GroupId::new("g").unwrap(), user: UserId::new("b").unwrap() },
    ); // a, c → 2
    f.status("2024-03-05T00:00:00Z", "c", UserStatus::Active, UserStatus::Inactive); // inactive still holds: 2
    f.status("2024-03-06T00:00:00Z", "c", UserStatus::Inactive, UserStatus::Deleted); // 1
    f.unassign("2024-03-07T00:00:00Z", group("g")); // a keeps the direct one: 1
    f.unassign("2024-03-08T00:00:00Z", user("a")); // 0
    let r = f.report(custom("2024-03-01", "2024-03-08"));
    let assigned: Vec<u64> = r.daily.iter().map(|d| d.assigned).collect();
    assert_eq!(assigned, [1, 2, 3, 2, 2, 1, 1, 0]);
    // 12 seat-days of 80 licence-days = 15.00 %.
    assert_eq!(r.assigned_seat_days, dec("12"));
    assert_eq!(r.average_utilisation_percent, pct("15.00"));
}

#[test]
fn changes_at_one_instant_apply_in_recorded_order() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T00:00:00Z", "s1", 2, "2024-03-01");
    f.user("2024-03-01T00:00:00Z", "u1", "hq");
    f.assign("2024-03-01T12:00:00Z", user("u1"));
    f.unassign("2024-03-01T12:00:00Z", user("u1"));
    f.assign("2024-03-01T12:00:00Z", user("u1"));
    let r = f.report(ReportRange::day(d("2024-03-01")).unwrap());
    assert_eq!(r.assigned_at_end, 1);
    // 12 h × 1 seat of 2 × 24 h → 25.00 %.
    assert_eq!(r.average_utilisation_percent, pct("25.00"));
}

#[test]
fn additions_are_labelled_and_counted_on_their_business_day() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T09:00:00Z", "s1", 5, "2024-03-01");
    let trigger = uuid::Uuid::from_u128(0xABC);
    f.quantity("2024-03-05T10:00:00Z", "s1", key(), 5, 7, QuantityReason::ManualAddition);
    f.quantity("2024-03-06T10:00:00Z", "s1", key(), 7, 9, QuantityReason::AutomaticTopUp { trigger_event: trigger });
    f.quantity("2024-03-07T10:00:00Z", "s1", key(), 9, 6, QuantityReason::Order); // a decrease: not an addition
    f.quantity("2024-03-08T10:00:00Z", "s1", key(), 6, 8, QuantityReason::Order);
    f.at(
        "2024-03-09T10:00:00Z",
        Event::TopUpCapReached {
            pool: key(),
            trigger_event: uuid::Uuid::from_u128(0xDEF),
            needed: 3,
            allowed: 0,
            month_used: 2,
        },
    );
    let r = f.report(month("2024-03"));
    assert_eq!((r.automatic.count, r.automatic.licences), (1, 2));
    assert_eq!((r.manual.count, r.manual.licences), (1, 2));
    assert_eq!((r.total_top_ups, r.total_licences_added), (2, 4));
    // The first quantity (0 → 5) and the raise 6 → 8.
    assert_eq!((r.order_increases.count, r.order_increases.licences), (2, 7));
    assert_eq!(r.capped_top_ups, 1);
    let kinds: Vec<AdditionKind> = r.additions.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AdditionKind::Order, AdditionKind::Manual, AdditionKind::Automatic, AdditionKind::Order]);
    assert_eq!(r.additions[2].trigger_event, Some(trigger));
    assert_eq!(r.daily[5].automatic_added, 2);
    assert_eq!(r.daily[4].manual_added, 2);
    // Licences at the end of each of 4–9 March: 5, 7, 9, 6, 8, 8.
    let totals: Vec<u64> = r.daily[3..9].iter().map(|d| d.total).collect();
    assert_eq!(totals, [5, 7, 9, 6, 8, 8]);

    let march = f.reports.additions_report(&ws(), Month::parse("2024-03").unwrap()).unwrap();
    assert_eq!((march.total.count, march.total.licences), (2, 4));
    assert_eq!(march.skus.len(), 1);
    assert!(march.skus[0].additions.iter().all(|a| a.kind != AdditionKind::Order));
    let april = f.reports.additions_report(&ws(), Month::parse("2024-04").unwrap()).unwrap();
    assert!(april.skus.is_empty());
}

#[test]
fn a_pool_without_licences_has_no_utilisation() {
    let mut f = Feed::new(BillingMode::Single);
    // Seats but no subscription (a SKU not capped by licences).
    f.user("2024-03-01T00:00:00Z", "u1", "hq");
    f.assign("2024-03-01T00:00:00Z", user("u1"));
    let r = f.report(month("2024-03"));
    assert_eq!(r.average_utilisation_percent, None);
    assert_eq!((r.total_at_end, r.assigned_at_end, r.available_at_end), (0, 1, 0));
    assert!(r.daily.iter().all(|d| d.utilisation_percent.is_none()));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["average_utilisation_percent"], serde_json::Value::Null);
    assert_eq!(json["licence_days"], "0");
}

#[test]
fn assigned_mode_pools_are_per_top_level_organization() {
    let mut f = Feed::new(BillingMode::Assigned);
    f.at("2024-01-01T00:00:00Z", org_created("de", None));
    f.at("2024-01-01T00:00:00Z", org_created("de-berlin", Some("de")));
    f.subscription_with("2024-03-01T00:00:00Z", "s-hq", 4, "2024-03-01", |t| {
        t.organization = Some(OrgId::new("hq").unwrap())
    });
    f.subscription_with("2024-03-01T00:00:00Z", "s-de", 2, "2024-03-01", |t| {
        t.organization = Some(OrgId::new("de").unwrap())
    });
    f.user("2024-03-01T00:00:00Z", "x", "hq");
    f.user("2024-03-01T00:00:00Z", "y", "de-berlin");
    f.assign("2024-03-01T00:00:00Z", user("x"));
    f.assign("2024-03-01T00:00:00Z", user("y"));
    let day = ReportRange::day(d("2024-03-02")).unwrap();
    let hq = f.reports.pool_report(&pool(Some("hq")), day).unwrap();
    let de = f.reports.pool_report(&pool(Some("de")), day).unwrap();
    assert_eq!((hq.total_at_end, hq.assigned_at_end), (4, 1));
    assert_eq!((de.total_at_end, de.assigned_at_end), (2, 1));
    assert_eq!(de.average_utilisation_percent, pct("50.00"));
    let pools = f.reports.pools(&ws()).unwrap();
    assert_eq!(pools.len(), 2);

    assert!(matches!(f.reports.pool_report(&pool(None), day), Err(ReportError::NeedsOrganization { .. })));
    assert!(matches!(f.reports.pool_report(&pool(Some("de-berlin")), day), Err(ReportError::NotTopLevel { .. })));
}

#[test]
fn bad_requests_are_refused_with_what_is_wrong() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-03-01T00:00:00Z", "s1", 4, "2024-03-01");
    let err = ReportRange::custom(d("2024-03-31"), d("2024-03-01")).unwrap_err();
    assert_eq!(err.to_string(), "the report range ends on 2024-03-01, before it starts on 2024-03-31");
    let err = ReportRange::custom(d("2023-01-01"), d("2024-12-31")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the report range 2023-01-01 to 2024-12-31 covers 731 days; a report covers at most {MAX_RANGE_DAYS} days"
        )
    );
    let range = month("2024-03");
    let unknown = ReportPool::new(WorkspaceId::new("nope").unwrap(), None, sku());
    assert_eq!(f.reports.pool_report(&unknown, range).unwrap_err().to_string(), "no workspace `nope` in the ledger");
    let other = ReportPool::new(ws(), None, Sku::new("OTHER").unwrap());
    assert_eq!(
        f.reports.pool_report(&other, range).unwrap_err().to_string(),
        "workspace `w` has no licence pool `OTHER` (no subscription, setting or seat for it); its pools: `SEAT`"
    );
    let err = f.reports.pool_report(&pool(Some("hq")), range).unwrap_err();
    assert!(matches!(err, ReportError::OrganizationNotApplicable { .. }), "{err}");
    assert!(f.reports.additions_report(&WorkspaceId::new("nope").unwrap(), Month::parse("2024-03").unwrap()).is_err());
}

#[test]
fn a_year_is_the_longest_range() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-01-01T00:00:00Z", "s1", 2, "2024-01-01");
    let r = f.report(custom("2024-01-01", "2024-12-31"));
    assert_eq!(r.days, 366);
    assert_eq!(r.daily.len(), 366);
    assert_eq!(r.licence_days, dec("732"));
}

#[test]
fn the_total_timeline_is_a_step_function_of_business_time() {
    let mut f = Feed::new(BillingMode::Single);
    f.subscription("2024-02-25T10:00:00Z", "s1", 3, "2024-03-01");
    f.quantity("2024-03-05T12:00:00Z", "s1", key(), 3, 5, QuantityReason::ManualAddition);
    f.at(
        "2024-03-06T00:00:00Z",
        Event::DeactivationScheduled {
            subscription: SubscriptionId::new("s1").unwrap(),
            deactivate_on: Some(d("2024-03-20")),
        },
    );
    let timeline = f.reports.total_timeline(&pool(None)).unwrap();
    assert_eq!(
        timeline,
        [(t("2024-03-01T00:00:00Z"), 3), (t("2024-03-05T12:00:00Z"), 5), (t("2024-03-20T00:00:00Z"), 0)]
    );
    assert_eq!(f.reports.additions(&pool(None)).unwrap().len(), 2);
}
