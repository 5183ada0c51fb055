//! The conformance suite against the in-repo protocol double: a real gRPC
//! conversation with the `kurrentdb` client, but NOT a real server (see the
//! `kurrentdb-double` crate and docs/kurrentdb.md for what it leaves out).
//! Each test gets a double of its own, so each starts from an empty log.

use seatledger_store::conformance::StoreGuard;
use seatledger_store::EventStore;
use seatledger_store_kurrentdb::KurrentDbStore;
use std::sync::Arc;

seatledger_store::conformance_suite!(|clock| async move {
    let double = kurrentdb_double::Double::start().await;
    let store = KurrentDbStore::connect(&double.connection_string(), clock)
        .await
        .unwrap_or_else(|e| panic!("connecting to the protocol double failed: {e}"));
    let store: Arc<dyn EventStore> = Arc::new(store);
    // The double outlives the store: the guard is dropped after it.
    let guard: StoreGuard = Box::new(double);
    (store, guard)
});
