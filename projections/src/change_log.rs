//! The licence change log: every change of a subscription's quantity, with
//! from, to, when, who, the channel and the order reference (seed 003:
//! "every change in the licence quantity results in a licence change log item").

use crate::{Projection, Recorded, RestoreError};
use chrono::{DateTime, Utc};
use seatledger_domain::{Event, PoolScope, QuantityReason};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub workspace: String,
    pub subscription: String,
    pub sku: String,
    pub organization: Option<String>,
    pub from: u32,
    pub to: u32,
    /// `order`, `manual_addition` or `automatic_top_up`.
    pub reason: String,
    /// The event that caused an automatic top-up.
    pub trigger_event: Option<uuid::Uuid>,
    /// Business time of the change.
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The person who ordered it.
    pub ordered_by: String,
    /// The actor who recorded it.
    pub actor: String,
    /// The subscription channel (portal, provider, system).
    pub channel: String,
    pub order_reference: Option<String>,
    pub order_thru: Option<String>,
}

impl ChangeEntry {
    /// Licences added (positive) or removed (negative).
    pub fn delta(&self) -> i64 {
        i64::from(self.to) - i64::from(self.from)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeLog {
    pub entries: Vec<ChangeEntry>,
}

impl ChangeLog {
    /// The entries of one workspace, optionally of one SKU, in recorded order.
    pub fn filtered<'a>(
        &'a self,
        workspace: Option<&'a str>,
        sku: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ChangeEntry> {
        self.entries
            .iter()
            .filter(move |e| workspace.is_none_or(|w| e.workspace == w) && sku.is_none_or(|s| e.sku == s))
    }
}

impl Projection for ChangeLog {
    fn name(&self) -> &'static str {
        "change-log"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        let Event::QuantityChanged { subscription, pool, from, to, reason, order, channel } = r.event else {
            return;
        };
        let Some(workspace) = r.stream.workspace() else { return };
        self.entries.push(ChangeEntry {
            position: r.position,
            event_id: r.id,
            workspace: workspace.to_string(),
            subscription: subscription.to_string(),
            sku: pool.sku.to_string(),
            organization: match &pool.scope {
                PoolScope::Workspace => None,
                PoolScope::Organization(o) => Some(o.to_string()),
            },
            from: *from,
            to: *to,
            reason: reason.as_str().to_owned(),
            trigger_event: match reason {
                QuantityReason::AutomaticTopUp { trigger_event } => Some(*trigger_event),
                _ => None,
            },
            effective_at: r.effective_at,
            recorded_at: r.recorded_at,
            ordered_by: order.ordered_by.clone(),
            actor: r.actor.to_owned(),
            channel: channel.as_str().to_owned(),
            order_reference: order.order_reference.clone(),
            order_thru: order.order_thru.clone(),
        });
    }

    fn save(&self) -> Option<String> {
        Some(serde_json::to_string(self).expect("the change log always serializes"))
    }

    fn restore(&mut self, state: &str) -> Result<(), RestoreError> {
        *self = serde_json::from_str(state).map_err(|e| RestoreError(e.to_string()))?;
        Ok(())
    }
}
