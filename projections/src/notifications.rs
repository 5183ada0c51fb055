//! The notification outbox of the Licence Manager (seed 002, "Notifications").
//!
//! Which notifications exist is a fold of the workspace streams: one
//! notification per (event, recipient whose kinds include the event's kind)
//! for
//!
//! - `LowLicenceAlertRaised` → `low_licence`,
//! - `QuantityChanged` with reason `automatic_top_up` → `top_up_confirmation`,
//! - `TopUpCapReached` → `cap_reached`,
//!
//! using the recipients and their settings **as they stood when the event
//! happened** (the fold has seen exactly the events before it). A
//! notification's id is `<event id>/<recipient id>`, so folding again always
//! gives the same ids.
//!
//! What delivery did with a notification is a fold of the `outbox-<workspace>`
//! streams (`NotificationSent`, `NotificationFailed`): pending (no attempt
//! yet), sent on attempt n, failed with a reason (retried when more than one
//! attempt was made), or given up after [`MAX_DELIVERY_ATTEMPTS`] failures.

use crate::{Projection, Recorded, RestoreError};
use chrono::{DateTime, Utc};
use seatledger_domain::outbox::MAX_DELIVERY_ATTEMPTS;
use seatledger_domain::{Event, LicenceSettings, NotificationKind, PoolKey, PoolScope, QuantityReason, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One notification to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `<event id>/<recipient id>`: stable however often the log is folded.
    pub id: String,
    pub workspace: String,
    /// `low_licence`, `top_up_confirmation` or `cap_reached`.
    pub kind: String,
    pub recipient: String,
    /// The address, as the recipient's settings had it when the event happened.
    pub email: String,
    pub sku: String,
    /// The top-level organization of the pool in assigned mode.
    pub organization: Option<String>,
    pub subject: String,
    pub body: String,
    /// The event the notification is about.
    pub event_id: uuid::Uuid,
    pub event_position: u64,
    /// When the ledger recorded that event: when the notification came to be.
    pub created_at: DateTime<Utc>,
    /// The event's business time.
    pub effective_at: DateTime<Utc>,
}

/// Where the delivery of one notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// No attempt yet.
    Pending,
    /// Delivered.
    Sent,
    /// The last attempt failed; it will be tried again.
    Failed,
    /// Failed [`MAX_DELIVERY_ATTEMPTS`] times: no more attempts.
    GivenUp,
}

impl DeliveryState {
    pub const ALL: &'static [DeliveryState] =
        &[DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Failed, DeliveryState::GivenUp];

    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::GivenUp => "given_up",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.iter().copied().find(|s| s.as_str() == text).ok_or_else(|| {
            format!(
                "{text:?} is not a delivery state; use one of: {}",
                Self::ALL.iter().map(DeliveryState::as_str).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    pub attempt: u32,
    pub reason: String,
    /// When the failure was recorded.
    pub at: DateTime<Utc>,
}

/// What delivery did with one notification, folded from its outbox stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Attempts recorded so far (the last one's number: attempts are gapless).
    pub attempts: u32,
    pub sent: bool,
    pub sent_at: Option<DateTime<Utc>>,
    pub failures: Vec<DeliveryFailure>,
}

impl Delivery {
    pub fn state(&self) -> DeliveryState {
        if self.sent {
            DeliveryState::Sent
        } else if self.attempts >= MAX_DELIVERY_ATTEMPTS {
            DeliveryState::GivenUp
        } else if self.attempts > 0 {
            DeliveryState::Failed
        } else {
            DeliveryState::Pending
        }
    }

    /// More than one attempt was made.
    pub fn retried(&self) -> bool {
        self.attempts > 1
    }

    /// The reason of the last failure, if any attempt failed.
    pub fn last_error(&self) -> Option<&str> {
        self.failures.last().map(|f| f.reason.as_str())
    }

    /// The number of the next attempt, or `None` when delivery is over
    /// (sent, or given up).
    pub fn next_attempt(&self) -> Option<u32> {
        match self.state() {
            DeliveryState::Pending | DeliveryState::Failed => Some(self.attempts + 1),
            DeliveryState::Sent | DeliveryState::GivenUp => None,
        }
    }

    /// "sent", "sent, retried", "failed (attempt 2 of 5): reason", …
    pub fn describe(&self) -> String {
        match self.state() {
            DeliveryState::Pending => "pending".to_owned(),
            DeliveryState::Sent if self.retried() => format!("sent, retried (attempt {})", self.attempts),
            DeliveryState::Sent => "sent".to_owned(),
            DeliveryState::Failed => format!(
                "failed (attempt {} of {MAX_DELIVERY_ATTEMPTS}): {}",
                self.attempts,
                self.last_error().unwrap_or("no reason recorded")
            ),
            DeliveryState::GivenUp => format!(
                "given up after {} attempts: {}",
                self.attempts,
                self.last_error().unwrap_or("no reason recorded")
            ),
        }
    }

    fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        match event {
            Event::NotificationSent { attempt, .. } => {
                self.attempts = self.attempts.max(*attempt);
                self.sent = true;
                self.sent_at = Some(at);
            }
            Event::NotificationFailed { attempt, reason, .. } => {
                self.attempts = self.attempts.max(*attempt);
                self.failures.push(DeliveryFailure { attempt: *attempt, reason: reason.clone(), at });
            }
            _ => {}
        }
    }
}

/// A notification with its delivery state: what `list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRow {
    #[serde(flatten)]
    pub notification: Notification,
    pub state: DeliveryState,
    pub retried: bool,
    pub delivery: Delivery,
}

/// A recipient as the workspace's events have it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecipientRow {
    email: String,
    kinds: BTreeSet<String>,
}

/// A pool's settings, kept to say what the caps were in the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SettingsRow {
    alert_threshold: Option<u32>,
    top_up: Option<(u32, u32, u32)>,
}

impl From<&LicenceSettings> for SettingsRow {
    fn from(s: &LicenceSettings) -> Self {
        Self {
            alert_threshold: s.alert_threshold,
            top_up: s.top_up.map(|t| (t.vacant_seat_threshold, t.max_per_top_up, t.max_per_month)),
        }
    }
}

/// Everything the fold keeps about one workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WorkspaceBook {
    recipients: BTreeMap<String, RecipientRow>,
    /// Settings per pool, keyed by [`pool_label`].
    settings: BTreeMap<String, SettingsRow>,
    /// Delivery per notification id, from the workspace's outbox stream.
    deliveries: BTreeMap<String, Delivery>,
}

/// The notifications projection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    /// Every notification, in the order its event was recorded.
    notifications: Vec<Notification>,
    workspaces: BTreeMap<String, WorkspaceBook>,
}

/// `SKU` or `SKU@organization`: a pool as one text key.
fn pool_label(pool: &PoolKey) -> String {
    match &pool.scope {
        PoolScope::Workspace => pool.sku.to_string(),
        PoolScope::Organization(o) => format!("{}@{o}", pool.sku),
    }
}

/// "pool HYBRID-SEAT" or "pool HYBRID-SEAT of organization us".
fn pool_words(pool: &PoolKey) -> String {
    match &pool.scope {
        PoolScope::Workspace => format!("pool {}", pool.sku),
        PoolScope::Organization(o) => format!("pool {} of organization {o}", pool.sku),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What one event notifies about: its kind, pool, subject and body.
fn message(
    workspace: &str,
    event: &Event,
    settings: Option<&SettingsRow>,
) -> Option<(NotificationKind, PoolKey, String, String)> {
    match event {
        Event::LowLicenceAlertRaised { pool, available, threshold } => Some((
            NotificationKind::LowLicence,
            pool.clone(),
            format!("[{workspace}] Low licences: {} has {} left", pool.sku, plural(*available, "seat", "seats")),
            format!(
                "The {} of workspace {workspace} has {} available, at or below its alert threshold of {threshold}. \
                 Add licences, or free seats, before the pool runs out.",
                pool_words(pool),
                plural(*available, "licence", "licences"),
            ),
        )),
        Event::QuantityChanged {
            subscription,
            pool,
            from,
            to,
            reason: QuantityReason::AutomaticTopUp { trigger_event },
            ..
        } => {
            let added = u64::from(to.saturating_sub(*from));
            let threshold = settings
                .and_then(|s| s.top_up)
                .map(|(t, _, _)| format!(" to keep its vacant-seat threshold of {t}"))
                .unwrap_or_default();
            Some((
                NotificationKind::TopUpConfirmation,
                pool.clone(),
                format!(
                    "[{workspace}] Automatic top-up: {} added to {}",
                    plural(added, "licence", "licences"),
                    pool.sku
                ),
                format!(
                    "An automatic top-up added {} to the {} of workspace {workspace}{threshold}: \
                     subscription {subscription} went from {from} to {to}. It was caused by event {trigger_event}.",
                    plural(added, "licence", "licences"),
                    pool_words(pool),
                ),
            ))
        }
        Event::TopUpCapReached { pool, trigger_event, needed, allowed, month_used } => {
            let caps = settings
                .and_then(|s| s.top_up)
                .map(|(_, per_top_up, per_month)| {
                    format!(" The caps are {per_top_up} per top-up and {per_month} per month.")
                })
                .unwrap_or_default();
            let added = if *allowed == 0 {
                "no licences were added".to_owned()
            } else {
                format!("only {} of them {} added", allowed, if *allowed == 1 { "was" } else { "were" })
            };
            Some((
                NotificationKind::CapReached,
                pool.clone(),
                format!("[{workspace}] Top-up cap reached for {}: {allowed} of {needed} added", pool.sku),
                format!(
                    "The {} of workspace {workspace} needed {} to restore its vacant-seat threshold, but a cap \
                     stopped the automatic top-up: {added}. {} had been topped up earlier this month.{caps} \
                     It was caused by event {trigger_event}.",
                    pool_words(pool),
                    plural(*needed, "licence", "licences"),
                    plural(*month_used, "licence", "licences"),
                ),
            ))
        }
        _ => None,
    }
}

impl Notifications {
    /// Every notification with its delivery state, in the order they came to be.
    pub fn rows(&self) -> impl Iterator<Item = NotificationRow> + '_ {
        self.notifications.iter().map(|n| {
            let delivery =
                self.workspaces.get(&n.workspace).and_then(|w| w.deliveries.get(&n.id)).cloned().unwrap_or_default();
            NotificationRow { notification: n.clone(), state: delivery.state(), retried: delivery.retried(), delivery }
        })
    }

    /// The notifications of one workspace (or all), in one state (or all).
    pub fn list(&self, workspace: Option<&str>, state: Option<DeliveryState>) -> Vec<NotificationRow> {
        self.rows()
            .filter(|r| workspace.is_none_or(|w| r.notification.workspace == w))
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect()
    }

    /// Notifications still to deliver: pending, or failed and not given up.
    pub fn deliverable(&self) -> Vec<NotificationRow> {
        self.rows().filter(|r| r.delivery.next_attempt().is_some()).collect()
    }

    /// One notification by id.
    pub fn get(&self, id: &str) -> Option<NotificationRow> {
        self.rows().find(|r| r.notification.id == id)
    }

    pub fn len(&self) -> usize {
        self.notifications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notifications.is_empty()
    }

    /// The recipients of a workspace as they stand now: id, email and kinds.
    pub fn recipients(&self, workspace: &str) -> Vec<(String, String, Vec<String>)> {
        self.workspaces
            .get(workspace)
            .map(|w| {
                w.recipients
                    .iter()
                    .map(|(id, r)| (id.clone(), r.email.clone(), r.kinds.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn apply_workspace(&mut self, workspace: &str, r: &Recorded<'_>) {
        let book = self.workspaces.entry(workspace.to_owned()).or_default();
        match r.event {
            Event::NotificationRecipientAdded { recipient, email, kinds } => {
                book.recipients.insert(
                    recipient.to_string(),
                    RecipientRow { email: email.clone(), kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect() },
                );
                return;
            }
            Event::NotificationSettingsChanged { recipient, kinds } => {
                if let Some(row) = book.recipients.get_mut(recipient.as_str()) {
                    row.kinds = kinds.iter().map(|k| k.as_str().to_owned()).collect();
                }
                return;
            }
            Event::NotificationRecipientRemoved { recipient } => {
                book.recipients.remove(recipient.as_str());
                return;
            }
            Event::LicenceSettingsChanged { pool, settings } => {
                book.settings.insert(pool_label(pool), settings.into());
                return;
            }
            _ => {}
        }
        let settings = match r.event {
            Event::QuantityChanged { pool, .. } | Event::TopUpCapReached { pool, .. } => {
                book.settings.get(&pool_label(pool))
            }
            _ => None,
        };
        let Some((kind, pool, subject, body)) = message(workspace, r.event, settings) else { return };
        for (recipient, row) in &book.recipients {
            if !row.kinds.contains(kind.as_str()) {
                continue;
            }
            self.notifications.push(Notification {
                id: format!("{}/{recipient}", r.id),
                workspace: workspace.to_owned(),
                kind: kind.as_str().to_owned(),
                recipient: recipient.clone(),
                email: row.email.clone(),
                sku: pool.sku.to_string(),
                organization: match &pool.scope {
                    PoolScope::Workspace => None,
                    PoolScope::Organization(o) => Some(o.to_string()),
                },
                subject: subject.clone(),
                body: body.clone(),
                event_id: r.id,
                event_position: r.position,
                created_at: r.recorded_at,
                effective_at: r.effective_at,
            });
        }
    }
}

impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        match r.stream {
            StreamId::Workspace(ws) => self.apply_workspace(ws.as_str(), r),
            StreamId::Outbox(ws) => {
                let notification = match r.event {
                    Event::NotificationSent { notification, .. } | Event::NotificationFailed { notification, .. } => {
                        notification
                    }
                    _ => return,
                };
                let book = self.workspaces.entry(ws.to_string()).or_default();
                book.deliveries.entry(notification.clone()).or_default().apply(r.event, r.recorded_at);
            }
            StreamId::Catalog | StreamId::Invoices(_) => {}
        }
    }

    fn save(&self) -> Option<String> {
        Some(serde_json::to_string(self).expect("the notifications projection always serializes"))
    }

    fn restore(&mut self, state: &str) -> Result<(), RestoreError> {
        *self = serde_json::from_str(state).map_err(|e| RestoreError(e.to_string()))?;
        Ok(())
    }
}
