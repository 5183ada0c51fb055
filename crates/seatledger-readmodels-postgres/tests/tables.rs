//! Read models in PostgreSQL tables: the rows equal the projections' entries,
//! each page lands with its checkpoint or not at all, and tables built from
//! one ledger are never continued from another.
//!
//! The ledger is golden scenario 12 (`fixtures/invoices/12-dispute`): March
//! is issued on 1 April (50.00 + 10.50 VAT = 60.50 EUR), then subscription
//! `s` goes from 3 to 5 seats from 17 March, and the correction is a debit
//! note: 39.68 − 30.00 = 9.68, VAT 12.53 − 10.50 = 2.03, total 11.71 EUR
//! (the arithmetic is in that folder's README).

use chrono::{DateTime, Utc};
use seatledger_app::invoicing;
use seatledger_app::transfer::migrate;
use seatledger_app::{decode_stored, CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::{AccountId, Command, Month, WorkspaceId};
use seatledger_projections::audit::AuditLog;
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::Projection;
use seatledger_readmodels_postgres::{PgReadModels, ReadModelError};
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use seatledger_store_postgres::testing;
use std::sync::Arc;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn meta(n: u128) -> CommandMeta {
    CommandMeta::new("readmodels@test", "cli", uuid::Uuid::from_u128(0x0007_ab1e_0000 + n))
}

/// Scenario 12 with March issued and corrected by a debit note.
async fn dispute_ledger() -> Arc<dyn EventStore> {
    ledger_with_ids(1_700_000_000_000).await
}

/// The same ledger, its event ids counted from `first_id`.
async fn ledger_with_ids(first_id: u64) -> Arc<dyn EventStore> {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(first_id)));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/invoices/12-dispute/commands.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let mut n = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")) {
        n += 1;
        let env = parse_command(line).unwrap();
        let command = Command { at: env.at.unwrap(), body: env.body };
        handler.handle(&command, &meta(n)).await.unwrap();
    }
    let (ws, acc) = (WorkspaceId::new("dispute").unwrap(), AccountId::new("dsp").unwrap());
    let march = Month::parse("2024-03").unwrap();
    invoicing::issue(&handler, &ws, &acc, march, at("2024-04-01T06:00:00Z"), &meta(1_000)).await.unwrap();
    let change = r#"{"command": "change_quantity", "workspace": "dispute", "at": "2024-03-17T00:00:00Z",
        "actor": "ops@golden.example", "channel": "portal", "subscription": "s", "quantity": 5,
        "order": {"ordered_by": "ops@golden.example"}, "subscription_channel": "portal"}"#;
    let env = parse_command(&change.replace('\n', " ")).unwrap();
    handler.handle(&Command { at: env.at.unwrap(), body: env.body }, &meta(1_001)).await.unwrap();
    invoicing::correct(&handler, "dispute-dsp-2024-03", at("2024-04-05T06:00:00Z"), &meta(1_002)).await.unwrap();
    store
}

/// The projections the CLI shows, folded in memory.
async fn projected(store: &dyn EventStore) -> (AuditLog, ChangeLog) {
    let (mut audit, mut changes) = (AuditLog::default(), ChangeLog::default());
    for stored in store.read_all(0, 10_000).await.unwrap() {
        let decoded = decode_stored(stored).unwrap().unwrap();
        audit.apply(&decoded.recorded());
        changes.apply(&decoded.recorded());
    }
    (audit, changes)
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The audit rows as (position, event id, type, actor, summary, entities).
async fn audit_rows(c: &tokio_postgres::Client) -> Vec<(i64, uuid::Uuid, String, String, String, Vec<String>)> {
    c.query(
        "SELECT position, event_id, event_type, actor, summary, entities FROM seatledger_read.audit_log ORDER BY position",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

fn expected_audit(audit: &AuditLog) -> Vec<(i64, uuid::Uuid, String, String, String, Vec<String>)> {
    audit
        .entries
        .iter()
        .map(|e| {
            (
                e.position as i64,
                e.event_id,
                e.event_type.to_string(),
                e.actor.to_string(),
                e.summary.clone(),
                e.entities.iter().map(|l| l.to_string()).collect(),
            )
        })
        .collect()
}

async fn change_rows(c: &tokio_postgres::Client) -> Vec<(i64, String, String, i32, i32, String)> {
    c.query(
        "SELECT position, subscription, sku, from_quantity, to_quantity, reason FROM seatledger_read.licence_changes \
         ORDER BY position",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_hold_what_the_projections_hold_and_the_invoices_with_their_amounts() {
    let Some(db) = testing::fresh_database("rm_tables").await else { return };
    let store = dispute_ledger().await;
    let mut models = PgReadModels::connect(db.url()).await.unwrap();
    let report = models.catch_up(store.as_ref(), None, &mut |_, _| {}).await.unwrap();
    let head = store.head_position().await.unwrap();
    assert_eq!((report.events, report.position), (head, head));
    assert_eq!(models.position().await.unwrap(), head);

    let c = client(db.url()).await;
    let (audit, changes) = projected(store.as_ref()).await;
    assert_eq!(audit_rows(&c).await, expected_audit(&audit));
    let expected_changes: Vec<_> = changes
        .entries
        .iter()
        .map(|e| {
            (e.position as i64, e.subscription.clone(), e.sku.clone(), e.from as i32, e.to as i32, e.reason.clone())
        })
        .collect();
    assert_eq!(change_rows(&c).await, expected_changes);
    assert!(expected_changes.iter().any(|(_, s, _, from, to, _)| s == "s" && *from == 3 && *to == 5));

    // The invoice and its debit note, amounts exact in numeric columns.
    type DocumentRow = (String, String, Option<String>, String, String, String, String);
    let docs: Vec<DocumentRow> = c
        .query(
            "SELECT number, kind, corrects, currency, subtotal::text, tax::text, total::text \
             FROM seatledger_read.invoice_documents ORDER BY position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    assert_eq!(docs.len(), 2, "{docs:?}");
    let invoice = &docs[0];
    assert_eq!(
        (invoice.0.as_str(), invoice.1.as_str(), invoice.2.as_deref(), invoice.3.as_str()),
        ("dispute-dsp-2024-03", "invoice", None, "EUR")
    );
    assert_eq!((invoice.4.as_str(), invoice.5.as_str(), invoice.6.as_str()), ("50.00", "10.50", "60.50"));
    let note = &docs[1];
    assert_eq!((note.1.as_str(), note.2.as_deref()), ("debit", Some("dispute-dsp-2024-03")));
    assert_eq!((note.4.as_str(), note.5.as_str(), note.6.as_str()), ("9.68", "2.03", "11.71"));
    // Lines add up to the subtotal, in SQL.
    let sums: Vec<(String, bool)> = c
        .query(
            "SELECT d.number, sum(l.amount) = d.subtotal FROM seatledger_read.invoice_documents d \
             JOIN seatledger_read.invoice_lines l USING (number) GROUP BY d.number, d.subtotal",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(sums.len(), 2);
    assert!(sums.iter().all(|(_, equal)| *equal), "{sums:?}");
    let s_line: String = c
        .query_one(
            "SELECT amount::text FROM seatledger_read.invoice_lines WHERE number = 'dispute-dsp-2024-03' \
             AND key = 'per_licence/s'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(s_line, "30.00");

    // Nothing new: a second run folds nothing and changes nothing.
    let again = models.catch_up(store.as_ref(), None, &mut |_, _| {}).await.unwrap();
    assert_eq!((again.events, again.position), (0, head));
    assert_eq!(audit_rows(&c).await.len() as u64, head);
    assert_eq!(models.schema_version().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_leaves_tables_and_checkpoint_as_they_were() {
    let Some(db) = testing::fresh_database("rm_atomic").await else { return };
    let store = dispute_ledger().await;
    let mut models = PgReadModels::connect(db.url()).await.unwrap();
    let first = models.catch_up(store.as_ref(), Some(4), &mut |_, _| {}).await.unwrap();
    assert_eq!((first.events, first.position), (4, 4));
    let c = client(db.url()).await;
    // Make the debit note's audit row impossible to write: its page must fail whole.
    c.batch_execute(
        "ALTER TABLE seatledger_read.audit_log ADD CONSTRAINT no_debit CHECK (event_type <> 'DebitNoteIssued')",
    )
    .await
    .unwrap();
    let err = models.catch_up(store.as_ref(), None, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ReadModelError::Database(_)), "{err}");
    assert!(err.to_string().contains("audit row of position"), "the error names the row: {err}");
    assert_eq!(models.position().await.unwrap(), 4, "the checkpoint did not move");
    assert_eq!(audit_rows(&c).await.len(), 4, "no audit row of the failed page was kept");
    let later: i64 = c
        .query_one("SELECT count(*) FROM seatledger_read.licence_changes WHERE position > 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(later, 0, "no licence change of the failed page was kept");
    let docs: i64 = c.query_one("SELECT count(*) FROM seatledger_read.invoice_documents", &[]).await.unwrap().get(0);
    assert_eq!(docs, 0, "the invoice of the failed page was not kept");

    c.batch_execute("ALTER TABLE seatledger_read.audit_log DROP CONSTRAINT no_debit").await.unwrap();
    let rest = models.catch_up(store.as_ref(), None, &mut |_, _| {}).await.unwrap();
    let head = store.head_position().await.unwrap();
    assert_eq!((rest.events, rest.position), (head - 4, head));
    let (audit, _) = projected(store.as_ref()).await;
    assert_eq!(audit_rows(&c).await, expected_audit(&audit), "resumed tables equal a fold from zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_at_once_write_every_row_once() {
    let Some(db) = testing::fresh_database("rm_race").await else { return };
    let store = dispute_ledger().await;
    let mut a = PgReadModels::connect(db.url()).await.unwrap();
    let mut b = PgReadModels::connect(db.url()).await.unwrap();
    let (mut pa, mut pb) = (|_, _| {}, |_, _| {});
    let (ra, rb) = tokio::join!(a.catch_up(store.as_ref(), None, &mut pa), b.catch_up(store.as_ref(), None, &mut pb));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let head = store.head_position().await.unwrap();
    assert_eq!(ra.events + rb.events, head, "every event folded by exactly one runner");
    let (audit, _) = projected(store.as_ref()).await;
    assert_eq!(audit_rows(&client(db.url()).await).await, expected_audit(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_from_one_ledger_are_not_continued_from_another_until_rebuilt() {
    let Some(db) = testing::fresh_database("rm_other").await else { return };
    let first = dispute_ledger().await;
    let mut models = PgReadModels::connect(db.url()).await.unwrap();
    models.catch_up(first.as_ref(), None, &mut |_, _| {}).await.unwrap();

    let other = ledger_with_ids(1_900_000_000_000).await; // same commands, other event ids
    let err = models.catch_up(other.as_ref(), None, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ReadModelError::OtherLedger { .. }), "{err}");
    assert!(err.to_string().contains("rebuild"), "{err}");

    let rebuilt = models.rebuild(other.as_ref(), &mut |_, _| {}).await.unwrap();
    assert_eq!(rebuilt.position, other.head_position().await.unwrap());
    let (audit, _) = projected(other.as_ref()).await;
    assert_eq!(audit_rows(&client(db.url()).await).await, expected_audit(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_folds_new_events_as_they_are_appended() {
    let Some(db) = testing::fresh_database("rm_follow").await else { return };
    let store = dispute_ledger().await;
    let head = store.head_position().await.unwrap();
    let url = db.url().to_owned();
    let follower_store = store.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(async move {
        let mut models = PgReadModels::connect(&url).await.unwrap();
        let stop = async {
            let _ = stop_rx.await;
        };
        models.follow(follower_store.as_ref(), std::time::Duration::from_secs(30), stop).await
    });
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_800_000_000_000)));
    let change = r#"{"command": "change_quantity", "workspace": "dispute", "at": "2024-04-10T00:00:00Z", "actor": "ops@golden.example", "channel": "portal", "subscription": "t", "quantity": 2, "order": {"ordered_by": "ops@golden.example"}, "subscription_channel": "portal"}"#;
    let env = parse_command(change).unwrap();
    // Give the follower time to catch up first, then append: the head watch wakes it.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    handler.handle(&Command { at: env.at.unwrap(), body: env.body }, &meta(2_000)).await.unwrap();
    let c = client(db.url()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = change_rows(&c).await;
        if rows.iter().any(|(_, s, _, from, to, _)| s == "t" && *from == 1 && *to == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the follower never wrote the new change: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    let total = follower.await.unwrap().unwrap();
    assert_eq!(total.position, head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_ledger_carries_on_where_positions_are_kept_and_is_refused_where_they_are_not() {
    let Some(db) = testing::fresh_database("rm_migrated").await else { return };
    let Some(copy) = testing::fresh_database("rm_migrated_store").await else { return };
    let original = dispute_ledger().await;
    let mut models = PgReadModels::connect(db.url()).await.unwrap();
    models.catch_up(original.as_ref(), None, &mut |_, _| {}).await.unwrap();

    // PostgreSQL numbers the copy 1, 2, 3, … as the original: the tables carry on.
    let postgres: Arc<dyn EventStore> =
        Arc::new(seatledger_store_postgres::PostgresStore::connect(copy.url(), Arc::new(SystemClock)).await.unwrap());
    migrate(original.as_ref(), postgres.as_ref(), &mut |_, _| {}).await.unwrap();
    let carried = models.catch_up(postgres.as_ref(), None, &mut |_, _| {}).await.unwrap();
    assert_eq!((carried.events, carried.position), (0, original.head_position().await.unwrap()));

    // KurrentDB gives the same events its own positions: the checkpoint would
    // mean something else there, so the tables refuse until rebuilt.
    let double = kurrentdb_double::Double::start().await;
    let kurrent: Arc<dyn EventStore> = Arc::new(
        seatledger_store_kurrentdb::KurrentDbStore::connect(&double.connection_string(), Arc::new(SystemClock))
            .await
            .unwrap(),
    );
    migrate(original.as_ref(), kurrent.as_ref(), &mut |_, _| {}).await.unwrap();
    let err = models.catch_up(kurrent.as_ref(), None, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ReadModelError::OtherLedger { .. }), "{err}");
    let rebuilt = models.rebuild(kurrent.as_ref(), &mut |_, _| {}).await.unwrap();
    assert_eq!(rebuilt.position, kurrent.head_position().await.unwrap());
    let (audit, _) = projected(kurrent.as_ref()).await;
    assert_eq!(audit_rows(&client(db.url()).await).await, expected_audit(&audit));
}
