//! Notifications: who gets what, and delivery through sinks recorded in the
//! outbox stream.
//!
//! The ledger: workspace `w` holds 5 `SEAT` licences; the pool alerts at 1
//! free seat and tops up to 2 free seats, at most 1 per top-up and 2 per
//! month. The top-up manager runs after every drain, as it would live.

use async_trait::async_trait;
use seatledger_app::notify::{self, deliver_pending, CollectingSink, FileSink, NotificationSink};
use seatledger_app::topup::TopUpManager;
use seatledger_app::{decode_stored, AppError, CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::outbox::{DeliveryOutcome, OutboxCommand, MAX_DELIVERY_ATTEMPTS};
use seatledger_domain::*;
use seatledger_projections::notifications::{DeliveryState, Notification, Notifications};
use seatledger_projections::{Projection, Recorded};
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

struct Ledger {
    store: Arc<dyn EventStore>,
    handler: Arc<CommandHandler>,
    manager: TopUpManager,
    n: u128,
}

impl Ledger {
    async fn new() -> Self {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let handler = Arc::new(CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000))));
        let mut manager = TopUpManager::new(handler.clone());
        manager.run_to_head().await.unwrap();
        let mut l = Self { store, handler, manager, n: 0 };
        for line in [
            r#"{"command":"define_product","at":"2024-01-01T00:00:00Z","sku":"SEAT","name":"Seat","kind":"module","charge_model":"per_licence","sales_unit":"licence"}"#.to_owned(),
            r#"{"command":"create_workspace","workspace":"w","at":"2024-03-01T08:00:00Z","name":"W","billing_mode":"single","created_on":"2024-03-01"}"#.to_owned(),
            r#"{"command":"open_billing_account","workspace":"w","at":"2024-03-01T08:00:00Z","account":"a","name":"A","currency":"EUR"}"#.to_owned(),
            r#"{"command":"create_organization","workspace":"w","at":"2024-03-01T08:00:00Z","org":"hq","name":"HQ"}"#.to_owned(),
            r#"{"command":"create_subscription","workspace":"w","at":"2024-03-01T08:00:00Z","subscription":"s1","account":"a","sku":"SEAT","name":"Seats","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,"order":{"ordered_by":"ops"},"price_list":"std","currency":"EUR","selling_per_unit":"10","cost_per_unit":"5"}"#.to_owned(),
            r#"{"command":"configure_licences","workspace":"w","at":"2024-03-01T08:30:00Z","sku":"SEAT","settings":{"alert_threshold":1,"top_up":{"vacant_seat_threshold":2,"max_per_top_up":1,"max_per_month":2}}}"#.to_owned(),
        ] {
            l.run(&line).await;
        }
        for i in 1..=9 {
            l.run(&format!(
                r#"{{"command":"add_user","workspace":"w","at":"2024-03-01T09:00:00Z","user":"u{i}","org":"hq","profile":{{"first_name":"U","last_name":"{i}","email":"u{i}@w.example","username":"u{i}"}}}}"#
            ))
            .await;
        }
        l
    }

    async fn run(&mut self, line: &str) {
        let env = parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        self.n += 1;
        let cmd = Command { at: env.at.unwrap(), body: env.body };
        self.handler
            .handle(&cmd, &CommandMeta::new("ops@test", "portal", uuid::Uuid::from_u128(self.n)))
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        self.manager.run_to_head().await.unwrap();
    }

    async fn recipient(&mut self, command: &str, id: &str, kinds: &[&str]) {
        let kinds = kinds.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(",");
        let email = if command == "add_notification_recipient" {
            format!(r#""email":"{id}@w.example","#)
        } else {
            String::new()
        };
        self.run(&format!(
            r#"{{"command":"{command}","workspace":"w","at":"2024-03-02T08:00:00Z","recipient":"{id}",{email}"kinds":[{kinds}]}}"#
        ))
        .await;
    }

    async fn assign(&mut self, target: &str, at: &str) {
        self.run(&format!(
            r#"{{"command":"assign_module","workspace":"w","at":"{at}","sku":"SEAT","target":{target}}}"#
        ))
        .await;
    }

    /// Drain the pool to its first alert: four seats leave 1 free; the
    /// top-up adds 1 and clears the alert.
    async fn first_alert(&mut self) {
        for u in 1..=4 {
            self.assign(&format!(r#"{{"user":"u{u}"}}"#), "2024-03-04T10:00:00Z").await;
        }
    }

    async fn notifications(&self) -> Notifications {
        notify::notifications(&self.handler).await.unwrap()
    }
}

#[tokio::test]
async fn recipient_settings_as_they_stood_decide_who_gets_what() {
    let mut l = Ledger::new().await;
    l.recipient("add_notification_recipient", "ops", &["low_licence", "top_up_confirmation", "cap_reached"]).await;
    l.recipient("add_notification_recipient", "finance", &["top_up_confirmation"]).await;
    l.first_alert().await;

    // Finance now wants cap notices only; a late recipient wants alerts.
    l.recipient("change_notification_settings", "finance", &["cap_reached"]).await;
    l.recipient("add_notification_recipient", "late", &["low_licence"]).await;
    // 1 free again: an alert, and the month's second (last) licence.
    l.assign(r#"{"user":"u5"}"#, "2024-03-05T10:00:00Z").await;
    // Two seats at once leave 0 free: an alert, and the month's cap allows nothing.
    l.run(r#"{"command":"create_group","workspace":"w","at":"2024-03-06T10:00:00Z","group":"g","name":"G"}"#).await;
    for u in [6, 7] {
        l.run(&format!(
            r#"{{"command":"add_group_member","workspace":"w","at":"2024-03-06T10:00:00Z","group":"g","user":"u{u}"}}"#
        ))
        .await;
    }
    l.assign(r#"{"group":"g"}"#, "2024-03-06T10:00:00Z").await;
    // Removed recipients receive nothing more (and nothing was sent yet).
    l.run(
        r#"{"command":"remove_notification_recipient","workspace":"w","at":"2024-03-07T10:00:00Z","recipient":"late"}"#,
    )
    .await;

    let book = l.notifications().await;
    let got: Vec<(String, String)> =
        book.rows().map(|r| (r.notification.kind.clone(), r.notification.recipient.clone())).collect();
    let want = [
        ("low_licence", "ops"),
        ("top_up_confirmation", "finance"),
        ("top_up_confirmation", "ops"),
        ("low_licence", "late"),
        ("low_licence", "ops"),
        ("top_up_confirmation", "ops"),
        ("low_licence", "late"),
        ("low_licence", "ops"),
        ("cap_reached", "finance"),
        ("cap_reached", "ops"),
    ];
    assert_eq!(got, want.map(|(k, r)| (k.to_owned(), r.to_owned())));

    // Ids, addresses and texts come from the events.
    let mut events = BTreeMap::new();
    for stored in l.store.read_all(0, 10_000).await.unwrap() {
        let d = decode_stored(stored).unwrap().unwrap();
        events.insert(d.stored.id, (d.stored.clone(), d.event));
    }
    for row in book.rows() {
        let n = &row.notification;
        let (stored, event) = &events[&n.event_id];
        assert_eq!(n.id, format!("{}/{}", stored.id, n.recipient));
        assert_eq!(n.email, format!("{}@w.example", n.recipient));
        assert_eq!(n.created_at, stored.recorded_at);
        assert_eq!(n.sku, "SEAT");
        assert_eq!(row.state, DeliveryState::Pending);
        match (n.kind.as_str(), event) {
            ("low_licence", Event::LowLicenceAlertRaised { available, threshold, .. }) => {
                assert!(n.subject.contains(&format!("SEAT has {available} seat")), "{}", n.subject);
                assert!(n.body.contains(&format!("alert threshold of {threshold}")), "{}", n.body);
            }
            ("top_up_confirmation", Event::QuantityChanged { from, to, .. }) => {
                assert!(n.subject.contains("Automatic top-up: 1 licence added to SEAT"), "{}", n.subject);
                assert!(n.body.contains(&format!("from {from} to {to}")), "{}", n.body);
                assert!(n.body.contains("vacant-seat threshold of 2"), "{}", n.body);
            }
            ("cap_reached", Event::TopUpCapReached { needed: 2, allowed: 0, month_used: 2, .. }) => {
                assert!(n.subject.contains("Top-up cap reached for SEAT: 0 of 2 added"), "{}", n.subject);
                assert!(n.body.contains("no licences were added"), "{}", n.body);
                assert!(n.body.contains("1 per top-up and 2 per month"), "{}", n.body);
            }
            (kind, event) => panic!("{kind} for {event:?}"),
        }
    }
}

/// Fails every notification's first `failures` attempts, then delivers.
#[derive(Debug)]
struct FlakySink {
    failures: u32,
    calls: Mutex<BTreeMap<String, u32>>,
}

impl FlakySink {
    fn new(failures: u32) -> Self {
        Self { failures, calls: Mutex::new(BTreeMap::new()) }
    }

    fn calls(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl NotificationSink for FlakySink {
    async fn deliver(&self, n: &Notification) -> Result<(), String> {
        let mut calls = self.calls.lock().unwrap();
        let count = calls.entry(n.id.clone()).or_default();
        *count += 1;
        if *count <= self.failures {
            Err(format!("smtp 451: mailbox of {} busy, try again later", n.email))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_failing_sink_records_failures_with_reasons_then_a_retry_succeeds() {
    let mut l = Ledger::new().await;
    l.recipient("add_notification_recipient", "ops", &["low_licence"]).await;
    l.first_alert().await;
    let sink = FlakySink::new(1);

    let report = deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap();
    assert_eq!((report.sent(), report.failed()), (0, 1));
    let row = l.notifications().await.list(Some("w"), None).pop().unwrap();
    assert_eq!(row.state, DeliveryState::Failed);
    assert_eq!(row.delivery.attempts, 1);
    assert_eq!(row.delivery.last_error(), Some("smtp 451: mailbox of ops@w.example busy, try again later"));
    assert_eq!(
        row.delivery.describe(),
        "failed (attempt 1 of 5): smtp 451: mailbox of ops@w.example busy, try again later"
    );

    let report = deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap();
    assert_eq!((report.sent(), report.failed()), (1, 0));
    let row = l.notifications().await.list(Some("w"), Some(DeliveryState::Sent)).pop().unwrap();
    assert!(row.retried);
    assert_eq!(row.delivery.attempts, 2);
    assert_eq!(row.delivery.describe(), "sent, retried (attempt 2)");

    // The outbox stream holds both attempts, numbered without gaps.
    let outbox = l.store.read_stream("outbox-w", 0, seatledger_store::Direction::Forwards, 100).await.unwrap();
    let types: Vec<(&str, u64)> = outbox.iter().map(|e| (e.event_type.as_str(), e.stream_version)).collect();
    assert_eq!(types, [("NotificationFailed", 0), ("NotificationSent", 1)]);
    assert!(outbox[0].payload.contains("smtp 451"));
    assert_eq!(outbox[0].metadata.causation_id, Some(row.notification.event_id));

    // Nothing is left to deliver.
    assert!(deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap().attempts.is_empty());
    assert_eq!(sink.calls(), 2);
}

#[tokio::test]
async fn after_the_cap_of_attempts_a_notification_is_given_up() {
    let mut l = Ledger::new().await;
    l.recipient("add_notification_recipient", "ops", &["low_licence"]).await;
    l.first_alert().await;
    let sink = FlakySink::new(u32::MAX);
    for attempt in 1..=MAX_DELIVERY_ATTEMPTS {
        let report = deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap();
        assert_eq!(report.failed(), 1);
        assert_eq!(report.attempts[0].attempt, attempt);
        assert_eq!(report.given_up(), usize::from(attempt == MAX_DELIVERY_ATTEMPTS));
    }
    let book = l.notifications().await;
    let row = book.list(None, Some(DeliveryState::GivenUp)).pop().unwrap();
    assert_eq!(row.delivery.attempts, MAX_DELIVERY_ATTEMPTS);
    assert_eq!(row.delivery.failures.len(), MAX_DELIVERY_ATTEMPTS as usize);
    assert!(row.delivery.describe().starts_with("given up after 5 attempts: smtp 451"));
    assert!(book.deliverable().is_empty());

    // Given up: the next run does not call the sink, and the domain refuses
    // a sixth attempt recorded by hand.
    assert!(deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap().attempts.is_empty());
    assert_eq!(sink.calls(), MAX_DELIVERY_ATTEMPTS);
    let sixth = Command {
        at: chrono::Utc::now(),
        body: CommandBody::Outbox {
            workspace: WorkspaceId::new("w").unwrap(),
            command: OutboxCommand::RecordDelivery {
                notification: row.notification.id.clone(),
                attempt: MAX_DELIVERY_ATTEMPTS + 1,
                outcome: DeliveryOutcome::Sent,
            },
        },
    };
    let err = l.handler.handle(&sixth, &CommandMeta::new("t", "cli", uuid::Uuid::from_u128(999))).await.unwrap_err();
    assert!(matches!(err, AppError::Rejected(DomainError::DeliveryGivenUp { attempts: 5, .. })), "{err}");
}

#[tokio::test]
async fn a_second_deliver_pending_sends_nothing_twice() {
    let mut l = Ledger::new().await;
    l.recipient("add_notification_recipient", "ops", &["low_licence", "top_up_confirmation"]).await;
    l.recipient("add_notification_recipient", "finance", &["top_up_confirmation"]).await;
    l.first_alert().await;
    let path = std::env::temp_dir().join(format!("seatledger-notify-{}-{}.jsonl", std::process::id(), line!()));
    let _ = std::fs::remove_file(&path);
    let sink = FileSink::new(&path);

    // A limit delivers that many, oldest first.
    let first = deliver_pending(&l.handler, &sink, 1).await.unwrap();
    assert_eq!(first.sent(), 1);
    let rest = deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap();
    assert_eq!(rest.sent(), 2);
    let again = deliver_pending(&l.handler, &sink, usize::MAX).await.unwrap();
    assert!(again.attempts.is_empty(), "{again:?}");

    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    let ids: Vec<&str> = lines.iter().map(|v| v["id"].as_str().unwrap()).collect();
    let book = l.notifications().await;
    let want: Vec<String> = book.rows().map(|r| r.notification.id).collect();
    assert_eq!(ids, want);
    assert_eq!(lines[0]["kind"], "low_licence");
    assert_eq!(lines[0]["to"], "ops@w.example");
    assert!(lines[0]["subject"].as_str().unwrap().contains("Low licences: SEAT has 1 seat left"));
    assert!(book.rows().all(|r| r.state == DeliveryState::Sent && !r.retried));

    // A collecting sink finds nothing left either.
    let collect = CollectingSink::new();
    assert!(deliver_pending(&l.handler, &collect, usize::MAX).await.unwrap().attempts.is_empty());
    assert!(collect.delivered().is_empty());
}

/// Folding from zero equals folding in two pieces with save and restore in
/// between, deliveries included.
#[tokio::test]
async fn the_projection_folds_the_same_in_pieces() {
    let mut l = Ledger::new().await;
    l.recipient("add_notification_recipient", "ops", &["low_licence", "top_up_confirmation", "cap_reached"]).await;
    l.first_alert().await;
    deliver_pending(&l.handler, &FlakySink::new(1), usize::MAX).await.unwrap();
    l.assign(r#"{"user":"u5"}"#, "2024-03-05T10:00:00Z").await;
    deliver_pending(&l.handler, &FlakySink::new(0), usize::MAX).await.unwrap();

    let all: Vec<_> =
        l.store.read_all(0, 10_000).await.unwrap().into_iter().map(|s| decode_stored(s).unwrap().unwrap()).collect();
    let fold = |p: &mut Notifications, events: &[seatledger_app::DecodedEvent]| {
        for d in events {
            let r: Recorded<'_> = d.recorded();
            p.apply(&r);
        }
    };
    let mut whole = Notifications::default();
    fold(&mut whole, &all);
    for cut in [1, all.len() / 2, all.len() - 1] {
        let mut first = Notifications::default();
        fold(&mut first, &all[..cut]);
        let mut second = Notifications::default();
        second.restore(&first.save().unwrap()).unwrap();
        fold(&mut second, &all[cut..]);
        assert_eq!(second, whole, "cut at {cut}");
    }
    assert_eq!(whole.len(), 4, "an alert and a top-up, twice, all to ops");
    assert_eq!(whole.list(None, Some(DeliveryState::Sent)).len(), 4);
}
