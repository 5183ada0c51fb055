//! Delivery of notifications, recorded in a workspace's `outbox-<workspace>`
//! stream. Which notifications exist is a projection of the workspace's
//! events (alerts, top-ups, caps reached) and its recipients' settings;
//! this stream only records what delivery did with them.

use crate::error::{DomainError, InvalidValue};
use crate::events::Event;
use crate::ids::WorkspaceId;
use std::collections::BTreeMap;

/// After this many failed attempts a notification is given up on.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 5;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxCommand {
    /// Record attempt `attempt` (1-based) of delivering `notification`.
    RecordDelivery { notification: String, attempt: u32, outcome: DeliveryOutcome },
}

/// Attempts per notification id, and whether one succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxBook {
    pub attempts: BTreeMap<String, (u32, bool)>,
}

impl OutboxBook {
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::NotificationSent { notification, attempt } => {
                self.attempts.insert(notification.clone(), (*attempt, true));
            }
            Event::NotificationFailed { notification, attempt, .. } => {
                self.attempts.insert(notification.clone(), (*attempt, false));
            }
            _ => {}
        }
    }
}

/// Decide an outbox command: attempts are numbered without gaps, nothing is
/// recorded after success, and retries are bounded.
pub fn decide_outbox(
    book: &OutboxBook,
    workspace: &WorkspaceId,
    cmd: &OutboxCommand,
) -> Result<Vec<Event>, DomainError> {
    let OutboxCommand::RecordDelivery { notification, attempt, outcome } = cmd;
    if notification.trim().is_empty() {
        return Err(InvalidValue::new("notification", "must not be empty").into());
    }
    let (done, sent) = book.attempts.get(notification).copied().unwrap_or((0, false));
    if sent {
        return Err(DomainError::NotificationAlreadySent {
            workspace: workspace.clone(),
            notification: notification.clone(),
        });
    }
    if *attempt != done + 1 {
        return Err(InvalidValue::new(
            "attempt",
            format!("{attempt} does not follow attempt {done} of `{notification}`"),
        )
        .into());
    }
    if *attempt > MAX_DELIVERY_ATTEMPTS {
        return Err(DomainError::DeliveryGivenUp { notification: notification.clone(), attempts: done });
    }
    Ok(vec![match outcome {
        DeliveryOutcome::Sent => Event::NotificationSent { notification: notification.clone(), attempt: *attempt },
        DeliveryOutcome::Failed { reason } => {
            if reason.trim().is_empty() {
                return Err(InvalidValue::new("reason", "a failed delivery says why").into());
            }
            Event::NotificationFailed { notification: notification.clone(), attempt: *attempt, reason: reason.clone() }
        }
    }])
}
