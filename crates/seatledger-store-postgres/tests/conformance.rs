//! The shared conformance suite, each check on a fresh, empty database.
//!
//! With no PostgreSQL server to be had (see `testing`), a banner on stderr
//! says the PostgreSQL tests are skipped and the checks run against the
//! in-memory store instead, which the suite cannot tell apart; with
//! `CI=true` that panics instead, so CI never passes by skipping.

use seatledger_store::conformance::StoreGuard;
use seatledger_store::{Clock, EventStore, MemoryStore};
use seatledger_store_postgres::testing::fresh_database;
use seatledger_store_postgres::PostgresStore;
use std::sync::Arc;

async fn fresh_store(clock: Arc<dyn Clock>) -> (Arc<dyn EventStore>, StoreGuard) {
    match fresh_database("conformance").await {
        Some(db) => {
            let store = PostgresStore::connect(db.url(), clock).await.expect("connecting to a fresh database");
            (Arc::new(store), Box::new(db))
        }
        None => (Arc::new(MemoryStore::new(clock)), Box::new(())),
    }
}

seatledger_store::conformance_suite!(fresh_store);
