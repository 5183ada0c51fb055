//! The conformance suite, run against a SQLite file in a fresh temp dir.

use seatledger_store::conformance::StoreGuard;
use seatledger_store::EventStore;
use seatledger_store_sqlite::SqliteStore;
use std::sync::Arc;

seatledger_store::conformance_suite!(|clock| async move {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let store = SqliteStore::open(dir.path().join("events.db"), clock).expect("opening a fresh sqlite store");
    let store: Arc<dyn EventStore> = Arc::new(store);
    // The temp dir outlives the store: the guard is dropped after it.
    let guard: StoreGuard = Box::new(dir);
    (store, guard)
});
