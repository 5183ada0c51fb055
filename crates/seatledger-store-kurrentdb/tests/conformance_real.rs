//! The conformance suite against a real KurrentDB (or EventStoreDB 22.10+)
//! node or cluster, when `SEATLEDGER_TEST_KURRENTDB_URL` names one, e.g.
//!
//! ```text
//! SEATLEDGER_TEST_KURRENTDB_URL='kurrentdb://admin:changeit@localhost:2113?tls=false' \
//!     cargo test -p seatledger-store-kurrentdb --test conformance_real
//! ```
//!
//! Every test works in a namespace of its own, so the server need not be
//! empty and runs never see each other's events. The node must accept
//! appends of 8 MiB or more (`MaxAppendSize`, see docs/kurrentdb.md) for the
//! 10,000-event check.
//!
//! Without the variable every test says loudly that it was skipped, and
//! passes: no KurrentDB server can be installed where this suite runs in CI,
//! and the same suite runs there against the protocol double
//! (`conformance_double.rs`), which is not a real server.

use seatledger_store::conformance::StoreGuard;
use seatledger_store::{Clock, EventStore};
use seatledger_store_kurrentdb::{KurrentDbOptions, KurrentDbStore};
use std::io::Write as _;
use std::sync::Arc;

const URL_VARIABLE: &str = "SEATLEDGER_TEST_KURRENTDB_URL";

/// A store in a fresh namespace on the configured server, or `None` (and a
/// loud note) when no server is configured.
async fn real_store(clock: Arc<dyn Clock>) -> Option<(Arc<dyn EventStore>, StoreGuard)> {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        // Straight to stderr: the test harness captures `eprintln!` of a
        // passing test, and this must be seen.
        let _ = writeln!(
            std::io::stderr().lock(),
            "*** SKIPPED: {URL_VARIABLE} is not set, so this check did NOT run against a real KurrentDB server \
             (it runs against the protocol double in conformance_double.rs, which is not a real server) ***"
        );
        return None;
    };
    // A fresh namespace per test: an empty ledger on a shared server.
    let namespace = format!("t{}", uuid::Uuid::now_v7().simple());
    let options = KurrentDbOptions { namespace, ..KurrentDbOptions::default() };
    let store = KurrentDbStore::connect_with_options(&url, options, clock)
        .await
        .unwrap_or_else(|e| panic!("{URL_VARIABLE} is set, but connecting failed: {e}"));
    let store: Arc<dyn EventStore> = Arc::new(store);
    let guard: StoreGuard = Box::new(());
    Some((store, guard))
}

seatledger_store::conformance_suite!(if_configured real_store);
