//! The conformance suite, run against the in-memory store.

use seatledger_store::conformance::StoreGuard;
use seatledger_store::{EventStore, MemoryStore};
use std::sync::Arc;

seatledger_store::conformance_suite!(|clock| async move {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock));
    // Nothing outlives the store in memory, so the guard holds nothing.
    let guard: StoreGuard = Box::new(());
    (store, guard)
});
