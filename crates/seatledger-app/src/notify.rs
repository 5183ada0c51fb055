//! Delivering the Licence Manager's notifications.
//!
//! Which notifications exist, and where each one's delivery stands, is the
//! [`Notifications`] projection. [`deliver_pending`] folds it, hands every
//! notification still to deliver (pending, or failed and not given up) to a
//! [`NotificationSink`], and records each attempt in the workspace's
//! `outbox-<workspace>` stream with `RecordDelivery`: `NotificationSent`, or
//! `NotificationFailed` with the sink's reason. The domain numbers attempts
//! without gaps, refuses anything after a success and refuses attempt
//! [`MAX_DELIVERY_ATTEMPTS`] + 1, so a notification is given up after
//! [`MAX_DELIVERY_ATTEMPTS`] failures.
//!
//! Delivery is **at least once**: the sink is called before the attempt is
//! recorded, so a crash (or a second deliverer running at the same moment)
//! between the two can hand the same notification to a sink twice. The
//! record itself is idempotent: its command id is derived from the
//! notification and the attempt number. Sinks that can deduplicate should
//! use the notification's stable id.
//!
//! One call makes at most one attempt per notification; how soon a failed
//! one is tried again is up to how often the caller runs it.

use crate::handler::{AppError, CommandHandler, CommandMeta, HandleOutcome};
use crate::runner::{ProjectionRunner, RunnerError};
use crate::topup::derived_id;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use seatledger_domain::outbox::{DeliveryOutcome, OutboxCommand, MAX_DELIVERY_ATTEMPTS};
use seatledger_domain::{Command, CommandBody, DomainError, WorkspaceId};
use seatledger_projections::notifications::{Notification, Notifications};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The actor recorded on delivery attempts.
pub const ACTOR: &str = "licence-manager";
/// The channel recorded on delivery attempts.
pub const CHANNEL: &str = "system";

/// A transport for notifications (email, chat, a file…).
#[async_trait]
pub trait NotificationSink: Send + Sync + std::fmt::Debug {
    /// Deliver one notification; `Err` says why it could not be.
    async fn deliver(&self, notification: &Notification) -> Result<(), String>;
}

/// One notification as one line of JSON: what the file and stdout sinks write.
pub fn notification_line(n: &Notification) -> String {
    serde_json::json!({
        "id": n.id,
        "workspace": n.workspace,
        "kind": n.kind,
        "recipient": n.recipient,
        "to": n.email,
        "subject": n.subject,
        "body": n.body,
        "sku": n.sku,
        "organization": n.organization,
        "event_id": n.event_id,
        "created_at": n.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
    .to_string()
}

/// Appends one JSON line per delivered notification to a file (created if
/// missing).
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), lock: tokio::sync::Mutex::new(()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl NotificationSink for FileSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), String> {
        let _one_writer = self.lock.lock().await;
        let mut line = notification_line(notification);
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("cannot write to {}: {e}", self.path.display()))
    }
}

/// Writes one JSON line per delivered notification to standard output.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutSink;

#[async_trait]
impl NotificationSink for StdoutSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", notification_line(notification))
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to standard output: {e}"))
    }
}

/// Keeps every delivered notification in memory, in order.
#[derive(Debug, Default)]
pub struct CollectingSink {
    delivered: std::sync::Mutex<Vec<Notification>>,
}

impl CollectingSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// What was delivered so far.
    pub fn delivered(&self) -> Vec<Notification> {
        self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

#[async_trait]
impl NotificationSink for CollectingSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), String> {
        self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(notification.clone());
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("notification `{0}` names a workspace that is not a workspace id")]
    BadWorkspace(String),
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Sent,
    Failed {
        reason: String,
        given_up: bool,
    },
    /// Someone else recorded this attempt first (a concurrent deliverer).
    RecordedElsewhere,
}

/// One attempt of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub notification: String,
    pub attempt: u32,
    pub result: AttemptResult,
}

/// What one [`deliver_pending`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub attempts: Vec<DeliveryAttempt>,
}

impl DeliveryReport {
    pub fn sent(&self) -> usize {
        self.attempts.iter().filter(|a| a.result == AttemptResult::Sent).count()
    }

    pub fn failed(&self) -> usize {
        self.attempts.iter().filter(|a| matches!(a.result, AttemptResult::Failed { .. })).count()
    }

    pub fn given_up(&self) -> usize {
        self.attempts.iter().filter(|a| matches!(a.result, AttemptResult::Failed { given_up: true, .. })).count()
    }
}

/// The idempotency key of recording attempt `attempt` of a notification.
pub fn delivery_command_id(workspace: &str, notification: &str, attempt: u32) -> uuid::Uuid {
    derived_id(&format!("seatledger delivery workspace={workspace} notification={notification} attempt={attempt}"))
}

/// The notifications as the store has them now (from the projection's
/// checkpoint, caught up).
pub async fn notifications(handler: &CommandHandler) -> Result<Notifications, RunnerError> {
    let mut book = Notifications::default();
    ProjectionRunner::new(handler.store().clone()).run(&mut [&mut book], &mut |_, _| {}).await?;
    Ok(book)
}

/// Deliver up to `limit` notifications that are pending or failed (and not
/// given up), recording each attempt now.
pub async fn deliver_pending(
    handler: &CommandHandler,
    sink: &dyn NotificationSink,
    limit: usize,
) -> Result<DeliveryReport, DeliverError> {
    deliver_pending_at(handler, sink, limit, Utc::now()).await
}

/// [`deliver_pending`] with the business time of the records given.
pub async fn deliver_pending_at(
    handler: &CommandHandler,
    sink: &dyn NotificationSink,
    limit: usize,
    at: DateTime<Utc>,
) -> Result<DeliveryReport, DeliverError> {
    let book = notifications(handler).await?;
    let mut report = DeliveryReport::default();
    for row in book.deliverable().into_iter().take(limit) {
        let Some(attempt) = row.delivery.next_attempt() else { continue };
        let n = &row.notification;
        let workspace = WorkspaceId::new(&n.workspace).map_err(|_| DeliverError::BadWorkspace(n.id.clone()))?;
        let outcome = match sink.deliver(n).await {
            Ok(()) => DeliveryOutcome::Sent,
            Err(reason) if reason.trim().is_empty() => {
                DeliveryOutcome::Failed { reason: "the sink gave no reason".to_owned() }
            }
            Err(reason) => DeliveryOutcome::Failed { reason },
        };
        let command = Command {
            at,
            body: CommandBody::Outbox {
                workspace,
                command: OutboxCommand::RecordDelivery {
                    notification: n.id.clone(),
                    attempt,
                    outcome: outcome.clone(),
                },
            },
        };
        let command_id = delivery_command_id(&n.workspace, &n.id, attempt);
        let meta = CommandMeta {
            actor: ACTOR.to_owned(),
            channel: CHANNEL.to_owned(),
            command_id,
            correlation_id: command_id,
            causation_id: Some(n.event_id),
        };
        let result = match handler.handle(&command, &meta).await {
            Ok(HandleOutcome::Appended { .. }) => match outcome {
                DeliveryOutcome::Sent => AttemptResult::Sent,
                DeliveryOutcome::Failed { reason } => {
                    AttemptResult::Failed { reason, given_up: attempt >= MAX_DELIVERY_ATTEMPTS }
                }
            },
            Ok(HandleOutcome::AlreadyApplied(_) | HandleOutcome::NoChange) => AttemptResult::RecordedElsewhere,
            Err(AppError::Rejected(
                DomainError::NotificationAlreadySent { .. }
                | DomainError::DeliveryGivenUp { .. }
                | DomainError::Invalid(_),
            )) => AttemptResult::RecordedElsewhere,
            Err(e) => return Err(e.into()),
        };
        report.attempts.push(DeliveryAttempt { notification: n.id.clone(), attempt, result });
    }
    Ok(report)
}
