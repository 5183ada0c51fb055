//! Licence reports (seed 002, "Reports"): per pool, over a day, an ISO week,
//! a month or a custom range of days — available licences, time-weighted
//! average utilisation, top-ups and licences added — and the end-of-month
//! report of licence additions.
//!
//! [`LicenceReports`] folds events on **business time** (each event's
//! `effective_at`), like the invoice inputs: a backdated event lands where
//! it belongs, whenever it was recorded. It keeps, per workspace, the values
//! that decide a pool's numbers as step functions of effective time:
//!
//! - per subscription: its quantity (from `QuantityChanged`), its effective
//!   start, deactivate-on date, end date and unconverted trial end;
//! - per user: status, direct modules and group memberships; per group: its
//!   modules;
//! - per pool: every licence addition (order, manual, automatic top-up) and
//!   every top-up a cap stopped.
//!
//! From these, [`LicenceReports::total_timeline`] and
//! [`LicenceReports::assigned_timeline`] give a pool's licences and seats as
//! timelines, and [`LicenceReports::pool_report`] integrates them over a
//! range. The rules are the domain's (`Workspace::pool_total_on` and
//! `Workspace::pool_assigned`), evaluated at each instant of business time:
//!
//! - **total** at instant `t` = Σ over the pool's subscriptions live on the
//!   day of `t` (started, before deactivate-on, before the end, before an
//!   unconverted trial end) of their quantity in effect at `t`;
//! - **assigned** at `t` = the users of the pool's scope who exist at `t`,
//!   are not deleted at `t`, and hold the SKU at `t` directly or through a
//!   group they belong to at `t` (the group holding it at `t`).
//!
//! Definitions and decisions are documented in `docs/reports.md`.

use crate::{Projection, Recorded, SmallMap};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeDelta, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use seatledger_domain::*;
use serde::{Serialize, Serializer};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet};

/// The longest range a report covers, in days: a leap year.
pub const MAX_RANGE_DAYS: u64 = 366;

/// Microseconds in a day: durations are integrated exactly, in microseconds
/// (the store keeps whole microseconds of effective time).
const DAY_MICROS: i128 = 86_400_000_000;

/// The first and last day a report may cover (the calendar `Month` accepts).
fn calendar_bounds() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date"),
        NaiveDate::from_ymd_opt(9999, 12, 31).expect("9999-12-31 is a date"),
    )
}

/// The UTC instant a day starts.
fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

fn micros(d: TimeDelta) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000 + i128::from(d.subsec_nanos() / 1_000)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a report cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    /// The range ends before it starts.
    InvertedRange {
        start: NaiveDate,
        end: NaiveDate,
    },
    /// The range is longer than [`MAX_RANGE_DAYS`].
    RangeTooLong {
        start: NaiveDate,
        end: NaiveDate,
        days: u64,
    },
    /// A day outside 1970-01-01 … 9999-12-31.
    OutsideCalendar {
        day: NaiveDate,
    },
    UnknownWorkspace(WorkspaceId),
    /// An assigned-mode workspace has one pool per top-level organization.
    NeedsOrganization {
        workspace: WorkspaceId,
        top_level: Vec<OrgId>,
    },
    /// Single and pooled workspaces have workspace-wide pools only.
    OrganizationNotApplicable {
        workspace: WorkspaceId,
        mode: BillingMode,
        organization: OrgId,
    },
    UnknownOrganization {
        workspace: WorkspaceId,
        organization: OrgId,
    },
    NotTopLevel {
        workspace: WorkspaceId,
        organization: OrgId,
        top_level: OrgId,
    },
    /// No subscription, setting or seat has ever been recorded for the pool.
    UnknownPool {
        workspace: WorkspaceId,
        pool: PoolKey,
        known: Vec<PoolKey>,
    },
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::InvertedRange { start, end } => {
                write!(f, "the report range ends on {end}, before it starts on {start}")
            }
            ReportError::RangeTooLong { start, end, days } => write!(
                f,
                "the report range {start} to {end} covers {days} days; a report covers at most {MAX_RANGE_DAYS} days"
            ),
            ReportError::OutsideCalendar { day } => {
                write!(f, "{day} is outside the calendar reports cover (1970-01-01 to 9999-12-31)")
            }
            ReportError::UnknownWorkspace(w) => write!(f, "no workspace `{w}` in the ledger"),
            ReportError::NeedsOrganization { workspace, top_level } => write!(
                f,
                "workspace `{workspace}` bills in assigned mode, with one pool per top-level organization; \
                 name one with --organization ({})",
                list(top_level.iter().map(|o| format!("`{o}`")))
            ),
            ReportError::OrganizationNotApplicable { workspace, mode, organization } => write!(
                f,
                "workspace `{workspace}` bills in {mode} mode: its pools are workspace-wide, \
                 so organization `{organization}` has no pool of its own; leave out --organization"
            ),
            ReportError::UnknownOrganization { workspace, organization } => {
                write!(f, "no organization `{organization}` in workspace `{workspace}`")
            }
            ReportError::NotTopLevel { workspace, organization, top_level } => write!(
                f,
                "organization `{organization}` of workspace `{workspace}` is not top-level; \
                 its seats come from the pool of `{top_level}`"
            ),
            ReportError::UnknownPool { workspace, pool, known } => write!(
                f,
                "workspace `{workspace}` has no licence pool {pool} (no subscription, setting or seat for it); \
                 its pools: {}",
                list(known.iter().map(|p| p.to_string()))
            ),
        }
    }
}

impl std::error::Error for ReportError {}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------

/// How a report's range was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Day,
    /// The ISO week (Monday to Sunday) containing a day.
    Week,
    /// A calendar month.
    Month,
    /// Any days, both ends included.
    Custom,
}

impl PeriodKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Custom => "custom",
        }
    }
}

/// The days a report covers, `start` to `end` inclusive, in UTC; checked
/// when built: not inverted, at most [`MAX_RANGE_DAYS`] days, within the
/// calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportRange {
    kind: PeriodKind,
    start: NaiveDate,
    end: NaiveDate,
}

impl ReportRange {
    fn checked(kind: PeriodKind, start: NaiveDate, end: NaiveDate) -> Result<Self, ReportError> {
        let (first, last) = calendar_bounds();
        for day in [start, end] {
            if day < first || day > last {
                return Err(ReportError::OutsideCalendar { day });
            }
        }
        if end < start {
            return Err(ReportError::InvertedRange { start, end });
        }
        let days = (end - start).num_days() as u64 + 1;
        if days > MAX_RANGE_DAYS {
            return Err(ReportError::RangeTooLong { start, end, days });
        }
        Ok(Self { kind, start, end })
    }

    /// One day.
    pub fn day(day: NaiveDate) -> Result<Self, ReportError> {
        Self::checked(PeriodKind::Day, day, day)
    }

    /// The ISO week containing `day`: its Monday to its Sunday.
    pub fn iso_week(day: NaiveDate) -> Result<Self, ReportError> {
        let (first, last) = calendar_bounds();
        let offset = i64::from(day.weekday().num_days_from_monday());
        let monday = day.checked_sub_signed(Duration::days(offset)).filter(|d| *d >= first);
        let sunday = monday.and_then(|m| m.checked_add_signed(Duration::days(6))).filter(|d| *d <= last);
        match (monday, sunday) {
            (Some(monday), Some(sunday)) => Self::checked(PeriodKind::Week, monday, sunday),
            _ => Err(ReportError::OutsideCalendar { day }),
        }
    }

    /// A calendar month.
    pub fn month(month: Month) -> Result<Self, ReportError> {
        Self::checked(PeriodKind::Month, month.first_day(), month.last_day())
    }

    /// Any days from `start` to `end`, both included.
    pub fn custom(start: NaiveDate, end: NaiveDate) -> Result<Self, ReportError> {
        Self::checked(PeriodKind::Custom, start, end)
    }

    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    pub fn start(&self) -> NaiveDate {
        self.start
    }

    pub fn end(&self) -> NaiveDate {
        self.end
    }

    pub fn days(&self) -> u64 {
        (self.end - self.start).num_days() as u64 + 1
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }

    /// Every day of the range, in order.
    pub fn each_day(&self) -> impl Iterator<Item = NaiveDate> {
        self.start.iter_days().take(self.days() as usize)
    }
}

// ---------------------------------------------------------------------------
// Report documents
// ---------------------------------------------------------------------------

/// Which pool a report is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportPool {
    pub workspace: WorkspaceId,
    /// The top-level organization, for assigned-mode workspaces only.
    pub organization: Option<OrgId>,
    pub sku: Sku,
}

impl ReportPool {
    pub fn new(workspace: WorkspaceId, organization: Option<OrgId>, sku: Sku) -> Self {
        Self { workspace, organization, sku }
    }

    pub fn key(&self) -> PoolKey {
        PoolKey {
            scope: match &self.organization {
                Some(o) => PoolScope::Organization(o.clone()),
                None => PoolScope::Workspace,
            },
            sku: self.sku.clone(),
        }
    }
}

/// How licences were added to a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdditionKind {
    /// An automatic top-up of the Licence Manager (`automatic_top_up`).
    Automatic,
    /// "Add licences" by a person in the Licence Manager (`manual_addition`).
    Manual,
    /// An order that raised a subscription's quantity, including a new
    /// subscription's first quantity (`order`, `from` 0).
    Order,
}

impl AdditionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AdditionKind::Automatic => "automatic",
            AdditionKind::Manual => "manual",
            AdditionKind::Order => "order",
        }
    }
}

/// One raise of a subscription's quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addition {
    /// Business time of the addition: when the licences were added.
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub kind: AdditionKind,
    /// Licences added: `to − from`.
    pub licences: u64,
    pub from: u32,
    pub to: u32,
    // The texts are `SmolStr`s, inline up to 23 bytes: a report keeps every
    // addition of the history, seven texts each (docs/benchmarks.md, lever 29).
    pub sku: SmolStr,
    /// The top-level organization of an assigned-mode pool.
    pub organization: Option<SmolStr>,
    pub subscription: SmolStr,
    /// Who ordered it (for automatic top-ups, `licence-manager`).
    pub ordered_by: SmolStr,
    /// The actor who recorded the event.
    pub actor: SmolStr,
    pub order_reference: Option<SmolStr>,
    pub order_date: Option<NaiveDate>,
    pub order_thru: Option<SmolStr>,
    /// The event that caused an automatic top-up.
    pub trigger_event: Option<uuid::Uuid>,
    pub event_id: uuid::Uuid,
    pub position: u64,
}

/// A count of additions and the licences they added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub licences: u64,
}

impl Tally {
    fn add(&mut self, licences: u64) {
        self.count += 1;
        self.licences += licences;
    }

    fn plus(self, other: Tally) -> Tally {
        Tally { count: self.count + other.count, licences: self.licences + other.licences }
    }
}

fn decimal_text<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

fn optional_decimal_text<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// One day of a pool report: values at the end of the day, utilisation
/// over the day, and what was added during it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyRow {
    pub day: NaiveDate,
    /// Licences at the end of the day (the last instant before midnight).
    pub total: u64,
    /// Seats assigned at the end of the day.
    pub assigned: u64,
    /// `total − assigned` at the end of the day, never below zero.
    pub available: u64,
    /// Time-weighted utilisation over the day, in percent (2 decimals);
    /// `null` when the pool held no licences during the day.
    #[serde(serialize_with = "optional_decimal_text")]
    pub utilisation_percent: Option<Decimal>,
    /// Top-ups (automatic and manual) during the day.
    pub top_ups: u64,
    pub automatic_added: u64,
    pub manual_added: u64,
    pub order_added: u64,
}

/// A pool over a range of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolReport {
    pub workspace: String,
    pub organization: Option<String>,
    pub sku: String,
    /// The product's name in the catalog (empty when the catalog lacks it).
    pub product: String,
    /// Whether assignments are capped by the licences bought.
    pub seat_limited: bool,
    pub period: PeriodKind,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub days: u64,
    /// Licences at the end of the range.
    pub total_at_end: u64,
    /// Seats assigned at the end of the range.
    pub assigned_at_end: u64,
    /// Available licences at the end of the range: `total − assigned`, never below zero.
    pub available_at_end: u64,
    /// Σ assigned × duration ÷ Σ total × duration over the range, in
    /// percent, rounded to 2 decimals half away from zero; `null` when the
    /// pool held no licences at any moment of the range.
    #[serde(serialize_with = "optional_decimal_text")]
    pub average_utilisation_percent: Option<Decimal>,
    /// Σ total × duration, in licence-days (at most 4 decimals, for
    /// display; the utilisation is computed from the exact sums).
    #[serde(serialize_with = "decimal_text")]
    pub licence_days: Decimal,
    /// Σ assigned × duration, in seat-days (at most 4 decimals, for display).
    #[serde(serialize_with = "decimal_text")]
    pub assigned_seat_days: Decimal,
    /// Top-ups through the Licence Manager: automatic plus manual.
    pub total_top_ups: u64,
    /// Licences those top-ups added: automatic plus manual.
    pub total_licences_added: u64,
    pub automatic: Tally,
    pub manual: Tally,
    /// Quantity raises by orders (not top-ups; not in the totals above).
    pub order_increases: Tally,
    /// Automatic top-ups a cap stopped short (`TopUpCapReached`).
    pub capped_top_ups: u64,
    pub daily: Vec<DailyRow>,
    /// Every addition during the range (automatic, manual and order), in business-time order.
    pub additions: Vec<Addition>,
}

/// The additions of one pool in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolAdditions {
    pub sku: String,
    pub organization: Option<String>,
    pub product: String,
    pub automatic: Tally,
    pub manual: Tally,
    pub total: Tally,
    /// Automatic and manual additions, in business-time order.
    pub additions: Vec<Addition>,
}

/// The end-of-month report of licence additions of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdditionsReport {
    pub workspace: String,
    /// `YYYY-MM`.
    pub month: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub automatic: Tally,
    pub manual: Tally,
    pub total: Tally,
    /// One entry per pool (SKU, and top-level organization in assigned
    /// mode) with additions in the month, by SKU then organization.
    pub skus: Vec<PoolAdditions>,
}

// ---------------------------------------------------------------------------
// The fold
// ---------------------------------------------------------------------------

/// A value over effective time: entries in (effective time, position) order,
/// so that two changes at one instant apply in the order they were recorded.
#[derive(Debug, Clone)]
struct Steps<T> {
    entries: Vec<(DateTime<Utc>, u64, T)>,
}

impl<T> Default for Steps<T> {
    fn default() -> Self {
        Self { entries: vec![] }
    }
}

impl<T: Copy> Steps<T> {
    fn push(&mut self, at: DateTime<Utc>, position: u64, value: T) {
        // One slot for the first entry, as `invoice::timeline::Timeline` does.
        self.entries.reserve_exact(usize::from(self.entries.capacity() == 0));
        let index = self.entries.partition_point(|e| (e.0, e.1) <= (at, position));
        self.entries.insert(index, (at, position, value));
    }

    /// The value in effect at `instant` (after every change at or before it).
    fn at(&self, instant: DateTime<Utc>) -> Option<T> {
        self.entries.partition_point(|e| e.0 <= instant).checked_sub(1).map(|i| self.entries[i].2)
    }

    fn instants(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.entries.iter().map(|e| e.0)
    }
}

#[derive(Debug, Clone)]
struct SubscriptionTrack {
    pool: PoolKey,
    effective_start: NaiveDate,
    /// The quantity the subscription was created with: in effect until the
    /// first `QuantityChanged` at or after its effective start.
    initial: u32,
    quantity: Steps<u32>,
    deactivate_on: Option<NaiveDate>,
    ended_on: Option<NaiveDate>,
    /// The day an unconverted trial ended.
    trial_lapsed_on: Option<NaiveDate>,
}

impl SubscriptionTrack {
    fn is_live_on(&self, day: NaiveDate) -> bool {
        let before = |end: Option<NaiveDate>| end.is_none_or(|e| day < e);
        self.effective_start <= day
            && before(self.deactivate_on)
            && before(self.ended_on)
            && before(self.trial_lapsed_on)
    }

    fn licences_at(&self, t: DateTime<Utc>) -> i64 {
        if self.is_live_on(t.date_naive()) {
            i64::from(self.quantity.at(t).unwrap_or(self.initial))
        } else {
            0
        }
    }

    /// Every instant the subscription's licences may change.
    fn instants(&self) -> Vec<DateTime<Utc>> {
        let days = [Some(self.effective_start), self.deactivate_on, self.ended_on, self.trial_lapsed_on];
        let mut all: Vec<DateTime<Utc>> = self.quantity.instants().collect();
        all.extend(days.into_iter().flatten().map(day_start));
        all.sort();
        all.dedup();
        all
    }
}

#[derive(Debug, Clone)]
struct UserTrack {
    org: OrgId,
    /// From `UserAdded` on: the user exists.
    status: Steps<UserStatus>,
    direct: SmallMap<Sku, Steps<bool>>,
    groups: SmallMap<GroupId, Steps<bool>>,
}

#[derive(Debug, Clone, Default)]
struct GroupTrack {
    modules: SmallMap<Sku, Steps<bool>>,
    /// Everyone who was ever a member.
    members_ever: BTreeSet<UserId>,
}

#[derive(Debug, Clone, Default)]
struct PoolLog {
    /// Every quantity raise, in (effective time, position) order.
    additions: Vec<Addition>,
    /// When a cap stopped an automatic top-up short.
    capped: Vec<DateTime<Utc>>,
    /// Licence settings were recorded for the pool.
    configured: bool,
}

#[derive(Debug, Clone)]
struct WorkspaceTrack {
    billing_mode: BillingMode,
    /// Organization → parent.
    orgs: BTreeMap<OrgId, Option<OrgId>>,
    users: BTreeMap<UserId, UserTrack>,
    groups: BTreeMap<GroupId, GroupTrack>,
    subscriptions: BTreeMap<SubscriptionId, SubscriptionTrack>,
    pools: BTreeMap<PoolKey, PoolLog>,
    /// Users ever assigned a SKU directly.
    direct_by_sku: BTreeMap<Sku, BTreeSet<UserId>>,
    /// Groups ever assigned a SKU.
    groups_by_sku: BTreeMap<Sku, BTreeSet<GroupId>>,
}

impl WorkspaceTrack {
    fn new(billing_mode: BillingMode) -> Self {
        Self {
            billing_mode,
            orgs: BTreeMap::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            pools: BTreeMap::new(),
            direct_by_sku: BTreeMap::new(),
            groups_by_sku: BTreeMap::new(),
        }
    }

    fn top_level_of(&self, org: &OrgId) -> OrgId {
        let mut current = org.clone();
        // The tree is acyclic (a parent exists before its child); the bound
        // only guards against a corrupt log.
        for _ in 0..=self.orgs.len() {
            match self.orgs.get(&current).cloned().flatten() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        current
    }

    fn scope_of_user(&self, user: &UserTrack) -> PoolScope {
        match self.billing_mode {
            BillingMode::Assigned => PoolScope::Organization(self.top_level_of(&user.org)),
            _ => PoolScope::Workspace,
        }
    }

    fn pool_of_terms(&self, terms: &SubscriptionTerms) -> PoolKey {
        let scope = match (self.billing_mode, &terms.organization) {
            (BillingMode::Assigned, Some(org)) => PoolScope::Organization(org.clone()),
            _ => PoolScope::Workspace,
        };
        PoolKey { scope, sku: terms.sku.clone() }
    }

    /// Users who may ever have held `sku`: assigned it directly, or members
    /// (at any time) of a group assigned it (at any time).
    fn candidates(&self, sku: &Sku) -> BTreeSet<&UserId> {
        let mut users: BTreeSet<&UserId> = self.direct_by_sku.get(sku).into_iter().flatten().collect();
        for g in self.groups_by_sku.get(sku).into_iter().flatten() {
            if let Some(group) = self.groups.get(g) {
                users.extend(group.members_ever.iter());
            }
        }
        users
    }

    /// Whether `user` occupies a seat of `sku` at `t`.
    fn holds(&self, user: &UserTrack, sku: &Sku, t: DateTime<Utc>) -> bool {
        match user.status.at(t) {
            None | Some(UserStatus::Deleted) => return false,
            Some(_) => {}
        }
        if user.direct.get(sku).and_then(|s| s.at(t)) == Some(true) {
            return true;
        }
        user.groups.iter().any(|(g, member)| {
            member.at(t) == Some(true)
                && self.groups.get(g).and_then(|g| g.modules.get(sku)).and_then(|m| m.at(t)) == Some(true)
        })
    }

    /// Changes of the pool's assigned seats: (instant, +1 or −1), unsorted.
    fn assigned_deltas(&self, pool: &PoolKey, into: &mut Vec<(DateTime<Utc>, i64, i64)>) {
        let mut instants = vec![];
        for id in self.candidates(&pool.sku) {
            let Some(user) = self.users.get(id) else { continue };
            if self.scope_of_user(user) != pool.scope {
                continue;
            }
            instants.clear();
            instants.extend(user.status.instants());
            if let Some(direct) = user.direct.get(&pool.sku) {
                instants.extend(direct.instants());
            }
            for (g, member) in &user.groups {
                if let Some(modules) = self.groups.get(g).and_then(|g| g.modules.get(&pool.sku)) {
                    instants.extend(member.instants());
                    instants.extend(modules.instants());
                }
            }
            instants.sort();
            instants.dedup();
            let mut held = false;
            for &t in &instants {
                let now = self.holds(user, &pool.sku, t);
                if now != held {
                    into.push((t, 0, if now { 1 } else { -1 }));
                    held = now;
                }
            }
        }
    }

    /// Changes of the pool's licences: (instant, change), unsorted.
    fn total_deltas(&self, pool: &PoolKey, into: &mut Vec<(DateTime<Utc>, i64, i64)>) {
        for sub in self.subscriptions.values().filter(|s| s.pool == *pool) {
            let mut previous = 0;
            for t in sub.instants() {
                let now = sub.licences_at(t);
                if now != previous {
                    into.push((t, now - previous, 0));
                    previous = now;
                }
            }
        }
    }

    /// Whether the pool has a subscription, settings or a seat ever assigned.
    fn has_pool(&self, key: &PoolKey) -> bool {
        self.subscriptions.values().any(|s| s.pool == *key)
            || self.pools.get(key).is_some_and(|log| log.configured)
            || self
                .candidates(&key.sku)
                .into_iter()
                .any(|id| self.users.get(id).is_some_and(|u| self.scope_of_user(u) == key.scope))
    }

    /// Every pool with a subscription, settings or a seat ever assigned.
    fn known_pools(&self) -> BTreeSet<PoolKey> {
        let mut pools: BTreeSet<PoolKey> = self.subscriptions.values().map(|s| s.pool.clone()).collect();
        pools.extend(self.pools.iter().filter(|(_, log)| log.configured).map(|(k, _)| k.clone()));
        let skus: BTreeSet<&Sku> = self.direct_by_sku.keys().chain(self.groups_by_sku.keys()).collect();
        for sku in skus {
            for id in self.candidates(sku) {
                if let Some(user) = self.users.get(id) {
                    pools.insert(PoolKey { scope: self.scope_of_user(user), sku: sku.clone() });
                }
            }
        }
        pools
    }

    fn top_level_orgs(&self) -> Vec<OrgId> {
        self.orgs.iter().filter(|(_, parent)| parent.is_none()).map(|(o, _)| o.clone()).collect()
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        let (at, position) = (r.effective_at, r.position);
        match r.event {
            Event::OrganizationCreated { org, parent, .. } => {
                self.orgs.insert(org.clone(), parent.clone());
            }
            Event::SubscriptionCreated { terms } => {
                let pool = self.pool_of_terms(terms);
                self.pools.entry(pool.clone()).or_default();
                self.subscriptions.insert(
                    terms.subscription.clone(),
                    SubscriptionTrack {
                        pool,
                        effective_start: terms.effective_start,
                        initial: terms.quantity,
                        quantity: Steps::default(),
                        deactivate_on: terms.deactivate_on,
                        ended_on: None,
                        trial_lapsed_on: None,
                    },
                );
            }
            Event::QuantityChanged { subscription, pool, from, to, reason, order, .. } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    sub.quantity.push(at, position, *to);
                }
                if to > from {
                    let (kind, trigger_event) = match reason {
                        QuantityReason::Order => (AdditionKind::Order, None),
                        QuantityReason::ManualAddition => (AdditionKind::Manual, None),
                        QuantityReason::AutomaticTopUp { trigger_event } => {
                            (AdditionKind::Automatic, Some(*trigger_event))
                        }
                    };
                    let addition = Addition {
                        effective_at: at,
                        recorded_at: r.recorded_at,
                        kind,
                        licences: u64::from(to - from),
                        from: *from,
                        to: *to,
                        sku: pool.sku.to_smol_str(),
                        organization: match &pool.scope {
                            PoolScope::Workspace => None,
                            PoolScope::Organization(o) => Some(o.to_smol_str()),
                        },
                        subscription: subscription.to_smol_str(),
                        ordered_by: SmolStr::new(&order.ordered_by),
                        actor: SmolStr::new(r.actor),
                        order_reference: order.order_reference.as_deref().map(SmolStr::new),
                        order_date: order.order_date,
                        order_thru: order.order_thru.as_deref().map(SmolStr::new),
                        trigger_event,
                        event_id: r.id,
                        position,
                    };
                    let log = self.pools.entry(pool.clone()).or_default();
                    let index = log.additions.partition_point(|a| (a.effective_at, a.position) <= (at, position));
                    log.additions.insert(index, addition);
                }
            }
            Event::DeactivationScheduled { subscription, deactivate_on } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    sub.deactivate_on = *deactivate_on;
                }
            }
            Event::TrialEnded { subscription, converted, ended_on } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    sub.trial_lapsed_on = if *converted { None } else { Some(*ended_on) };
                }
            }
            Event::SubscriptionEnded { subscription, ended_on } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    sub.ended_on = Some(*ended_on);
                }
            }
            Event::LicenceSettingsChanged { pool, .. } => {
                self.pools.entry(pool.clone()).or_default().configured = true;
            }
            Event::TopUpCapReached { pool, .. } => {
                let log = self.pools.entry(pool.clone()).or_default();
                let index = log.capped.partition_point(|c| *c <= at);
                log.capped.insert(index, at);
            }
            Event::UserAdded { user, org, status, .. } => {
                let mut track = UserTrack {
                    org: org.clone(),
                    status: Steps::default(),
                    direct: SmallMap::new(),
                    groups: SmallMap::new(),
                };
                track.status.push(at, position, *status);
                self.users.insert(user.clone(), track);
            }
            Event::UserStatusChanged { user, to, .. } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.status.push(at, position, *to);
                }
            }
            Event::GroupCreated { group, .. } => {
                self.groups.entry(group.clone()).or_default();
            }
            Event::GroupMemberAdded { group, user } | Event::GroupMemberRemoved { group, user } => {
                let joined = matches!(r.event, Event::GroupMemberAdded { .. });
                if let Some(u) = self.users.get_mut(user) {
                    u.groups.entry(group.clone()).or_default().push(at, position, joined);
                }
                self.groups.entry(group.clone()).or_default().members_ever.insert(user.clone());
            }
            Event::ModuleAssigned { sku, target } | Event::ModuleUnassigned { sku, target } => {
                let assigned = matches!(r.event, Event::ModuleAssigned { .. });
                match target {
                    ModuleTarget::User(id) => {
                        if let Some(u) = self.users.get_mut(id) {
                            u.direct.entry(sku.clone()).or_default().push(at, position, assigned);
                            self.direct_by_sku.entry(sku.clone()).or_default().insert(id.clone());
                        }
                    }
                    ModuleTarget::Group(id) => {
                        let group = self.groups.entry(id.clone()).or_default();
                        group.modules.entry(sku.clone()).or_default().push(at, position, assigned);
                        self.groups_by_sku.entry(sku.clone()).or_default().insert(id.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

/// The licence reports read model: see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct LicenceReports {
    catalog: Catalog,
    workspaces: BTreeMap<WorkspaceId, WorkspaceTrack>,
}

/// A pool's licences and seats as step functions: each entry holds from its
/// instant until the next one. Built by merging the changes of both.
#[derive(Debug, Clone, Default)]
struct PoolSeries {
    /// (instant, change of total, change of assigned), sorted by instant.
    changes: Vec<(DateTime<Utc>, i64, i64)>,
}

impl PoolSeries {
    fn timeline(&self, pick: impl Fn(&(DateTime<Utc>, i64, i64)) -> i64) -> Vec<(DateTime<Utc>, u64)> {
        let mut out: Vec<(DateTime<Utc>, u64)> = vec![];
        let mut value = 0i64;
        for change in &self.changes {
            let d = pick(change);
            if d == 0 {
                continue;
            }
            value += d;
            let v = value.max(0) as u64;
            match out.last_mut() {
                Some(last) if last.0 == change.0 => last.1 = v,
                _ => out.push((change.0, v)),
            }
        }
        out.dedup_by(|later, earlier| later.1 == earlier.1);
        out
    }
}

/// Hundredths of a percent `part ÷ whole × 100`, rounded half away from zero.
fn percent(part: i128, whole: i128) -> Option<Decimal> {
    if whole <= 0 {
        return None;
    }
    let part = part.max(0);
    let hundredths = (part * 20_000 + whole) / (2 * whole);
    Some(Decimal::try_from_i128_with_scale(hundredths, 2).unwrap_or(Decimal::MAX))
}

/// A duration integral (value × microseconds) in days, rounded to 4
/// decimals half away from zero for display, trailing zeros dropped.
fn in_days(value_micros: i128) -> Decimal {
    let value = Decimal::try_from_i128_with_scale(value_micros, 0).unwrap_or(Decimal::MAX);
    let days = value / Decimal::from(DAY_MICROS as i64);
    days.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero).normalize()
}

impl LicenceReports {
    /// The workspaces folded so far.
    pub fn workspaces(&self) -> impl Iterator<Item = &WorkspaceId> {
        self.workspaces.keys()
    }

    /// Every pool of a workspace that has a subscription, settings or a seat
    /// ever assigned.
    pub fn pools(&self, workspace: &WorkspaceId) -> Result<Vec<PoolKey>, ReportError> {
        let ws = self.workspace(workspace)?;
        Ok(ws.known_pools().into_iter().collect())
    }

    fn workspace(&self, id: &WorkspaceId) -> Result<&WorkspaceTrack, ReportError> {
        self.workspaces.get(id).ok_or_else(|| ReportError::UnknownWorkspace(id.clone()))
    }

    /// Check that `pool` names a pool of its workspace.
    fn resolve(&self, pool: &ReportPool) -> Result<(&WorkspaceTrack, PoolKey), ReportError> {
        let ws = self.workspace(&pool.workspace)?;
        match (ws.billing_mode, &pool.organization) {
            (BillingMode::Assigned, None) => {
                return Err(ReportError::NeedsOrganization {
                    workspace: pool.workspace.clone(),
                    top_level: ws.top_level_orgs(),
                })
            }
            (BillingMode::Assigned, Some(org)) => {
                if !ws.orgs.contains_key(org) {
                    return Err(ReportError::UnknownOrganization {
                        workspace: pool.workspace.clone(),
                        organization: org.clone(),
                    });
                }
                let top = ws.top_level_of(org);
                if top != *org {
                    return Err(ReportError::NotTopLevel {
                        workspace: pool.workspace.clone(),
                        organization: org.clone(),
                        top_level: top,
                    });
                }
            }
            (mode, Some(org)) => {
                return Err(ReportError::OrganizationNotApplicable {
                    workspace: pool.workspace.clone(),
                    mode,
                    organization: org.clone(),
                })
            }
            (_, None) => {}
        }
        let key = pool.key();
        if !ws.has_pool(&key) {
            return Err(ReportError::UnknownPool {
                workspace: pool.workspace.clone(),
                pool: key,
                known: ws.known_pools().into_iter().collect(),
            });
        }
        Ok((ws, key))
    }

    fn series(ws: &WorkspaceTrack, key: &PoolKey) -> PoolSeries {
        let mut changes = vec![];
        ws.total_deltas(key, &mut changes);
        ws.assigned_deltas(key, &mut changes);
        changes.sort_by_key(|c| c.0);
        PoolSeries { changes }
    }

    /// The pool's licences over business time: from each instant on, until
    /// the next entry. Before the first entry the pool held none.
    pub fn total_timeline(&self, pool: &ReportPool) -> Result<Vec<(DateTime<Utc>, u64)>, ReportError> {
        let (ws, key) = self.resolve(pool)?;
        Ok(Self::series(ws, &key).timeline(|c| c.1))
    }

    /// The pool's assigned seats over business time, like [`Self::total_timeline`].
    pub fn assigned_timeline(&self, pool: &ReportPool) -> Result<Vec<(DateTime<Utc>, u64)>, ReportError> {
        let (ws, key) = self.resolve(pool)?;
        Ok(Self::series(ws, &key).timeline(|c| c.2))
    }

    /// Every addition to the pool (automatic, manual and order), in business-time order.
    pub fn additions(&self, pool: &ReportPool) -> Result<Vec<Addition>, ReportError> {
        let (ws, key) = self.resolve(pool)?;
        Ok(ws.pools.get(&key).map(|log| log.additions.clone()).unwrap_or_default())
    }

    /// The report of one pool over `range`.
    pub fn pool_report(&self, pool: &ReportPool, range: ReportRange) -> Result<PoolReport, ReportError> {
        let (ws, key) = self.resolve(pool)?;
        let series = Self::series(ws, &key);
        let changes = &series.changes;
        let range_start = day_start(range.start());

        // Values in effect at the start of the range.
        let (mut total, mut assigned) = (0i64, 0i64);
        let mut next = 0;
        while next < changes.len() && changes[next].0 <= range_start {
            total += changes[next].1;
            assigned += changes[next].2;
            next += 1;
        }

        let mut daily = Vec::with_capacity(range.days() as usize);
        let (mut total_integral, mut assigned_integral) = (0i128, 0i128);
        for day in range.each_day() {
            let (from, until) = (day_start(day), day_start(day) + Duration::days(1));
            let (mut day_total, mut day_assigned) = (0i128, 0i128);
            let mut cursor = from;
            while next < changes.len() && changes[next].0 < until {
                let (t, dt, da) = changes[next];
                let span = micros(t - cursor);
                day_total += i128::from(total.max(0)) * span;
                day_assigned += i128::from(assigned.max(0)) * span;
                cursor = t;
                total += dt;
                assigned += da;
                next += 1;
            }
            let span = micros(until - cursor);
            day_total += i128::from(total.max(0)) * span;
            day_assigned += i128::from(assigned.max(0)) * span;
            total_integral += day_total;
            assigned_integral += day_assigned;
            let (t, a) = (total.max(0) as u64, assigned.max(0) as u64);
            daily.push(DailyRow {
                day,
                total: t,
                assigned: a,
                available: t.saturating_sub(a),
                utilisation_percent: percent(day_assigned, day_total),
                top_ups: 0,
                automatic_added: 0,
                manual_added: 0,
                order_added: 0,
            });
        }

        let log = ws.pools.get(&key);
        let mut additions = vec![];
        let (mut automatic, mut manual, mut orders) = (Tally::default(), Tally::default(), Tally::default());
        for a in log.map(|l| l.additions.as_slice()).unwrap_or_default() {
            let day = a.effective_at.date_naive();
            if !range.contains(day) {
                continue;
            }
            let row = &mut daily[(day - range.start()).num_days() as usize];
            match a.kind {
                AdditionKind::Automatic => {
                    automatic.add(a.licences);
                    row.top_ups += 1;
                    row.automatic_added += a.licences;
                }
                AdditionKind::Manual => {
                    manual.add(a.licences);
                    row.top_ups += 1;
                    row.manual_added += a.licences;
                }
                AdditionKind::Order => {
                    orders.add(a.licences);
                    row.order_added += a.licences;
                }
            }
            additions.push(a.clone());
        }
        let capped_top_ups =
            log.map(|l| l.capped.iter().filter(|c| range.contains(c.date_naive())).count() as u64).unwrap_or(0);
        let last = daily.last().cloned();
        let top_ups = automatic.plus(manual);
        let product = self.catalog.product(&key.sku);
        Ok(PoolReport {
            workspace: pool.workspace.to_string(),
            organization: pool.organization.as_ref().map(|o| o.to_string()),
            sku: key.sku.to_string(),
            product: product.map(|p| p.name.clone()).unwrap_or_default(),
            seat_limited: product.is_some_and(|p| p.is_seat_limited()),
            period: range.kind(),
            start: range.start(),
            end: range.end(),
            days: range.days(),
            total_at_end: last.as_ref().map_or(0, |d| d.total),
            assigned_at_end: last.as_ref().map_or(0, |d| d.assigned),
            available_at_end: last.as_ref().map_or(0, |d| d.available),
            average_utilisation_percent: percent(assigned_integral, total_integral),
            licence_days: in_days(total_integral),
            assigned_seat_days: in_days(assigned_integral),
            total_top_ups: top_ups.count,
            total_licences_added: top_ups.licences,
            automatic,
            manual,
            order_increases: orders,
            capped_top_ups,
            daily,
            additions,
        })
    }

    /// The end-of-month report of licence additions of a workspace:
    /// automatic top-ups and manual additions whose business time falls in
    /// `month` (UTC), per pool.
    pub fn additions_report(&self, workspace: &WorkspaceId, month: Month) -> Result<AdditionsReport, ReportError> {
        let ws = self.workspace(workspace)?;
        let mut by_pool: BTreeMap<(&Sku, &PoolScope), PoolAdditions> = BTreeMap::new();
        let (mut automatic, mut manual) = (Tally::default(), Tally::default());
        for (key, log) in &ws.pools {
            for a in &log.additions {
                if !month.contains(a.effective_at.date_naive()) || a.kind == AdditionKind::Order {
                    continue;
                }
                let entry = by_pool.entry((&key.sku, &key.scope)).or_insert_with(|| PoolAdditions {
                    sku: key.sku.to_string(),
                    organization: match &key.scope {
                        PoolScope::Workspace => None,
                        PoolScope::Organization(o) => Some(o.to_string()),
                    },
                    product: self.catalog.product(&key.sku).map(|p| p.name.clone()).unwrap_or_default(),
                    automatic: Tally::default(),
                    manual: Tally::default(),
                    total: Tally::default(),
                    additions: vec![],
                });
                match a.kind {
                    AdditionKind::Automatic => {
                        entry.automatic.add(a.licences);
                        automatic.add(a.licences);
                    }
                    AdditionKind::Manual => {
                        entry.manual.add(a.licences);
                        manual.add(a.licences);
                    }
                    AdditionKind::Order => {}
                }
                entry.total.add(a.licences);
                entry.additions.push(a.clone());
            }
        }
        Ok(AdditionsReport {
            workspace: workspace.to_string(),
            month: month.to_string(),
            start: month.first_day(),
            end: month.last_day(),
            automatic,
            manual,
            total: automatic.plus(manual),
            skus: by_pool.into_values().collect(),
        })
    }
}

impl Projection for LicenceReports {
    fn name(&self) -> &'static str {
        "licence-reports"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        match r.stream {
            StreamId::Catalog => self.catalog.apply(r.event),
            StreamId::Invoices(_) | StreamId::Outbox(_) => {}
            StreamId::Workspace(id) => {
                if let Event::WorkspaceCreated { billing_mode, .. } = r.event {
                    self.workspaces.insert(id.clone(), WorkspaceTrack::new(*billing_mode));
                }
                if let Some(ws) = self.workspaces.get_mut(id) {
                    ws.apply(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_first_step_takes_one_slot_and_later_ones_keep_their_order() {
        let at = |day: u32| d(2024, 3, day).and_hms_opt(9, 0, 0).unwrap().and_utc();
        let mut steps = Steps::default();
        steps.push(at(10), 1, 5u32);
        assert!(steps.entries.capacity() < 4, "one entry, not the four slots a vector starts with");
        steps.push(at(20), 2, 8);
        // Recorded last, effective first.
        steps.push(at(5), 3, 2);
        assert_eq!(steps.instants().collect::<Vec<_>>(), [at(5), at(10), at(20)]);
        assert_eq!((steps.at(at(4)), steps.at(at(6)), steps.at(at(25))), (None, Some(2), Some(8)));
    }

    #[test]
    fn iso_weeks_run_monday_to_sunday() {
        // 2024-04-10 is a Wednesday.
        let w = ReportRange::iso_week(d(2024, 4, 10)).unwrap();
        assert_eq!((w.start(), w.end(), w.days()), (d(2024, 4, 8), d(2024, 4, 14), 7));
        // A Sunday belongs to the week that started six days before; a week may span two years.
        let w = ReportRange::iso_week(d(2025, 1, 5)).unwrap();
        assert_eq!((w.start(), w.end()), (d(2024, 12, 30), d(2025, 1, 5)));
        let w = ReportRange::iso_week(d(2024, 4, 8)).unwrap();
        assert_eq!(w.start(), d(2024, 4, 8));
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(
            ReportRange::custom(d(2024, 3, 2), d(2024, 3, 1)),
            Err(ReportError::InvertedRange { start: d(2024, 3, 2), end: d(2024, 3, 1) })
        );
        assert!(ReportRange::custom(d(2024, 1, 1), d(2024, 12, 31)).is_ok(), "a leap year is 366 days");
        let err = ReportRange::custom(d(2024, 1, 1), d(2025, 1, 1)).unwrap_err();
        assert_eq!(err, ReportError::RangeTooLong { start: d(2024, 1, 1), end: d(2025, 1, 1), days: 367 });
        assert!(err.to_string().contains("at most 366 days"), "{err}");
        assert!(matches!(ReportRange::day(d(1969, 12, 31)), Err(ReportError::OutsideCalendar { .. })));
        assert!(matches!(ReportRange::iso_week(d(9999, 12, 31)), Err(ReportError::OutsideCalendar { .. })));
        assert!(matches!(ReportRange::iso_week(d(1970, 1, 1)), Err(ReportError::OutsideCalendar { .. })));
        assert_eq!(ReportRange::month(Month::new(2024, 2).unwrap()).unwrap().days(), 29);
    }

    #[test]
    fn percentages_round_half_away_from_zero() {
        assert_eq!(percent(212, 310), Some(Decimal::new(6839, 2)));
        assert_eq!(percent(1, 8), Some(Decimal::new(1250, 2)));
        // 1/1600 = 0.0625% → 0.06; 1/800 = 0.125% → 0.13
        assert_eq!(percent(1, 1600), Some(Decimal::new(6, 2)));
        assert_eq!(percent(1, 800), Some(Decimal::new(13, 2)));
        assert_eq!(percent(5, 0), None);
        assert_eq!(percent(0, 10), Some(Decimal::new(0, 2)));
    }
}
