//! `migrate`: a whole ledger copied between stores, keeping ids, versions and
//! both timestamps, resumable after an interruption.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::Wrapped;
use seatledger_app::transfer::{migrate, MigrateError};
use seatledger_store::conformance::{new_events, stream_append, with_command};
use seatledger_store::{
    EventStore, ExpectedVersion, MemoryStore, SteppingClock, StoreError, StoredEvent, StreamAppend,
};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use uuid::Uuid;

fn clock(start_year: i32) -> Arc<SteppingClock> {
    Arc::new(SteppingClock::new(Utc.with_ymd_and_hms(start_year, 3, 1, 9, 0, 0).unwrap(), Duration::milliseconds(7)))
}

/// A source ledger of 2,600 events over 30 streams, in several appends, so
/// that the copy spans three import pages.
async fn source() -> Arc<dyn EventStore> {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2024)));
    for round in 0..13u64 {
        let mut appends: Vec<StreamAppend> = vec![];
        for s in 0..20 {
            let stream = format!("workspace-w{s}");
            let expected = if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(round * 10 - 1) };
            appends.push(stream_append(&stream, expected, with_command(new_events(&stream, 10), Uuid::now_v7())));
        }
        store.append_many(appends).await.expect("appending the source history");
    }
    for s in 0..10 {
        let stream = format!("invoices-w{s}");
        store.append(stream_append(&stream, ExpectedVersion::NoStream, new_events(&stream, 1))).await.unwrap();
    }
    // 13 × 20 × 10 + 10 = 2,610 events.
    store
}

async fn everything(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut all = vec![];
    loop {
        let page = store.read_all(all.last().map_or(0, |e: &StoredEvent| e.position), 10_000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Every field but the store's own position and hash link.
fn kept(e: &StoredEvent) -> impl PartialEq + std::fmt::Debug {
    (
        e.id,
        e.stream.clone(),
        e.stream_version,
        e.event_type.clone(),
        e.schema_version,
        e.recorded_at,
        e.metadata.clone(),
        e.payload.clone(),
    )
}

#[tokio::test]
async fn a_whole_ledger_is_copied_with_ids_versions_and_both_timestamps() {
    let from = source().await;
    // The target's own clock is years away: what it would stamp must not show.
    let to: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2031)));
    let mut calls = vec![];
    let report = migrate(from.as_ref(), to.as_ref(), &mut |done, total| calls.push((done, total))).await.unwrap();
    assert_eq!((report.source_events, report.copied, report.skipped, report.resumed_after), (2_610, 2_610, 0, 0));
    assert!(report.target_verify.is_intact());
    assert_eq!(report.target_verify.checked, 2_610);
    let (source, target) = (everything(from.as_ref()).await, everything(to.as_ref()).await);
    assert_eq!(source.iter().map(kept).collect::<Vec<_>>(), target.iter().map(kept).collect::<Vec<_>>());
    assert_eq!(target[0].recorded_at.format("%Y").to_string(), "2024", "recorded_at comes from the source");
    // Progress went up page by page to the total.
    assert_eq!(calls.last(), Some(&(2_610, 2_610)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "progress only grows: {calls:?}");

    // Running it again copies nothing and changes nothing.
    let again = migrate(from.as_ref(), to.as_ref(), &mut |_, _| {}).await.unwrap();
    assert_eq!((again.copied, again.skipped), (0, 0));
    assert_eq!(again.resumed_after, source.last().unwrap().position);
    assert_eq!(everything(to.as_ref()).await.len(), 2_610);
}

#[tokio::test]
async fn an_interrupted_migration_resumes_where_it_stopped() {
    let from = source().await;
    let target: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2031)));
    let flaky = Wrapped { imports_left: Some(AtomicUsize::new(2)), ..Wrapped::new(target.clone()) };
    let err = migrate(from.as_ref(), &flaky, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, MigrateError::Store(StoreError::Unavailable(_))), "{err}");
    // Two pages of 1,000 made it; the third did not.
    assert_eq!(everything(target.as_ref()).await.len(), 2_000);

    let mut first_progress = None;
    let report = migrate(from.as_ref(), target.as_ref(), &mut |done, _| {
        first_progress.get_or_insert(done);
    })
    .await
    .unwrap();
    assert_eq!((report.copied, report.skipped), (610, 0), "only the rest is copied");
    assert_eq!(report.resumed_after, everything(from.as_ref()).await[1_999].position);
    assert_eq!(first_progress, Some(2_610), "progress counts what the first run copied");
    let (source, copied) = (everything(from.as_ref()).await, everything(target.as_ref()).await);
    assert_eq!(source.iter().map(kept).collect::<Vec<_>>(), copied.iter().map(kept).collect::<Vec<_>>());
    assert!(target.verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_lost_checkpoint_only_costs_skips_never_doubles() {
    let from = source().await;
    let target: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2031)));
    let flaky = Wrapped { imports_left: Some(AtomicUsize::new(1)), ..Wrapped::new(target.clone()) };
    migrate(from.as_ref(), &flaky, &mut |_, _| {}).await.unwrap_err();
    // The page was imported but, as if the process died right then, its
    // checkpoint was never saved.
    let first = everything(from.as_ref()).await[0].id;
    target.delete_checkpoint(&format!("migrate-from-{first}")).await.unwrap();
    let report = migrate(from.as_ref(), target.as_ref(), &mut |_, _| {}).await.unwrap();
    assert_eq!((report.copied, report.skipped, report.resumed_after), (1_610, 1_000, 0));
    assert_eq!(everything(target.as_ref()).await.len(), 2_610);
}

#[tokio::test]
async fn an_empty_source_migrates_to_an_empty_target() {
    let from: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2024)));
    let to: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock(2024)));
    let report = migrate(from.as_ref(), to.as_ref(), &mut |_, _| {}).await.unwrap();
    assert_eq!((report.source_events, report.copied), (0, 0));
    assert_eq!(to.head_position().await.unwrap(), 0);
}
