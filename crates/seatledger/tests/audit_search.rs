//! `seatledger audit` answers a query in one pass from its cursor, holding
//! one page ([`AuditSearch`]), instead of folding the whole audit log into
//! memory. These tests check that it gives exactly the pages the whole-log
//! [`AuditLog::query`] gives, for every kind of filter and page size, and
//! that it stops reading once its page is settled.

use chrono::{Duration, TimeZone, Utc};
use seatledger::scenario::{run_lines, CATALOG, SEED_SCENARIOS};
use seatledger_app::invoicing::{fold_known, fold_known_after, AsOf};
use seatledger_app::{CommandHandler, SequentialIds};
use seatledger_projections::audit::{AuditLog, AuditPage, AuditQuery, AuditSearch, AuditTail};
use seatledger_store::{EventStore, MemoryStore, SteppingClock};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every seed scenario, one after another, in one ledger.
async fn ledger() -> Arc<dyn EventStore> {
    let clock = Arc::new(SteppingClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Duration::seconds(1)));
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_767_225_600_000)));
    let at = SEED_SCENARIOS[0].default_at();
    run_lines(&handler, CATALOG, at, "fixture").await.expect("the catalog applies");
    for (n, s) in SEED_SCENARIOS.iter().enumerate() {
        // Each scenario under its own actor, so that actor filters select.
        run_lines(&handler, s.commands, s.default_at(), &format!("operator-{n}")).await.expect("a scenario runs");
    }
    store
}

async fn search(store: &dyn EventStore, as_of: AsOf, query: &AuditQuery) -> (AuditPage, u64) {
    let mut search = AuditSearch::new(query.clone());
    let folded = fold_known_after(store, query.after_position, as_of, &mut [&mut search]).await.expect("search");
    (search.into_page(), folded)
}

/// Page through `query` both ways and compare every page.
async fn same_pages(store: &dyn EventStore, log: &AuditLog, as_of: AsOf, query: AuditQuery) -> usize {
    let mut query = query;
    let mut pages = 0;
    loop {
        let expected = log.query(&query);
        let (actual, _) = search(store, as_of, &query).await;
        assert_eq!(actual, expected, "a different page for {query:?}");
        pages += 1;
        match actual.next_after {
            Some(next) => query.after_position = next,
            None => return pages,
        }
    }
}

#[tokio::test]
async fn every_filter_and_page_size_gives_the_whole_log_s_pages() {
    let store = ledger().await;
    let mut log = AuditLog::default();
    fold_known(store.as_ref(), AsOf::Head, &mut [&mut log]).await.expect("folding the audit log");
    assert!(log.entries.len() > 100, "the seed scenarios should give a history worth paging");

    let workspaces: BTreeSet<String> =
        log.entries.iter().filter_map(|e| e.workspace.as_ref().map(|w| w.to_string())).collect();
    let actors: BTreeSet<String> = log.entries.iter().map(|e| e.actor.to_string()).collect();
    let types: BTreeSet<String> = log.entries.iter().map(|e| e.event_type.to_string()).collect();
    let entities: BTreeSet<String> =
        log.entries.iter().flat_map(|e| e.entities.iter().map(|l| l.to_string())).collect();
    assert!(workspaces.len() > 1 && actors.len() > 2 && types.len() > 5 && entities.len() > 10);
    let middle = log.entries[log.entries.len() / 2].clone();

    let mut queries = vec![AuditQuery::default()];
    queries.extend(workspaces.iter().map(|w| AuditQuery { workspace: Some(w.clone()), ..AuditQuery::default() }));
    queries.extend(actors.iter().map(|a| AuditQuery { actor: Some(a.clone()), ..AuditQuery::default() }));
    queries.extend(types.iter().map(|t| AuditQuery { event_type: Some(t.clone()), ..AuditQuery::default() }));
    for label in entities.iter().step_by(7) {
        queries.push(AuditQuery { entity: Some(label.clone()), ..AuditQuery::default() });
        // A bare id matches any kind of entity with that id.
        let bare = label.split_once(':').map_or(label.as_str(), |(_, id)| id).to_owned();
        queries.push(AuditQuery { entity: Some(bare), ..AuditQuery::default() });
    }
    queries.push(AuditQuery { recorded_from: Some(middle.recorded_at), ..AuditQuery::default() });
    queries.push(AuditQuery { recorded_until: Some(middle.recorded_at), ..AuditQuery::default() });
    queries.push(AuditQuery {
        effective_from: Some(middle.effective_at - Duration::days(40)),
        effective_until: Some(middle.effective_at),
        workspace: middle.workspace.as_ref().map(|w| w.to_string()),
        ..AuditQuery::default()
    });
    queries.push(AuditQuery { entity: Some("user:nobody-has-this-id".into()), ..AuditQuery::default() });

    let mut pages = 0;
    for query in &queries {
        for limit in [1, 3, 50, 1_000, 5_000] {
            let q = AuditQuery { limit, ..query.clone() };
            pages += same_pages(store.as_ref(), &log, AsOf::Head, q.clone()).await;
            // As the ledger stood at its middle event: a page never reaches past it.
            pages += same_pages(store.as_ref(), &middle_log(&log, middle.position), AsOf::Position(middle.position), q)
                .await;
        }
    }
    assert!(pages > queries.len() * 10, "only {pages} pages were compared");
}

/// The audit log as it stood at `position`.
fn middle_log(log: &AuditLog, position: u64) -> AuditLog {
    AuditLog { entries: log.entries.iter().filter(|e| e.position <= position).cloned().collect() }
}

#[tokio::test]
async fn paging_with_no_filter_visits_every_position_once_and_stops_reading_when_the_page_is_settled() {
    let store = ledger().await;
    let head = store.head_position().await.expect("head");
    let mut seen = Vec::new();
    let mut query = AuditQuery { limit: 7, ..AuditQuery::default() };
    loop {
        let (page, folded) = search(store.as_ref(), AsOf::Head, &query).await;
        assert!(page.entries.len() <= 7);
        seen.extend(page.entries.iter().map(|e| e.position));
        match page.next_after {
            Some(next) => {
                // Positions here are gapless: the page is the 7 positions
                // after the cursor, and the read stopped at the 8th, which
                // proved that there is a next page.
                assert_eq!(next, query.after_position + 7);
                assert_eq!(folded, query.after_position + 8, "the search read past its settled page");
                query.after_position = next;
            }
            None => {
                assert_eq!(folded, head, "the last page reads to the head");
                break;
            }
        }
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>(), "every position exactly once, in order");
}

#[tokio::test]
async fn the_tail_keeps_the_last_entries_and_counts_them_all() {
    let store = ledger().await;
    let mut log = AuditLog::default();
    let (mut five, mut none) = (AuditTail::new(5), AuditTail::new(0));
    fold_known(store.as_ref(), AsOf::Head, &mut [&mut log, &mut five, &mut none]).await.expect("folding");
    let head = store.head_position().await.expect("head");
    assert_eq!((five.count(), none.count()), (head, head), "every event is one audit entry");
    assert_eq!(five.entries().cloned().collect::<Vec<_>>(), log.entries[log.entries.len() - 5..].to_vec());
    assert_eq!(none.entries().count(), 0);
}

/// Folded together (shared between two threads), the seven projections end
/// exactly where each ends folded alone (compared through `Debug`, which
/// shows every field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_folded_together_end_as_each_does_alone() {
    use seatledger_projections::{
        change_log::ChangeLog, directory::Directory, invoice::InvoiceInputs, licence_state::LicenceState,
        notifications::Notifications, reports::LicenceReports,
    };
    let store = ledger().await;
    let (mut state, mut changes, mut audit, mut directory) =
        (LicenceState::default(), ChangeLog::default(), AuditLog::default(), Directory::default());
    let (mut inputs, mut notifications, mut reports) =
        (InvoiceInputs::default(), Notifications::default(), LicenceReports::default());
    let head = fold_known(
        store.as_ref(),
        AsOf::Head,
        &mut [&mut state, &mut changes, &mut audit, &mut directory, &mut inputs, &mut notifications, &mut reports],
    )
    .await
    .expect("folding together");
    assert_eq!(head, store.head_position().await.expect("head"));
    macro_rules! same_alone {
        ($($together:ident: $t:ty),*) => {$(
            let mut alone = <$t>::default();
            fold_known(store.as_ref(), AsOf::Head, &mut [&mut alone]).await.expect("folding alone");
            assert_eq!(format!("{alone:?}"), format!("{:?}", $together), "{} differs folded together", stringify!($t));
        )*};
    }
    same_alone!(state: LicenceState, changes: ChangeLog, audit: AuditLog, directory: Directory,
        inputs: InvoiceInputs, notifications: Notifications, reports: LicenceReports);
}
