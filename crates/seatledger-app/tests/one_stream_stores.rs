//! Command files on a store that appends one stream at a time (KurrentDB):
//! decided whole first, so a refused line still appends nothing; then
//! appended command by command, each idempotent by its command id.

mod common;

use common::Wrapped;
use seatledger_app::{AppError, CommandHandler, CommandMeta, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::Command;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use std::collections::HashSet;
use std::sync::Arc;

/// Golden scenario 12's commands: the catalog stream and one workspace.
fn lines(extra: Option<&str>) -> Vec<(usize, Command, CommandMeta)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/invoices/12-dispute/commands.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = vec![];
    for (i, line) in text.lines().chain(extra).enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let env = parse_command(line).unwrap();
        let meta = CommandMeta::new("file@test", "cli", uuid::Uuid::from_u128(0xf11e_0000 + i as u128));
        out.push((i + 1, Command { at: env.at.unwrap(), body: env.body }, meta));
    }
    out
}

fn one_stream_store() -> Arc<Wrapped> {
    Arc::new(Wrapped {
        one_stream_at_a_time: true,
        ..Wrapped::new(Arc::new(MemoryStore::new(Arc::new(SystemClock))) as Arc<dyn EventStore>)
    })
}

async fn stream_and_types(store: &dyn EventStore) -> Vec<(String, u64, String)> {
    let all = store.read_all(0, 10_000).await.unwrap();
    all.into_iter().map(|e| (e.stream.to_string(), e.stream_version, e.event_type.to_string())).collect()
}

#[tokio::test]
async fn a_file_over_several_streams_is_appended_command_by_command() {
    let store = one_stream_store();
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1)));
    let file = lines(None);
    let report = handler.apply_all(&file, false).await.unwrap();
    assert_eq!(report.applied, file.len());
    assert!(report.rejected.is_empty());
    let calls = store.appends.lock().unwrap().clone();
    assert!(calls.iter().all(|streams| streams.iter().collect::<HashSet<_>>().len() == 1), "{calls:?}");
    let streams: HashSet<&String> = calls.iter().flatten().collect();
    assert!(streams.len() >= 2, "the file spans the catalog and a workspace: {streams:?}");

    // The same file on an atomic store gives the same streams, versions and types.
    let atomic: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    CommandHandler::new(atomic.clone(), Arc::new(SequentialIds::new(1))).apply_all(&file, false).await.unwrap();
    assert_eq!(stream_and_types(store.as_ref()).await, stream_and_types(atomic.as_ref()).await);

    // Applying it again appends nothing: every command id is known.
    let again = handler.apply_all(&file, false).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, file.len()));
}

#[tokio::test]
async fn a_refused_line_still_appends_nothing() {
    let store = one_stream_store();
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1)));
    // A quantity change for a subscription that does not exist: refused.
    let bad = r#"{"command":"change_quantity","workspace":"dispute","at":"2024-03-02T00:00:00Z","actor":"a","channel":"portal","subscription":"nope","quantity":2,"order":{"ordered_by":"a"},"subscription_channel":"portal"}"#;
    let file = lines(Some(bad));
    let err = handler.apply_all(&file, false).await.unwrap_err();
    let AppError::FileRejected(rejected) = err else { panic!("expected the file to be refused, got {err}") };
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].line, file.last().unwrap().0);
    assert_eq!(store.head_position().await.unwrap(), 0, "nothing was appended");
}
