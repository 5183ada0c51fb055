//! The top-up process manager, through the real command handler and store.
//!
//! The ledger in most tests: workspace `w` (single mode) holds one
//! subscription `s1` of 5 `SEAT` licences (a module sold per licence) from
//! 2024-03-01; users `u1`…`u20` exist in organization `hq`; the pool's
//! top-up settings differ per test.

use seatledger_app::topup::{self, AttemptOutcome, TopUpManager, CHECKPOINT_NAME};
use seatledger_app::{decode_stored, AppError, CommandHandler, CommandMeta, HandleOutcome, SequentialIds, V7Ids};
use seatledger_codec::parse_command;
use seatledger_domain::*;
use seatledger_projections::notifications::Notifications;
use seatledger_projections::Projection;
use seatledger_store::{Checkpoint, EventStore, MemoryStore, StoredEvent, SystemClock};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

struct Ledger {
    store: Arc<dyn EventStore>,
    handler: Arc<CommandHandler>,
    n: u128,
}

impl Ledger {
    fn new() -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let handler = Arc::new(CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000))));
        Self { store, handler, n: 0 }
    }

    fn manager(&self) -> TopUpManager {
        TopUpManager::new(self.handler.clone()).with_poll_interval(Duration::from_millis(5))
    }

    async fn try_run(&mut self, line: &str) -> Result<HandleOutcome, AppError> {
        let env = parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        self.n += 1;
        let cmd = Command { at: env.at.expect("test lines carry `at`"), body: env.body };
        self.handler.handle(&cmd, &CommandMeta::new("ops@test", "cli", uuid::Uuid::from_u128(self.n))).await
    }

    async fn run(&mut self, line: &str) {
        if let Err(e) = self.try_run(line).await {
            panic!("{line}: {e}");
        }
    }

    /// The ledger of the module docs, with these settings for the pool.
    async fn setup(&mut self, settings: &str) {
        for line in [
            r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#.to_owned(),
            r#"{"command":"create_workspace","workspace":"w","at":"2024-03-01T08:00:00Z","name":"W","billing_mode":"single","created_on":"2024-03-01"}"#.to_owned(),
            r#"{"command":"open_billing_account","workspace":"w","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}"#.to_owned(),
            r#"{"command":"create_organization","workspace":"w","at":"2024-03-01T08:00:00Z","org":"hq","name":"HQ"}"#.to_owned(),
            r#"{"command":"create_subscription","workspace":"w","at":"2024-03-01T08:00:00Z","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}"#.to_owned(),
            format!(r#"{{"command":"configure_licences","workspace":"w","at":"2024-03-01T08:30:00Z","sku":"SEAT","settings":{settings}}}"#),
        ] {
            self.run(&line).await;
        }
        for i in 1..=20 {
            self.run(&format!(
                r#"{{"command":"add_user","workspace":"w","at":"2024-03-01T09:00:00Z","user":"u{i}","org":"hq","profile":{{"first_name":"U","last_name":"{i}","email":"u{i}@w.example","username":"u{i}"}}}}"#
            ))
            .await;
        }
    }

    async fn assign(&mut self, user: u32, at: &str) {
        self.run(&format!(
            r#"{{"command":"assign_module","workspace":"w","at":"{at}","sku":"SEAT","target":{{"user":"u{user}"}}}}"#
        ))
        .await;
    }

    /// Put `users` in a new group, then give the group the module: their
    /// seats are taken in one decision.
    async fn assign_group(&mut self, group: &str, users: &[u32], at: &str) {
        self.run(&format!(
            r#"{{"command":"create_group","workspace":"w","at":"{at}","group":"{group}","name":"{group}"}}"#
        ))
        .await;
        for u in users {
            self.run(&format!(
                r#"{{"command":"add_group_member","workspace":"w","at":"{at}","group":"{group}","user":"u{u}"}}"#
            ))
            .await;
        }
        self.run(&format!(
            r#"{{"command":"assign_module","workspace":"w","at":"{at}","sku":"SEAT","target":{{"group":"{group}"}}}}"#
        ))
        .await;
    }

    async fn reservation(&mut self, id: &str, at: &str) {
        self.run(&format!(
            r#"{{"command":"record_reservation","workspace":"w","at":"{at}","reservation":"{id}","user":"u1","starts_at":"{at}","ends_at":"{at}"}}"#
        ))
        .await;
    }

    async fn events(&self) -> Vec<(StoredEvent, Event)> {
        decoded(self.store.as_ref()).await
    }

    async fn head(&self) -> u64 {
        self.store.head_position().await.unwrap()
    }

    /// Total, assigned and available seats of pool `SEAT` on `day`.
    async fn pool(&self, day: &str) -> (u64, u64, u64) {
        let (_, ws) = self.handler.load(Some(&WorkspaceId::new("w").unwrap())).await.unwrap();
        let ws = ws.unwrap();
        let pool = PoolKey { scope: PoolScope::Workspace, sku: Sku::new("SEAT").unwrap() };
        let total = ws.pool_total_on(&pool, day.parse().unwrap());
        let assigned = ws.pool_assigned(&pool);
        (total, assigned, total.saturating_sub(assigned))
    }
}

async fn decoded(store: &dyn EventStore) -> Vec<(StoredEvent, Event)> {
    let mut all = vec![];
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        for stored in page {
            if let Some(d) = decode_stored(stored).unwrap() {
                all.push((d.stored, d.event));
            }
        }
    }
    all
}

/// (trigger, from, to) of every automatic top-up, in order.
fn top_ups(events: &[(StoredEvent, Event)]) -> Vec<(uuid::Uuid, u32, u32)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::QuantityChanged { from, to, reason: QuantityReason::AutomaticTopUp { trigger_event }, .. } => {
                Some((*trigger_event, *from, *to))
            }
            _ => None,
        })
        .collect()
}

/// (trigger, needed, allowed, month used) of every TopUpCapReached, in order.
fn caps(events: &[(StoredEvent, Event)]) -> Vec<(uuid::Uuid, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TopUpCapReached { trigger_event, needed, allowed, month_used, .. } => {
                Some((*trigger_event, *needed, *allowed, *month_used))
            }
            _ => None,
        })
        .collect()
}

/// The id of the last stored event of `type`.
fn last_of(events: &[(StoredEvent, Event)], event_type: &str) -> uuid::Uuid {
    events.iter().rev().find(|(s, _)| s.event_type == event_type).map(|(s, _)| s.id).unwrap()
}

const TOP_UP_3_6: &str = r#"{"top_up":{"vacant_seat_threshold":2,"max_per_top_up":3,"max_per_month":6}}"#;

#[tokio::test]
async fn a_top_up_restores_the_vacant_seat_threshold_and_records_its_trigger() {
    let mut l = Ledger::new();
    l.setup(TOP_UP_3_6).await;
    let mut manager = l.manager();
    assert!(manager.run_to_head().await.unwrap().attempts.is_empty(), "a first start begins at the head");

    // 5 licences: three seats leave 2 free, exactly the threshold: nothing to do.
    for u in 1..=3 {
        l.assign(u, "2024-03-04T10:00:00Z").await;
    }
    assert!(manager.run_to_head().await.unwrap().attempts.is_empty());
    assert_eq!(l.pool("2024-03-04").await, (5, 3, 2));

    // The fourth leaves 1 free: one licence restores the threshold of 2.
    l.assign(4, "2024-03-05T10:00:00Z").await;
    let report = manager.run_to_head().await.unwrap();
    assert_eq!(report.topped_up(), 1);
    assert_eq!(l.pool("2024-03-05").await, (6, 4, 2));
    let events = l.events().await;
    let trigger = last_of(&events, "ModuleAssigned");
    assert_eq!(top_ups(&events), [(trigger, 5, 6)]);
    let (stored, event) = events
        .iter()
        .find(|(_, e)| matches!(e, Event::QuantityChanged { reason: QuantityReason::AutomaticTopUp { .. }, .. }))
        .unwrap();
    let Event::QuantityChanged { order, channel, .. } = event else { unreachable!() };
    assert_eq!(stored.metadata.causation_id, Some(trigger), "the top-up is caused by its trigger");
    assert_eq!(stored.metadata.command_id, Some(topup::top_up_command_id(trigger, &stored_pool())));
    assert_eq!(stored.metadata.actor, topup::ACTOR);
    let trigger_stored = &events.iter().find(|(s, _)| s.id == trigger).unwrap().0;
    assert_eq!(stored.metadata.effective_at, trigger_stored.metadata.effective_at, "decided on the trigger's day");
    assert_eq!(stored.metadata.correlation_id, trigger_stored.metadata.correlation_id);
    assert_eq!(order.order_reference.as_deref(), Some(format!("top-up/{trigger}").as_str()));
    assert_eq!(*channel, SubscriptionChannel::System);

    // Two seats in one decision leave 0 free: two licences restore it.
    l.assign_group("pair", &[5, 6], "2024-03-06T10:00:00Z").await;
    manager.run_to_head().await.unwrap();
    let events = l.events().await;
    assert_eq!(top_ups(&events)[1], (last_of(&events, "ModuleAssigned"), 6, 8));
    assert_eq!(l.pool("2024-03-06").await, (8, 6, 2));
    assert!(caps(&events).is_empty());
}

/// Drains appended faster than the manager runs: the first crossing
/// triggers a top-up decided on the head, which already counts the later
/// drains, so one top-up restores the threshold and no command is wasted on
/// the drains it saw.
#[tokio::test]
async fn a_burst_of_drains_is_restored_by_one_top_up_from_the_first_crossing() {
    let mut l = Ledger::new();
    l.setup(TOP_UP_3_6).await;
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();
    for u in 1..=5 {
        l.assign(u, "2024-03-04T10:00:00Z").await;
    }
    let report = manager.run_to_head().await.unwrap();
    assert_eq!(report.attempts.len(), 1, "{:?}", report.attempts);
    let events = l.events().await;
    let fourth = events.iter().filter(|(s, _)| s.event_type == "ModuleAssigned").nth(3).unwrap().0.id;
    assert_eq!(top_ups(&events), [(fourth, 5, 7)], "the fourth seat crossed the threshold; 0 were free at the head");
    assert_eq!(l.pool("2024-03-04").await, (7, 5, 2));
}

/// One event drains two pools (a member joins a group holding two modules).
/// The domain keeps one top-up per trigger event whatever the pool, so the
/// second pool cannot be topped up by that event: the manager reports that
/// as a refusal naming the reason, never as an earlier top-up of that pool.
#[tokio::test]
async fn two_pools_drained_by_one_event_are_never_passed_off_as_already_topped_up() {
    let mut l = Ledger::new();
    l.setup(TOP_UP_3_6).await;
    for line in [
        r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT2","name":"Seat 2","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#,
        r#"{"command":"create_subscription","workspace":"w","at":"2024-03-01T08:00:00Z","subscription":"s2","account":"a","sku":"SEAT2","name":"Seats 2","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}"#,
        r#"{"command":"configure_licences","workspace":"w","at":"2024-03-01T08:30:00Z","sku":"SEAT2","settings":{"top_up":{"vacant_seat_threshold":2,"max_per_top_up":3,"max_per_month":6}}}"#,
        r#"{"command":"create_group","workspace":"w","at":"2024-03-02T08:00:00Z","group":"g","name":"G"}"#,
        r#"{"command":"assign_module","workspace":"w","at":"2024-03-02T08:00:00Z","sku":"SEAT","target":{"group":"g"}}"#,
        r#"{"command":"assign_module","workspace":"w","at":"2024-03-02T08:00:00Z","sku":"SEAT2","target":{"group":"g"}}"#,
    ] {
        l.run(line).await;
    }
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();
    for u in 1..=4 {
        l.run(&format!(
            r#"{{"command":"add_group_member","workspace":"w","at":"2024-03-03T08:00:00Z","group":"g","user":"u{u}"}}"#
        ))
        .await;
    }
    let report = manager.run_to_head().await.unwrap();
    assert_eq!(report.attempts.len(), 2, "{:?}", report.attempts);
    assert_eq!(report.attempts[0].trigger_event, report.attempts[1].trigger_event);
    assert!(matches!(report.attempts[0].outcome, AttemptOutcome::ToppedUp { .. }));
    match &report.attempts[1].outcome {
        // What a domain keyed by (trigger, pool) would do.
        AttemptOutcome::ToppedUp { .. } => {}
        AttemptOutcome::Refused(why) => {
            assert!(why.contains("one top-up per trigger event, whatever the pool"), "{why}")
        }
        other => panic!("the second pool's top-up is reported as {other:?}"),
    }
}

fn stored_pool() -> PoolKey {
    PoolKey { scope: PoolScope::Workspace, sku: Sku::new("SEAT").unwrap() }
}

/// Threshold 2, at most 3 per top-up and 4 per month.
///
/// | step | seats | licences before | free | needed | added | month used after |
/// |---|---|---|---|---|---|---|
/// | u1–u4 | 4 | 5 | 1 | 1 | 1 | 1 |
/// | pair (2 seats) | 6 | 6 | 0 | 2 | 2 | 3 |
/// | duo (2 seats) | 8 | 8 | 0 | 2 | 1 of 2 (month cap) | 4 |
/// | u9 | 9 | 9 | 0 | 2 | 0 of 2 | 4 |
/// | reservation (March) | 9 | 9 | 0 | quiet: still 2 short | – | 4 |
/// | reservation (1 April) | 9 | 9 | 0 | 2 | 2 | 2 (April) |
#[tokio::test]
async fn the_monthly_cap_stops_top_ups_and_records_top_up_cap_reached_instead() {
    let mut l = Ledger::new();
    l.setup(r#"{"top_up":{"vacant_seat_threshold":2,"max_per_top_up":3,"max_per_month":4}}"#).await;
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();

    for u in 1..=4 {
        l.assign(u, "2024-03-04T10:00:00Z").await;
        manager.run_to_head().await.unwrap();
    }
    l.assign_group("pair", &[5, 6], "2024-03-05T10:00:00Z").await;
    manager.run_to_head().await.unwrap();
    assert_eq!(l.pool("2024-03-05").await, (8, 6, 2));

    // The month allows one more licence: a partial top-up and TopUpCapReached.
    l.assign_group("duo", &[7, 8], "2024-03-06T10:00:00Z").await;
    let report = manager.run_to_head().await.unwrap();
    assert!(matches!(
        report.attempts[..],
        [topup::Attempt { outcome: AttemptOutcome::ToppedUp { cap: Some((2, 1)), .. }, .. }]
    ));
    let events = l.events().await;
    let duo = last_of(&events, "ModuleAssigned");
    assert_eq!(top_ups(&events).last(), Some(&(duo, 8, 9)));
    assert_eq!(caps(&events), [(duo, 2, 1, 3)]);
    assert_eq!(l.pool("2024-03-06").await, (9, 8, 1));

    // The month's cap is used up: nothing but TopUpCapReached.
    l.assign(9, "2024-03-07T10:00:00Z").await;
    let report = manager.run_to_head().await.unwrap();
    assert!(matches!(
        report.attempts[..],
        [topup::Attempt { outcome: AttemptOutcome::CapReached { needed: 2, month_used: 4 }, .. }]
    ));
    let events = l.events().await;
    let u9 = last_of(&events, "ModuleAssigned");
    assert_eq!(top_ups(&events).len(), 3, "no licence was added");
    assert_eq!(caps(&events).last(), Some(&(u9, 2, 0, 4)));

    // An unrelated event in March: the shortfall is known, nothing is tried.
    let head = l.head().await;
    l.reservation("r1", "2024-03-20T10:00:00Z").await;
    assert!(manager.run_to_head().await.unwrap().attempts.is_empty());
    assert_eq!(l.head().await, head + 1, "only the reservation was recorded");

    // The first event of April finds a new month's cap: the threshold is restored.
    l.reservation("r2", "2024-04-01T07:00:00Z").await;
    manager.run_to_head().await.unwrap();
    let events = l.events().await;
    assert_eq!(top_ups(&events).last(), Some(&(last_of(&events, "ReservationMade"), 9, 11)));
    assert_eq!(l.pool("2024-04-01").await, (11, 9, 2));
}

/// Threshold 3, at most 1 per top-up: a drain to 0 free leaves the pool
/// below its threshold after the top-up. The manager's own events never
/// set off another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_events_never_trigger_a_top_up() {
    let mut l = Ledger::new();
    l.setup(r#"{"alert_threshold":1,"top_up":{"vacant_seat_threshold":3,"max_per_top_up":1,"max_per_month":100}}"#)
        .await;
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();
    l.assign_group("all", &[1, 2, 3, 4, 5], "2024-03-04T10:00:00Z").await;
    manager.run_to_head().await.unwrap();
    let events = l.events().await;
    let trigger = last_of(&events, "ModuleAssigned");
    assert_eq!(top_ups(&events), [(trigger, 5, 6)]);
    assert_eq!(caps(&events), [(trigger, 3, 1, 0)]);
    assert_eq!(l.pool("2024-03-04").await, (6, 5, 1), "still below the threshold of 3");

    // Running again, and following for a while, appends nothing.
    let head = l.head().await;
    for _ in 0..3 {
        assert!(manager.run_to_head().await.unwrap().attempts.is_empty());
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follow = tokio::spawn(async move {
        let report = manager.follow(async { stopped.await.unwrap_or(()) }).await;
        (manager, report)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.send(()).unwrap();
    let (mut manager, report) = follow.await.unwrap();
    assert!(report.unwrap().attempts.is_empty());
    assert_eq!(l.head().await, head, "no loop: nothing was appended");

    // Something unrelated: the shortfall the cap left is known, nothing is tried.
    l.reservation("r1", "2024-03-05T10:00:00Z").await;
    assert!(manager.run_to_head().await.unwrap().attempts.is_empty());

    // A new drain is a new trigger: one more licence, and the cap again.
    l.assign(6, "2024-03-06T10:00:00Z").await;
    manager.run_to_head().await.unwrap();
    let events = l.events().await;
    let u6 = last_of(&events, "ModuleAssigned");
    assert_eq!(top_ups(&events).last(), Some(&(u6, 6, 7)));
    assert_eq!(caps(&events).last(), Some(&(u6, 3, 1, 1)));
}

#[tokio::test]
async fn replaying_or_rebuilding_never_tops_up_again() {
    let mut l = Ledger::new();
    l.setup(TOP_UP_3_6).await;
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();
    let before_trigger = l.head().await;
    for u in 1..=4 {
        l.assign(u, "2024-03-04T10:00:00Z").await;
    }
    manager.run_to_head().await.unwrap();
    let events = l.events().await;
    assert_eq!(top_ups(&events).len(), 1);
    let head = l.head().await;
    assert_eq!(l.store.load_checkpoint(CHECKPOINT_NAME).await.unwrap().map(|c| c.position), Some(head - 1));

    // Rebuild: a fresh manager with its checkpoint deleted starts at the head.
    l.store.delete_checkpoint(CHECKPOINT_NAME).await.unwrap();
    let mut fresh = l.manager();
    let report = fresh.run_to_head().await.unwrap();
    assert!(report.attempts.is_empty());
    assert_eq!(report.position, head);
    assert_eq!(l.head().await, head);

    // A restart from an older checkpoint (a crash before it was saved)
    // handles the trigger again: the same command id, nothing appended.
    l.store.save_checkpoint(CHECKPOINT_NAME, &Checkpoint { position: before_trigger, state: None }).await.unwrap();
    let mut restarted = l.manager();
    let report = restarted.run_to_head().await.unwrap();
    assert!(!report.attempts.is_empty());
    assert!(report.attempts.iter().all(|a| a.outcome == AttemptOutcome::AlreadyApplied), "{:?}", report.attempts);
    assert_eq!(l.head().await, head);

    // Replaying the whole history into a new store through the manager's
    // own start (no checkpoint) never tops up either.
    let copy: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let stored: Vec<StoredEvent> = events.into_iter().map(|(s, _)| s).collect();
    copy.import(stored).await.unwrap();
    let copy_handler = Arc::new(CommandHandler::new(copy.clone(), Arc::new(V7Ids)));
    let mut replay = TopUpManager::new(copy_handler);
    assert!(replay.run_to_head().await.unwrap().attempts.is_empty());
    assert_eq!(copy.head_position().await.unwrap(), head);
}

/// Two managers, each with its own handler, follow one store while pools
/// in four workspaces are drained: every trigger is topped up exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_at_once_never_top_up_twice_for_the_same_trigger() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let producer = CommandHandler::new(store.clone(), Arc::new(V7Ids));
    let mut n = 0u128;
    let mut run = |line: String| {
        n += 1;
        let env = parse_command(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let cmd = Command { at: env.at.unwrap(), body: env.body };
        (cmd, CommandMeta::new("ops@test", "cli", uuid::Uuid::from_u128(n)))
    };
    let (cmd, meta) = run(r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#.to_owned());
    producer.handle(&cmd, &meta).await.unwrap();
    const WORKSPACES: u32 = 4;
    const USERS: u32 = 25;
    for w in 0..WORKSPACES {
        let mut lines = vec![
            format!(
                r#"{{"command":"create_workspace","workspace":"w{w}","at":"2024-03-01T08:00:00Z","name":"W","billing_mode":"single","created_on":"2024-03-01"}}"#
            ),
            format!(
                r#"{{"command":"open_billing_account","workspace":"w{w}","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}}"#
            ),
            format!(
                r#"{{"command":"create_organization","workspace":"w{w}","at":"2024-03-01T08:00:00Z","org":"hq","name":"HQ"}}"#
            ),
            format!(
                r#"{{"command":"create_subscription","workspace":"w{w}","at":"2024-03-01T08:00:00Z","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{{"ordered_by":"ops"}},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}}"#
            ),
            format!(
                r#"{{"command":"configure_licences","workspace":"w{w}","at":"2024-03-01T08:30:00Z","sku":"SEAT","settings":{{"top_up":{{"vacant_seat_threshold":2,"max_per_top_up":2,"max_per_month":1000}}}}}}"#
            ),
        ];
        for u in 0..USERS {
            lines.push(format!(r#"{{"command":"add_user","workspace":"w{w}","at":"2024-03-01T09:00:00Z","user":"u{u}","org":"hq","profile":{{"first_name":"U","last_name":"{u}","email":"u{u}@w.example","username":"u{u}"}}}}"#));
        }
        for line in lines {
            let (cmd, meta) = run(line);
            producer.handle(&cmd, &meta).await.unwrap();
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![];
    let mut progress = vec![];
    for _ in 0..2 {
        let handler = Arc::new(CommandHandler::new(store.clone(), Arc::new(V7Ids)));
        let mut manager = TopUpManager::new(handler).with_poll_interval(Duration::from_millis(2));
        manager.run_to_head().await.unwrap();
        progress.push(manager.progress());
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let report = manager
                .follow(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            (manager.position(), report)
        }));
    }

    // Drain: one seat at a time, round robin over the workspaces.
    let mut refused = 0;
    for u in 0..USERS {
        for w in 0..WORKSPACES {
            let (cmd, meta) = run(format!(
                r#"{{"command":"assign_module","workspace":"w{w}","at":"2024-03-05T10:00:00Z","sku":"SEAT","target":{{"user":"u{u}"}}}}"#
            ));
            // The producer may outrun the managers and find the pool empty.
            match producer.handle(&cmd, &meta).await {
                Ok(_) => {}
                Err(AppError::Rejected(DomainError::PoolExhausted { .. })) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let both catch up with everything, their own top-ups included.
    for _ in 0..2000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let head = store.head_position().await.unwrap();
        if progress.iter().all(|p| *p.borrow() == head) {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if store.head_position().await.unwrap() == head && progress.iter().all(|p| *p.borrow() == head) {
                break;
            }
        }
    }
    stop_tx.send(true).unwrap();
    let head = store.head_position().await.unwrap();
    let mut total_topped_up = 0;
    let mut lost_races = 0;
    for task in tasks {
        let (position, report) = task.await.unwrap();
        let report = report.unwrap();
        total_topped_up += report.topped_up();
        lost_races += report.attempts.iter().filter(|a| a.outcome == AttemptOutcome::AlreadyApplied).count();
        assert_eq!(position, head, "each manager handled everything");
    }

    let events = decoded(store.as_ref()).await;
    let mut per_trigger: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for (trigger, _, _) in top_ups(&events) {
        *per_trigger.entry(trigger).or_default() += 1;
    }
    assert!(per_trigger.len() >= (WORKSPACES as usize) * 10, "top-ups happened: {}", per_trigger.len());
    assert!(per_trigger.values().all(|n| *n == 1), "a trigger was topped up twice: {per_trigger:?}");
    assert_eq!(total_topped_up, per_trigger.len(), "between them the managers appended each top-up once");
    assert!(lost_races > 0, "the managers raced: one of them found triggers applied by the other");
    assert!(caps(&events).is_empty());
    // Every pool ends at its threshold.
    let handler = CommandHandler::new(store.clone(), Arc::new(V7Ids));
    for w in 0..WORKSPACES {
        let (_, ws) = handler.load(Some(&WorkspaceId::new(format!("w{w}")).unwrap())).await.unwrap();
        let ws = ws.unwrap();
        let pool = stored_pool();
        let day = "2024-03-05".parse().unwrap();
        assert_eq!(ws.pool_total_on(&pool, day) - ws.pool_assigned(&pool), 2, "w{w}");
    }
    eprintln!(
        "{} top-ups, {lost_races} attempts found their trigger applied by the other manager, {refused} assignments \
         refused while the managers caught up",
        per_trigger.len()
    );
}

// ---------------------------------------------------------------------------
// Hand-worked scenarios: fixtures/licence-manager/<NN-name>/
// ---------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/licence-manager")
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` is not text in {v}")).to_owned()
}

fn org_of(pool: &PoolKey) -> Value {
    match &pool.scope {
        PoolScope::Workspace => Value::Null,
        PoolScope::Organization(o) => Value::String(o.to_string()),
    }
}

fn day_of(stored: &StoredEvent) -> String {
    stored.metadata.effective_at.date_naive().to_string()
}

/// Compare two lists of JSON objects, naming the first difference.
fn same_list(failures: &mut Vec<String>, what: &str, want: &Value, got: &[Value]) {
    let want = want.as_array().unwrap_or_else(|| panic!("`{what}` is not a list"));
    if want.len() != got.len() {
        failures.push(format!("{what}: expected {} entries, got {}: {got:#?}", want.len(), got.len()));
        return;
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w != g {
            failures.push(format!("{what}[{i}]: expected {w}, got {g}"));
        }
    }
}

/// Run one scenario folder: every command through the real handler, the
/// top-up manager after each one (as it would run live), then compare the
/// pools, alerts, top-ups, caps reached and notifications with
/// `expected.json`. Returns the mismatches.
async fn run_scenario(dir: &Path) -> Vec<String> {
    let commands = std::fs::read_to_string(dir.join("commands.jsonl")).unwrap();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(dir.join("README.md").exists(), "{} has no README with the arithmetic", dir.display());
    let mut l = Ledger::new();
    let mut manager = l.manager();
    manager.run_to_head().await.unwrap();
    let mut failures = vec![];
    let refused: BTreeMap<u64, String> = expected["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), text(r, "error_contains")))
        .collect();
    for (i, line) in commands.lines().enumerate() {
        let number = i as u64 + 1;
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let env = parse_command(line).unwrap_or_else(|e| panic!("line {number}: {e}"));
        l.n += 1;
        let meta = CommandMeta::new(
            env.actor.unwrap_or_else(|| "fixture@test".into()),
            env.channel.unwrap_or_else(|| "cli".into()),
            uuid::Uuid::from_u128(0xf1c5_0000 + l.n),
        );
        let command = Command { at: env.at.expect("fixture lines carry `at`"), body: env.body };
        match (l.handler.handle(&command, &meta).await, refused.get(&number)) {
            (Ok(_), None) => {}
            (Ok(_), Some(_)) => failures.push(format!("line {number} was accepted but should be refused")),
            (Err(e), None) => failures.push(format!("line {number} was refused: {e}")),
            (Err(e), Some(want)) if !e.to_string().contains(want.as_str()) => failures
                .push(format!("line {number} refused with {:?}, expected it to mention {want:?}", e.to_string())),
            (Err(_), Some(_)) => {}
        }
        manager.run_to_head().await.unwrap();
    }

    let events = l.events().await;
    let by_id: BTreeMap<uuid::Uuid, &StoredEvent> = events.iter().map(|(s, _)| (s.id, s)).collect();
    let trigger = |id: &uuid::Uuid| by_id.get(id).map(|s| (s.event_type.clone(), day_of(s)));

    // Pools, each on its day.
    for want in expected["pools"].as_array().unwrap() {
        let ws_id = WorkspaceId::new(text(want, "workspace")).unwrap();
        let (_, ws) = l.handler.load(Some(&ws_id)).await.unwrap();
        let ws = ws.unwrap();
        let scope = match want["organization"].as_str() {
            Some(o) => PoolScope::Organization(OrgId::new(o).unwrap()),
            None => PoolScope::Workspace,
        };
        let pool = PoolKey { scope, sku: Sku::new(text(want, "sku")).unwrap() };
        let on = text(want, "on").parse().unwrap();
        let total = ws.pool_total_on(&pool, on);
        let assigned = ws.pool_assigned(&pool);
        let mut got = want.clone();
        got["total"] = total.into();
        got["assigned"] = assigned.into();
        got["available"] = total.saturating_sub(assigned).into();
        got["alert_raised"] = ws.alerts_raised.contains(&pool).into();
        if &got != want {
            failures.push(format!("pool: expected {want}, got {got}"));
        }
    }

    let mut alerts = vec![];
    let mut ups = vec![];
    let mut capped = vec![];
    for (stored, event) in &events {
        match event {
            Event::LowLicenceAlertRaised { pool, available, threshold }
            | Event::LicenceAlertCleared { pool, available, threshold } => alerts.push(serde_json::json!({
                "event": stored.event_type, "sku": pool.sku.as_str(), "organization": org_of(pool),
                "available": available, "threshold": threshold, "on": day_of(stored),
            })),
            Event::QuantityChanged {
                subscription,
                pool,
                from,
                to,
                reason: QuantityReason::AutomaticTopUp { trigger_event },
                ..
            } => {
                let (trigger_type, trigger_day) = trigger(trigger_event).unwrap_or_default();
                if trigger_day != day_of(stored) {
                    failures.push(format!("top-up {} is not on its trigger's day {trigger_day}", stored.id));
                }
                if stored.metadata.causation_id != Some(*trigger_event) {
                    failures.push(format!("top-up {} is not caused by its trigger", stored.id));
                }
                ups.push(serde_json::json!({
                    "sku": pool.sku.as_str(), "organization": org_of(pool), "subscription": subscription.as_str(),
                    "from": from, "to": to, "trigger": trigger_type, "on": trigger_day,
                }));
            }
            Event::TopUpCapReached { pool, trigger_event, needed, allowed, month_used } => {
                let (trigger_type, trigger_day) = trigger(trigger_event).unwrap_or_default();
                capped.push(serde_json::json!({
                    "sku": pool.sku.as_str(), "organization": org_of(pool), "needed": needed, "allowed": allowed,
                    "month_used": month_used, "trigger": trigger_type, "on": trigger_day,
                }));
            }
            _ => {}
        }
    }
    same_list(&mut failures, "alerts", &expected["alerts"], &alerts);
    same_list(&mut failures, "top_ups", &expected["top_ups"], &ups);
    same_list(&mut failures, "caps_reached", &expected["caps_reached"], &capped);

    let mut book = Notifications::default();
    for (stored, _) in &events {
        let d = decode_stored(stored.clone()).unwrap().unwrap();
        book.apply(&d.recorded());
    }
    let notes: Vec<Value> = book
        .rows()
        .map(|r| {
            serde_json::json!({
                "kind": r.notification.kind, "recipient": r.notification.recipient,
                "sku": r.notification.sku, "organization": r.notification.organization,
            })
        })
        .collect();
    same_list(&mut failures, "notifications", &expected["notifications"], &notes);

    // Rebuilding the manager (its checkpoint deleted) never tops up again.
    let head = l.head().await;
    l.store.delete_checkpoint(CHECKPOINT_NAME).await.unwrap();
    if !l.manager().run_to_head().await.unwrap().attempts.is_empty() || l.head().await != head {
        failures.push("a rebuilt manager acted on history".to_owned());
    }
    failures
}

#[tokio::test]
async fn licence_manager_fixtures_match_their_hand_worked_expectations() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/licence-manager exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 6, "six scenarios: {dirs:?}");
    let mut report = vec![];
    for dir in &dirs {
        let failures = run_scenario(dir).await;
        if !failures.is_empty() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            report.push(format!("{name}:\n  {}", failures.join("\n  ")));
        }
    }
    assert!(report.is_empty(), "\n{}", report.join("\n"));
}
