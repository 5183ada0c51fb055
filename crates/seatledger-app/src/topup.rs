//! The Licence Manager's automatic top-up: a process manager that reacts to
//! live events (seed 002: "when available falls below the vacant-seat
//! threshold, add licences to restore it, with a cap per top-up and per
//! month").
//!
//! It reads the global log in order and folds every workspace with the
//! domain's own [`Workspace::apply`], so it sees pools exactly as decisions
//! do. Events arrive in **groups**: the events one command appended to one
//! workspace stream (same stream, same command id, contiguous). After each
//! live group it looks at every pool of that workspace with top-up settings,
//! on the group's business day; for each pool whose available seats are below
//! the vacant-seat threshold it sends
//! `AutoTopUp { sku, organization, trigger_event }` through
//! [`CommandHandler::handle`]. The domain decides how many licences restore
//! the threshold within the caps, and appends `QuantityChanged` (reason
//! `automatic_top_up`) and/or `TopUpCapReached`.
//!
//! The rules that keep it safe:
//!
//! - **Live only.** Its position is the store checkpoint
//!   [`CHECKPOINT_NAME`]. Without one it starts at the head as it is then (and
//!   saves that at once): history is folded for state but never triggers.
//! - **Idempotent.** The command id is derived from the trigger event and the
//!   pool ([`top_up_command_id`]), the command's business time is the
//!   trigger's, and the domain refuses a trigger applied before
//!   (`TopUpAlreadyApplied`). A retry, a restart from an older checkpoint or
//!   a second manager running at the same time can never top up twice.
//! - **Never on its own events.** A group that starts with an automatic
//!   `QuantityChanged` or a `TopUpCapReached` (and the alerts appended with
//!   it) is the manager's own and triggers nothing, even when a cap left the
//!   pool below its threshold.
//! - **Quiet while capped.** After a `TopUpCapReached`, the pool is not tried
//!   again for the shortfall the cap left, in the same month under the same
//!   settings: only a deeper shortfall, a new month or new settings trigger
//!   the next attempt. Unrelated events (a reservation, a profile update)
//!   therefore do not produce a `TopUpCapReached` each. The mark is cleared as
//!   soon as the pool is back at its threshold.

use crate::decode::decode_stored;
use crate::handler::{AppError, CommandHandler, CommandMeta, HandleOutcome};
use chrono::{DateTime, NaiveDate, Utc};
use seatledger_domain::*;
use seatledger_store::{Checkpoint, EventStore, StoreError, StoredEvent, Subscription, MAX_READ_COUNT};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The store checkpoint holding the last position the manager handled.
pub const CHECKPOINT_NAME: &str = "topup-manager";
/// The actor recorded on the manager's commands.
pub const ACTOR: &str = "licence-manager";
/// The channel recorded on the manager's commands.
pub const CHANNEL: &str = "system";
/// While following a busy log, save the checkpoint at least this often (events).
pub const SAVE_EVERY: u64 = 1_000;

/// A stable 128-bit FNV-1a hash of `text` as a UUID (version 8, "custom"):
/// the same text gives the same id in every process and every release.
pub fn derived_id(text: &str) -> uuid::Uuid {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = text.bytes().fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
}

/// The idempotency key of the top-up of `pool` caused by `trigger_event`.
pub fn top_up_command_id(trigger_event: uuid::Uuid, pool: &PoolKey) -> uuid::Uuid {
    let org = match &pool.scope {
        PoolScope::Workspace => "",
        PoolScope::Organization(o) => o.as_str(),
    };
    derived_id(&format!("seatledger auto-top-up trigger={trigger_event} sku={} organization={org}", pool.sku))
}

#[derive(Debug, thiserror::Error)]
pub enum TopUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the ledger: {0}")]
    Unreadable(String),
    /// The command could not be handled (a store failure, too many
    /// conflicts). The checkpoint stays before its trigger, so the next run
    /// tries again with the same command id.
    #[error("the top-up of pool {pool} caused by event {trigger_event} could not be handled: {source}")]
    Handle {
        pool: PoolKey,
        trigger_event: uuid::Uuid,
        #[source]
        source: AppError,
    },
}

/// What one top-up command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Licences were added; `cap` is `(needed, allowed)` when a cap stopped
    /// the top-up short of the threshold.
    ToppedUp { subscription: SubscriptionId, from: u32, to: u32, cap: Option<(u64, u64)> },
    /// A cap allowed no licence at all: only `TopUpCapReached` was recorded.
    CapReached { needed: u64, month_used: u64 },
    /// This trigger was applied before (by a retry or another manager).
    AlreadyApplied,
    /// The pool had its threshold's seats free by the time it was decided.
    NothingToDo,
    /// The domain refused the top-up (for example the pool has no live
    /// subscription to add licences to). Not retried: it would be refused again.
    Refused(String),
}

/// One top-up command the manager sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub workspace: WorkspaceId,
    pub pool: PoolKey,
    pub trigger_event: uuid::Uuid,
    pub command_id: uuid::Uuid,
    pub outcome: AttemptOutcome,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopUpReport {
    /// The position handled up to (the checkpoint).
    pub position: u64,
    /// Live events read in this run.
    pub events_read: u64,
    pub attempts: Vec<Attempt>,
}

impl TopUpReport {
    pub fn topped_up(&self) -> usize {
        self.attempts.iter().filter(|a| matches!(a.outcome, AttemptOutcome::ToppedUp { .. })).count()
    }

    pub fn caps_reached(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| {
                matches!(a.outcome, AttemptOutcome::CapReached { .. } | AttemptOutcome::ToppedUp { cap: Some(_), .. })
            })
            .count()
    }
}

/// The shortfall a cap left in a pool: not tried again while it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quiet {
    month: Month,
    settings: TopUpSettings,
    /// Seats still missing after the capped top-up.
    residual: u64,
}

#[derive(Debug, Clone)]
struct Tracked {
    ws: Workspace,
    quiet: BTreeMap<PoolKey, Quiet>,
    /// Per pool, the last global position a top-up decision of this manager
    /// is known to have seen: the groups up to it were already accounted for.
    covered: BTreeMap<PoolKey, u64>,
}

/// The events one command appended to one workspace stream.
#[derive(Debug, Clone)]
struct Group {
    workspace: WorkspaceId,
    command_id: Option<uuid::Uuid>,
    first_event: uuid::Uuid,
    effective_at: DateTime<Utc>,
    correlation_id: uuid::Uuid,
    last_position: u64,
    /// Appended by a top-up: triggers nothing.
    own: bool,
    /// The first event of the group about each SKU: the trigger of that SKU's pools.
    sku_events: BTreeMap<Sku, uuid::Uuid>,
}

impl Group {
    fn day(&self) -> NaiveDate {
        self.effective_at.date_naive()
    }

    fn trigger_for(&self, pool: &PoolKey) -> uuid::Uuid {
        self.sku_events.get(&pool.sku).copied().unwrap_or(self.first_event)
    }
}

fn is_own(event: &Event) -> bool {
    matches!(
        event,
        Event::QuantityChanged { reason: QuantityReason::AutomaticTopUp { .. }, .. } | Event::TopUpCapReached { .. }
    )
}

/// The top-up process manager. See the module documentation.
#[derive(Debug)]
pub struct TopUpManager {
    handler: Arc<CommandHandler>,
    store: Arc<dyn EventStore>,
    workspaces: BTreeMap<WorkspaceId, Tracked>,
    started: bool,
    /// Every event up to here is handled: the checkpoint.
    position: u64,
    /// Every event up to here is folded (a pending group lies between).
    folded: u64,
    saved: Option<u64>,
    pending: Option<Group>,
    poll_interval: Duration,
    progress: tokio::sync::watch::Sender<u64>,
}

impl TopUpManager {
    /// A manager sending its commands through `handler` (and reading the
    /// handler's store).
    pub fn new(handler: Arc<CommandHandler>) -> Self {
        let store = handler.store().clone();
        Self {
            handler,
            store,
            workspaces: BTreeMap::new(),
            started: false,
            position: 0,
            folded: 0,
            saved: None,
            pending: None,
            poll_interval: seatledger_store::subscription::DEFAULT_POLL_INTERVAL,
            progress: tokio::sync::watch::channel(0).0,
        }
    }

    /// How often a caught-up [`TopUpManager::follow`] looks for appends by
    /// other processes (appends through this process wake it at once).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The position handled so far, updated as the manager goes.
    pub fn progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// The position handled so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Load the checkpoint (or take the head and save it), then fold the
    /// history up to it without triggering anything.
    async fn start(&mut self) -> Result<(), TopUpError> {
        if self.started {
            return Ok(());
        }
        let position = match self.store.load_checkpoint(CHECKPOINT_NAME).await? {
            Some(c) => c.position,
            None => {
                let head = self.store.head_position().await?;
                self.store.save_checkpoint(CHECKPOINT_NAME, &Checkpoint { position: head, state: None }).await?;
                self.saved = Some(head);
                head
            }
        };
        let mut after = 0;
        'read: while after < position {
            let page = self.store.read_all(after, MAX_READ_COUNT).await?;
            if page.is_empty() {
                break;
            }
            for stored in page {
                if stored.position > position {
                    break 'read;
                }
                after = stored.position;
                self.process(stored, false, &mut vec![]).await?;
            }
        }
        if let Some(group) = self.pending.take() {
            self.flush(&group, false, &mut vec![]).await?;
        }
        self.position = position;
        self.folded = position;
        self.saved = self.saved.or(Some(position));
        self.started = true;
        self.progress.send_replace(position);
        Ok(())
    }

    /// Handle every event up to `until` (inclusive), then save the
    /// checkpoint and stop.
    pub async fn run_once(&mut self, until: u64) -> Result<TopUpReport, TopUpError> {
        self.start().await?;
        let mut report = TopUpReport::default();
        'read: while self.folded < until {
            let page = self.store.read_all(self.folded, MAX_READ_COUNT).await?;
            if page.is_empty() {
                break;
            }
            for stored in page {
                if stored.position > until {
                    break 'read;
                }
                report.events_read += 1;
                self.process(stored, true, &mut report.attempts).await?;
            }
        }
        if let Some(group) = self.pending.clone() {
            self.flush(&group, true, &mut report.attempts).await?;
            self.pending = None;
        }
        self.save().await?;
        report.position = self.position;
        Ok(report)
    }

    /// [`TopUpManager::run_once`] up to the head as it is now.
    pub async fn run_to_head(&mut self) -> Result<TopUpReport, TopUpError> {
        let head = self.store.head_position().await?;
        self.run_once(head).await
    }

    /// Catch up, then follow live appends until `stop` completes. The
    /// checkpoint is saved whenever the manager is caught up, at least every
    /// [`SAVE_EVERY`] events, and on stop.
    pub async fn follow(&mut self, stop: impl Future<Output = ()>) -> Result<TopUpReport, TopUpError> {
        self.start().await?;
        let mut report = TopUpReport::default();
        let mut subscription =
            Subscription::new(self.store.clone(), self.folded).with_poll_interval(self.poll_interval);
        let mut since_save = 0u64;
        tokio::pin!(stop);
        loop {
            // Stop between events even when the log never goes quiet.
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = std::future::ready(()) => {}
            }
            let next = match subscription.try_next().await? {
                Some(stored) => stored,
                None => {
                    // Caught up: an append is stored whole, so the pending
                    // group is complete.
                    if let Some(group) = self.pending.clone() {
                        self.flush(&group, true, &mut report.attempts).await?;
                        self.pending = None;
                    }
                    self.save().await?;
                    since_save = 0;
                    tokio::select! {
                        () = &mut stop => break,
                        next = subscription.next() => next?,
                    }
                }
            };
            report.events_read += 1;
            since_save += 1;
            self.process(next, true, &mut report.attempts).await?;
            if since_save >= SAVE_EVERY {
                self.save().await?;
                since_save = 0;
            }
        }
        // A group still pending may not be complete: it is read again next time.
        self.save().await?;
        report.position = self.position;
        Ok(report)
    }

    async fn save(&mut self) -> Result<(), TopUpError> {
        if self.saved != Some(self.position) {
            self.store.save_checkpoint(CHECKPOINT_NAME, &Checkpoint { position: self.position, state: None }).await?;
            self.saved = Some(self.position);
        }
        Ok(())
    }

    /// Fold one stored event; when it ends the pending group, handle that
    /// group first.
    async fn process(&mut self, stored: StoredEvent, live: bool, out: &mut Vec<Attempt>) -> Result<(), TopUpError> {
        let position = stored.position;
        let command_id = stored.metadata.command_id;
        let decoded = decode_stored(stored).map_err(TopUpError::Unreadable)?;
        let workspace = match decoded.as_ref().map(|d| &d.stream) {
            Some(StreamId::Workspace(id)) => Some(id.clone()),
            _ => None,
        };
        let continues = match (&self.pending, &workspace) {
            (Some(g), Some(ws)) => &g.workspace == ws && g.command_id.is_some() && g.command_id == command_id,
            _ => false,
        };
        if !continues {
            if let Some(group) = self.pending.clone() {
                self.flush(&group, live, out).await?;
                self.pending = None;
            }
        }
        self.folded = position;
        let (Some(decoded), Some(ws_id)) = (decoded, workspace) else {
            // Not a workspace event: nothing to fold, nothing pending.
            self.set_position(position);
            return Ok(());
        };
        let event = &decoded.event;
        match self.workspaces.get_mut(&ws_id) {
            Some(t) => t.ws.apply(event),
            // `evolve` builds a workspace only from its `WorkspaceCreated`.
            None => {
                match matches!(event, Event::WorkspaceCreated { .. }).then(|| Workspace::evolve(None, event)).flatten()
                {
                    Some(ws) => {
                        self.workspaces
                            .insert(ws_id.clone(), Tracked { ws, quiet: BTreeMap::new(), covered: BTreeMap::new() });
                    }
                    None => {
                        tracing::warn!(workspace = %ws_id, position, "event before its workspace was created; skipped");
                        self.set_position(position);
                        return Ok(());
                    }
                }
            }
        }
        if let (Event::TopUpCapReached { pool, needed, allowed, .. }, Some(tracked)) =
            (event, self.workspaces.get_mut(&ws_id))
        {
            if let Some(settings) = tracked.ws.settings.get(pool).and_then(|s| s.top_up) {
                let month = Month::containing(decoded.stored.metadata.effective_at.date_naive());
                tracked
                    .quiet
                    .insert(pool.clone(), Quiet { month, settings, residual: needed.saturating_sub(*allowed) });
            }
        }
        let group = self.pending.get_or_insert_with(|| Group {
            workspace: ws_id.clone(),
            command_id,
            first_event: decoded.stored.id,
            effective_at: decoded.stored.metadata.effective_at,
            correlation_id: decoded.stored.metadata.correlation_id,
            last_position: position,
            own: is_own(event),
            sku_events: BTreeMap::new(),
        });
        group.last_position = position;
        for entity in event.entities() {
            if let EntityRef::Sku(sku) = entity {
                group.sku_events.entry(sku).or_insert(decoded.stored.id);
            }
        }
        Ok(())
    }

    fn set_position(&mut self, position: u64) {
        if self.pending.is_none() {
            self.position = position;
            self.progress.send_replace(position);
        }
    }

    /// Look at the group's workspace after the group: clear the marks of
    /// pools back at their threshold, and (live, not the manager's own
    /// group) top up the pools below it.
    async fn flush(&mut self, group: &Group, live: bool, out: &mut Vec<Attempt>) -> Result<(), TopUpError> {
        let day = group.day();
        let mut due = vec![];
        if let Some(tracked) = self.workspaces.get_mut(&group.workspace) {
            let ws = &tracked.ws;
            for (pool, settings) in &ws.settings {
                let Some(top_up) = settings.top_up else {
                    tracked.quiet.remove(pool);
                    continue;
                };
                let available = ws.pool_total_on(pool, day).saturating_sub(ws.pool_assigned(pool));
                let threshold = u64::from(top_up.vacant_seat_threshold);
                if available >= threshold {
                    tracked.quiet.remove(pool);
                    continue;
                }
                if !live || group.own {
                    continue;
                }
                let needed = threshold - available;
                let quiet = tracked
                    .quiet
                    .get(pool)
                    .is_some_and(|q| q.month == Month::containing(day) && q.settings == top_up && needed <= q.residual);
                // A decision that already saw this group (appended after it,
                // or made on a head past it) has dealt with its effect.
                let covered = tracked.covered.get(pool).is_some_and(|c| group.last_position <= *c);
                if !quiet && !covered {
                    due.push(pool.clone());
                }
            }
        }
        // Which pool each trigger was sent for first in this group.
        let mut first_pool: BTreeMap<uuid::Uuid, PoolKey> = BTreeMap::new();
        for pool in due {
            let trigger = group.trigger_for(&pool);
            let shared = first_pool.get(&trigger).cloned();
            first_pool.entry(trigger).or_insert_with(|| pool.clone());
            let (attempt, covered) = self.top_up(group, &pool, shared.as_ref()).await?;
            if let (Some(covered), Some(tracked)) = (covered, self.workspaces.get_mut(&group.workspace)) {
                let mark = tracked.covered.entry(pool).or_insert(0);
                *mark = (*mark).max(covered);
            }
            out.push(attempt);
        }
        self.position = group.last_position;
        self.progress.send_replace(self.position);
        Ok(())
    }

    /// Send one top-up; with its outcome, the position its decision is known
    /// to have seen the workspace up to (when known). `shared` is the pool
    /// the same trigger was sent for before in this group, if any.
    async fn top_up(
        &self,
        group: &Group,
        pool: &PoolKey,
        shared: Option<&PoolKey>,
    ) -> Result<(Attempt, Option<u64>), TopUpError> {
        let trigger_event = group.trigger_for(pool);
        let command_id = top_up_command_id(trigger_event, pool);
        let organization = match &pool.scope {
            PoolScope::Workspace => None,
            PoolScope::Organization(o) => Some(o.clone()),
        };
        let command = Command {
            at: group.effective_at,
            body: CommandBody::Workspace {
                workspace: group.workspace.clone(),
                command: WorkspaceCommand::AutoTopUp { sku: pool.sku.clone(), organization, trigger_event },
            },
        };
        let meta = CommandMeta {
            actor: ACTOR.to_owned(),
            channel: CHANNEL.to_owned(),
            command_id,
            correlation_id: group.correlation_id,
            causation_id: Some(trigger_event),
        };
        // Every event stored now is seen by a decision made after this read.
        let head_before = self.store.head_position().await?;
        let (outcome, covered) = match self.handler.handle(&command, &meta).await {
            // Appended right after the stream's events: its decision saw every
            // earlier event of the workspace.
            Ok(HandleOutcome::Appended { events, outcome }) => {
                (appended_outcome(&events), Some(outcome.first_position.saturating_sub(1)))
            }
            Ok(HandleOutcome::AlreadyApplied(original)) => {
                (AttemptOutcome::AlreadyApplied, Some(original.first_position.saturating_sub(1)))
            }
            // The domain keeps one top-up per trigger event, whatever the
            // pool: a second pool drained by the same event cannot be topped
            // up with it. Say so rather than pass it off as a retry.
            Err(AppError::Rejected(e @ DomainError::TopUpAlreadyApplied(_))) => match shared {
                Some(first) => {
                    let why = format!(
                        "{e}: it topped up pool {first}, and the domain allows one top-up per trigger event, \
                         whatever the pool"
                    );
                    tracing::warn!(workspace = %group.workspace, pool = %pool, %trigger_event, "{why}");
                    (AttemptOutcome::Refused(why), None)
                }
                None => (AttemptOutcome::AlreadyApplied, None),
            },
            Ok(HandleOutcome::NoChange) => (AttemptOutcome::NothingToDo, Some(head_before)),
            Err(AppError::Rejected(e)) => {
                tracing::warn!(workspace = %group.workspace, pool = %pool, %trigger_event, error = %e, "top-up refused");
                (AttemptOutcome::Refused(e.to_string()), None)
            }
            Err(source) => return Err(TopUpError::Handle { pool: pool.clone(), trigger_event, source }),
        };
        let attempt =
            Attempt { workspace: group.workspace.clone(), pool: pool.clone(), trigger_event, command_id, outcome };
        Ok((attempt, covered))
    }
}

fn appended_outcome(events: &[Event]) -> AttemptOutcome {
    let cap = events.iter().find_map(|e| match e {
        Event::TopUpCapReached { needed, allowed, month_used, .. } => Some((*needed, *allowed, *month_used)),
        _ => None,
    });
    let added = events.iter().find_map(|e| match e {
        Event::QuantityChanged { subscription, from, to, .. } => Some((subscription.clone(), *from, *to)),
        _ => None,
    });
    match (added, cap) {
        (Some((subscription, from, to)), cap) => {
            AttemptOutcome::ToppedUp { subscription, from, to, cap: cap.map(|(n, a, _)| (n, a)) }
        }
        (None, Some((needed, _, month_used))) => AttemptOutcome::CapReached { needed, month_used },
        (None, None) => AttemptOutcome::NothingToDo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let trigger = uuid::Uuid::from_u128(42);
        let pool = |org: Option<&str>| PoolKey {
            scope: org.map_or(PoolScope::Workspace, |o| PoolScope::Organization(OrgId::new(o).unwrap())),
            sku: Sku::new("SEAT").unwrap(),
        };
        let a = top_up_command_id(trigger, &pool(None));
        assert_eq!(a, top_up_command_id(trigger, &pool(None)));
        assert_ne!(a, top_up_command_id(trigger, &pool(Some("us"))));
        assert_ne!(a, top_up_command_id(uuid::Uuid::from_u128(43), &pool(None)));
        // Pinned: a change of the derivation would let a retry top up twice.
        assert_eq!(derived_id(""), uuid::Uuid::from_u128(0x6c62_272e_07bb_8142_a2b8_2175_6295_c58d));
    }
}
