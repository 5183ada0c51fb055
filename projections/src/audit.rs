//! The audit log: "who changed what, when, through which channel".
//!
//! Every event becomes one entry, with the entities it is about and a
//! sentence describing it. Queries filter by workspace, entity, actor, event
//! type and recorded or effective time range, and page through results in a
//! stable order (global position) with a cursor, so paging never skips or
//! repeats an entry even while new events arrive.

use crate::{Projection, Recorded, RestoreError};
use chrono::format::{Item, Numeric, Pad};
use chrono::{DateTime, Utc};
use seatledger_domain::*;
use serde::{Deserialize, Serialize};
use smol_str::{SmolStr, SmolStrBuilder};

/// The most entries one page returns.
pub const MAX_PAGE_SIZE: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub stream: SmolStr,
    pub stream_version: u64,
    pub workspace: Option<SmolStr>,
    pub event_type: SmolStr,
    pub recorded_at: DateTime<Utc>,
    pub effective_at: DateTime<Utc>,
    pub actor: SmolStr,
    pub channel: SmolStr,
    /// `kind:id` labels, such as `user:u1` or `sku:HYBRID`.
    pub entities: Vec<SmolStr>,
    pub summary: String,
}

/// What to look for. Every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub workspace: Option<String>,
    /// An entity label (`user:u1`); a bare id matches any kind.
    pub entity: Option<String>,
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub recorded_from: Option<DateTime<Utc>>,
    pub recorded_until: Option<DateTime<Utc>>,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_until: Option<DateTime<Utc>>,
    /// Return entries after this position (the cursor of the previous page).
    pub after_position: u64,
    pub limit: usize,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after_position` to get the next page; `None` on the last page.
    pub next_after: Option<u64>,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.matches_event(e.position, e.workspace.as_deref(), &e.actor, &e.event_type, e.recorded_at, e.effective_at)
            && self.matches_entities(&e.entities)
    }

    /// Every filter but the entity, on what an event carries without
    /// building its entry.
    fn matches_event(
        &self,
        position: u64,
        workspace: Option<&str>,
        actor: &str,
        event_type: &str,
        recorded_at: DateTime<Utc>,
        effective_at: DateTime<Utc>,
    ) -> bool {
        let in_range = |t: DateTime<Utc>, from: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>| {
            from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u)
        };
        position > self.after_position
            && self.workspace.as_deref().is_none_or(|w| workspace == Some(w))
            && self.actor.as_deref().is_none_or(|a| actor == a)
            && self.event_type.as_deref().is_none_or(|t| event_type == t)
            && in_range(recorded_at, self.recorded_from, self.recorded_until)
            && in_range(effective_at, self.effective_from, self.effective_until)
    }

    fn matches_entities(&self, labels: &[SmolStr]) -> bool {
        self.entity.as_ref().is_none_or(|wanted| {
            labels.iter().any(|label| {
                label == wanted || (!wanted.contains(':') && label.split_once(':').is_some_and(|(_, id)| id == wanted))
            })
        })
    }

    fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

impl AuditLog {
    /// One page of entries matching `query`, in global order.
    pub fn query(&self, query: &AuditQuery) -> AuditPage {
        let limit = query.page_size();
        // Entries are in position order: start the scan at the cursor.
        let start = self.entries.partition_point(|e| e.position <= query.after_position);
        let mut matching = self.entries[start..].iter().filter(|e| query.matches(e));
        let entries: Vec<AuditEntry> = matching.by_ref().take(limit).cloned().collect();
        let next_after = match (entries.last(), matching.next()) {
            (Some(last), Some(_)) => Some(last.position),
            _ => None,
        };
        AuditPage { entries, next_after }
    }
}

impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit-log"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        assert!(
            self.entries.last().is_none_or(|last| last.position < r.position),
            "audit log received position {} out of order",
            r.position
        );
        self.entries.push(entry(r));
    }

    fn save(&self) -> Option<String> {
        Some(serde_json::to_string(self).expect("the audit log always serializes"))
    }

    fn restore(&mut self, state: &str) -> Result<(), RestoreError> {
        *self = serde_json::from_str(state).map_err(|e| RestoreError(e.to_string()))?;
        Ok(())
    }
}

/// The audit entry of one recorded event.
pub fn entry(r: &Recorded<'_>) -> AuditEntry {
    let (prefix, id) = r.stream.name_parts();
    AuditEntry {
        position: r.position,
        event_id: r.id,
        stream: joined(&[prefix, id]),
        stream_version: r.stream_version,
        workspace: r.stream.workspace().map(WorkspaceId::to_smol_str),
        event_type: SmolStr::new(r.event_type),
        recorded_at: r.recorded_at,
        effective_at: r.effective_at,
        actor: SmolStr::new(r.actor),
        channel: SmolStr::new(r.channel),
        entities: entity_labels(r.event),
        summary: describe(r.event),
    }
}

/// Short texts (stream names, labels) kept inline up to 23 bytes: an entry's
/// only allocations are its summary and its list of labels.
fn joined(parts: &[&str]) -> SmolStr {
    let mut text = SmolStrBuilder::new();
    for part in parts {
        text.push_str(part);
    }
    text.finish()
}

fn entity_labels(event: &Event) -> Vec<SmolStr> {
    event
        .entities()
        .iter()
        .map(|e| {
            let (kind, id) = e.kind_and_id();
            joined(&[kind, ":", id])
        })
        .collect()
}

/// One audit query answered in a single pass over the log.
///
/// It gives the page [`AuditLog::query`] gives over the whole log (a test
/// checks it), but holds at most one page and one entry more, not the whole
/// history, and builds an entry (the summary is the costly part) only for
/// the events that pass the filters. Once the page is full and one more
/// match has been seen, it ignores the rest of the log.
#[derive(Debug, Clone)]
pub struct AuditSearch {
    query: AuditQuery,
    found: Vec<AuditEntry>,
    /// A match beyond the page was seen: there is a next page.
    more: bool,
}

impl AuditSearch {
    pub fn new(query: AuditQuery) -> Self {
        Self { query, found: Vec::new(), more: false }
    }

    pub fn into_page(self) -> AuditPage {
        let next_after = if self.more { self.found.last().map(|e| e.position) } else { None };
        AuditPage { entries: self.found, next_after }
    }
}

impl Projection for AuditSearch {
    fn name(&self) -> &'static str {
        "audit-search"
    }

    /// The page is full and a further match was seen: later events cannot
    /// change the page.
    fn is_complete(&self) -> bool {
        self.more
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        if self.more {
            return;
        }
        let q = &self.query;
        let workspace = r.stream.workspace().map(|w| w.as_str());
        if !q.matches_event(r.position, workspace, r.actor, r.event_type, r.recorded_at, r.effective_at) {
            return;
        }
        if q.entity.is_some() && !q.matches_entities(&entity_labels(r.event)) {
            return;
        }
        if self.found.len() == q.page_size() {
            self.more = true;
        } else {
            self.found.push(entry(r));
        }
    }
}

/// The last entries of the audit log and how many there are, in memory
/// bounded by how many are kept: what a "recent activity" view needs. It
/// keeps no saved state, so a runner folds it from zero.
#[derive(Debug, Clone)]
pub struct AuditTail {
    keep: usize,
    entries: std::collections::VecDeque<AuditEntry>,
    count: u64,
}

impl AuditTail {
    pub fn new(keep: usize) -> Self {
        Self { keep, entries: std::collections::VecDeque::with_capacity(keep), count: 0 }
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &AuditEntry> {
        self.entries.iter()
    }

    /// How many entries the whole audit log has.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Projection for AuditTail {
    fn name(&self) -> &'static str {
        "audit-tail"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        self.count += 1;
        if self.keep == 0 {
            return;
        }
        if self.entries.len() == self.keep {
            self.entries.pop_front();
        }
        self.entries.push_back(entry(r));
    }
}

fn scope(pool: &PoolKey) -> String {
    match &pool.scope {
        PoolScope::Workspace => format!("pool {}", pool.sku),
        PoolScope::Organization(o) => format!("pool {} of {o}", pool.sku),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// `%Y-%m-%d %H:%M`, parsed once here instead of on every event described
/// (reservations are the most frequent events there are).
const MINUTE: &[Item<'static>] = &[
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Space(" "),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
];

/// A time as `%Y-%m-%d %H:%M`. Years 0 to 9999 (every time the domain
/// accepts) are written digit by digit into a buffer, four times cheaper
/// than chrono's formatter; other years go through chrono, which writes
/// their sign and width. A test compares the two on both kinds of year.
struct Minute(DateTime<Utc>);

impl std::fmt::Display for Minute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = self.0.naive_utc();
        let Some(year) = u32::try_from(t.year()).ok().filter(|year| *year <= 9999) else {
            return self.0.format_with_items(MINUTE.iter()).fmt(f);
        };
        let mut text = *b"0000-00-00 00:00";
        for (range, value) in
            [(0..4, year), (5..7, t.month()), (8..10, t.day()), (11..13, t.hour()), (14..16, t.minute())]
        {
            let mut rest = value;
            for digit in text[range].iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// One sentence saying what an event means.
pub fn describe(event: &Event) -> String {
    match event {
        Event::ProductDefined { sku, name, kind, charge_model, .. } => {
            format!("product {sku} \"{name}\" defined: {kind}, charged {charge_model}")
        }
        Event::PriceSet { sku, price } => format!(
            "price of {sku} on {} set to {} (cost {})",
            price.price_list, price.selling_per_unit, price.cost_per_unit
        ),
        Event::BundleDefined { parent, children, add_ons } => format!(
            "bundle {parent} includes [{}] with add-ons [{}]",
            children.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            add_ons.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        Event::NotificationSent { notification, attempt } => {
            format!("notification {notification} delivered on attempt {attempt}")
        }
        Event::NotificationFailed { notification, attempt, reason } => {
            format!("notification {notification} failed on attempt {attempt}: {reason}")
        }
        Event::PricesIndexed { percent, effective_on } => {
            format!("prices not exempt from indexation rise by {percent} from {effective_on}")
        }
        Event::InvoiceIssued { invoice } => format!(
            "invoice {} issued to {} for {}: {} lines, total {}",
            invoice.number,
            invoice.account,
            invoice.period,
            invoice.lines.len(),
            invoice.total
        ),
        Event::CreditNoteIssued { note } | Event::DebitNoteIssued { note } => {
            format!("{} note {} corrects invoice {}: {}", note.kind, note.number, note.original, note.total)
        }
        Event::WorkspaceCreated { workspace, name, billing_mode, created_on, legacy_plan } => format!(
            "workspace {workspace} \"{name}\" created on {created_on} in {billing_mode} mode{}",
            legacy_plan.map(|p| format!(", legacy plan {p}")).unwrap_or_default()
        ),
        Event::BillingInfoSet { info } => format!(
            "billing info set: {} ({}, {}, {})",
            info.company_name, info.reference_number, info.customer_type, info.industry
        ),
        Event::WorkspaceMigratedToModules { migrated_on } => format!("migrated to modules on {migrated_on}"),
        Event::BillingActivated { activated_on } => format!("billing activated on {activated_on}"),
        Event::BillingAccountOpened { account, name, currency, tax_rate, .. } => {
            format!("billing account {account} \"{name}\" opened in {currency}, tax {tax_rate}")
        }
        Event::OrganizationCreated { org, name, parent, account } => {
            format!("organization {org} \"{name}\" created under {}, account {}", opt(parent), opt(account))
        }
        Event::SubscriptionCreated { terms } => format!(
            "subscription {} to {} for account {}: {} × {} from {}{}{}",
            terms.subscription,
            terms.sku,
            terms.account,
            terms.quantity,
            terms.selling_per_unit,
            terms.effective_start,
            if terms.trial { ", trial" } else { "" },
            if terms.billable { "" } else { ", not billable" }
        ),
        Event::QuantityChanged { subscription, pool, from, to, reason, order, channel } => format!(
            "{} of {subscription} ({}) changed {from} → {to} by {} via {channel}{}",
            "quantity",
            scope(pool),
            order.ordered_by,
            match reason {
                QuantityReason::Order =>
                    order.order_reference.as_ref().map(|r| format!(", order {r}")).unwrap_or_default(),
                QuantityReason::ManualAddition => ", licences added manually".to_owned(),
                QuantityReason::AutomaticTopUp { trigger_event } =>
                    format!(", automatic top-up caused by {trigger_event}"),
            }
        ),
        Event::DeactivationScheduled { subscription, deactivate_on } => {
            format!("subscription {subscription} deactivates on {}", opt(deactivate_on))
        }
        Event::TrialEnded { subscription, converted, ended_on } => format!(
            "trial {subscription} ended on {ended_on}, {}",
            if *converted { "converted to paid" } else { "not converted" }
        ),
        Event::SubscriptionEnded { subscription, ended_on } => {
            format!("subscription {subscription} ends on {ended_on}")
        }
        Event::LicenceSettingsChanged { pool, settings } => format!(
            "settings of {}: alert at {}, top-up {}",
            scope(pool),
            opt(&settings.alert_threshold),
            settings.top_up.map_or_else(
                || "off".to_owned(),
                |t| format!(
                    "to {} vacant seats, at most {} per top-up and {} per month",
                    t.vacant_seat_threshold, t.max_per_top_up, t.max_per_month
                )
            )
        ),
        Event::LowLicenceAlertRaised { pool, available, threshold } => {
            format!("low licence alert on {}: {available} available, threshold {threshold}", scope(pool))
        }
        Event::LicenceAlertCleared { pool, available, threshold } => {
            format!("licence alert on {} cleared: {available} available, threshold {threshold}", scope(pool))
        }
        Event::TopUpCapReached { pool, trigger_event, needed, allowed, month_used } => format!(
            "top-up cap reached on {}: {allowed} of {needed} licences added ({month_used} topped up earlier this month), trigger {trigger_event}",
            scope(pool)
        ),
        Event::NotificationRecipientAdded { recipient, email, kinds } => format!(
            "recipient {recipient} <{email}> added for [{}]",
            kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Event::NotificationSettingsChanged { recipient, kinds } => format!(
            "recipient {recipient} now receives [{}]",
            kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Event::NotificationRecipientRemoved { recipient } => format!("recipient {recipient} removed"),
        Event::UserAdded { user, org, profile, status, source } => format!(
            "user {user} ({} {}, {}) added to {org} as {} {}{}, {status}, via {source}",
            profile.first_name,
            profile.last_name,
            profile.username,
            profile.audience,
            profile.kind,
            if profile.administrator { " administrator" } else { "" }
        ),
        Event::UserProfileUpdated { user, profile } => {
            format!("profile of {user} updated ({} {}, {})", profile.first_name, profile.last_name, profile.email)
        }
        Event::UserStatusChanged { user, from, to, source } => format!("user {user} {from} → {to} via {source}"),
        Event::StatusAuthoritySet { authority } => format!("status authority set to {authority}"),
        Event::ScimDefaultStatusSet { status } => format!("scim default status set to {status}"),
        Event::SyncStarted { tool } => format!("{tool} sync started"),
        Event::SyncStopped { tool } => format!("{tool} sync stopped"),
        Event::GroupCreated { group, name } => format!("group {group} \"{name}\" created"),
        Event::GroupMemberAdded { group, user } => format!("user {user} joined group {group}"),
        Event::GroupMemberRemoved { group, user } => format!("user {user} left group {group}"),
        Event::ModuleAssigned { sku, target } => format!("module {sku} assigned to {}", plain(target)),
        Event::ModuleUnassigned { sku, target } => format!("module {sku} unassigned from {}", plain(target)),
        Event::ReservationMade { reservation, user, starts_at, ends_at } => format!(
            "reservation {reservation} by {user} from {} to {}",
            Minute(*starts_at),
            Minute(*ends_at)
        ),
        Event::RecurringReservationOccurred { series, user, occurs_on } => {
            format!("recurring reservation {series} occurred for {user} on {occurs_on}")
        }
        Event::MembershipStarted { membership, user, starts_on, ends_on } => {
            format!("membership {membership} of {user} from {starts_on} until {}", opt(ends_on))
        }
        Event::MembershipEnded { membership, ends_on } => format!("membership {membership} ends on {ends_on}"),
        Event::PunchPassUsed { use_id, user, used_on } => format!("punch pass use {use_id} by {user} on {used_on}"),
    }
}

fn plain(target: &ModuleTarget) -> String {
    match target {
        ModuleTarget::User(u) => format!("user {u}"),
        ModuleTarget::Group(g) => format!("group {g}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{entry, Minute, MINUTE};
    use crate::Recorded;
    use chrono::{TimeZone, Utc};
    use seatledger_domain::{Event, GroupId, StreamId, UserId, WorkspaceId};

    /// An entry's stream name and labels are built inline (lever 26 in
    /// docs/benchmarks.md); short or past the 23 bytes kept inline, they are
    /// the texts written out here, and what the domain's `String` builders give.
    #[test]
    fn entry_texts_are_the_domains_names_short_or_long() {
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap();
        for (ws, group, user) in [
            ("w", "g", "u"),
            ("ws-0001", "g".repeat(18).as_str(), "u1"),
            (&"w".repeat(64)[..], &"g".repeat(64)[..], &"u".repeat(40)[..]),
        ] {
            let workspace = WorkspaceId::new(ws).unwrap();
            let event =
                Event::GroupMemberAdded { group: GroupId::new(group).unwrap(), user: UserId::new(user).unwrap() };
            let streams = [
                (StreamId::Workspace(workspace.clone()), format!("workspace-{ws}")),
                (StreamId::Invoices(workspace.clone()), format!("invoices-{ws}")),
                (StreamId::Outbox(workspace.clone()), format!("outbox-{ws}")),
                (StreamId::Catalog, "catalog".to_owned()),
            ];
            for (stream, name) in streams {
                let actor = format!("{ws}@example");
                let r = Recorded {
                    position: 7,
                    id: uuid::Uuid::nil(),
                    stream: &stream,
                    stream_version: 3,
                    event_type: "GroupMemberAdded",
                    recorded_at: at,
                    effective_at: at,
                    actor: &actor,
                    channel: "portal",
                    event: &event,
                };
                let e = entry(&r);
                assert_eq!(e.stream, name);
                assert_eq!(e.stream, stream.name());
                let workspace_of = (stream != StreamId::Catalog).then_some(ws);
                assert_eq!(e.workspace.as_deref(), workspace_of);
                assert_eq!(
                    (e.event_type.as_str(), e.actor.as_str(), e.channel.as_str()),
                    ("GroupMemberAdded", actor.as_str(), "portal")
                );
                assert_eq!(e.entities, [format!("group:{group}"), format!("user:{user}")], "{ws} {group} {user}");
                let labels: Vec<String> = event.entities().iter().map(|x| x.label()).collect();
                assert_eq!(e.entities, labels);
            }
        }
    }

    #[test]
    fn the_parsed_once_format_writes_what_the_format_string_writes() {
        for (y, mo, d, h, mi) in [(2024, 3, 1, 8, 0), (2024, 12, 31, 23, 59), (5, 1, 2, 3, 4), (12345, 6, 7, 8, 9)] {
            let t = Utc.with_ymd_and_hms(y, mo, d, h, mi, 30).unwrap();
            assert_eq!(t.format_with_items(MINUTE.iter()).to_string(), t.format("%Y-%m-%d %H:%M").to_string(), "{t:?}");
        }
    }

    #[test]
    fn minutes_are_written_as_chrono_writes_them() {
        let fixed =
            [(2024, 3, 1, 8, 0), (2024, 12, 31, 23, 59), (0, 1, 1, 0, 0), (5, 1, 2, 3, 4), (9999, 12, 31, 23, 59)];
        let odd = [(10000, 1, 1, 0, 0), (12345, 6, 7, 8, 9), (-1, 12, 31, 23, 59), (-2024, 2, 29, 13, 7)];
        let mut times: Vec<_> = fixed
            .iter()
            .chain(&odd)
            .map(|&(y, mo, d, h, mi)| Utc.with_ymd_and_hms(y, mo, d, h, mi, 59).unwrap())
            .collect();
        // Every minute of a leap day and of a year's last hour, and a day a
        // month for three centuries.
        let leap = Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap();
        times.extend((0..24 * 60).map(|m| leap + chrono::Duration::minutes(m)));
        let last = Utc.with_ymd_and_hms(1999, 12, 31, 23, 0, 0).unwrap();
        times.extend((0..61).map(|m| last + chrono::Duration::minutes(m)));
        let start = Utc.with_ymd_and_hms(1900, 1, 15, 7, 45, 0).unwrap();
        times.extend((0..3600).map(|n| start + chrono::Duration::days(n * 30) + chrono::Duration::minutes(n * 7)));
        for t in times {
            assert_eq!(Minute(t).to_string(), t.format("%Y-%m-%d %H:%M").to_string(), "{t:?}");
        }
    }
}
