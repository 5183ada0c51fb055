//! The projection runner: catch-up, then live, with stored checkpoints.

use chrono::{TimeZone, Utc};
use seatledger_app::{CommandHandler, CommandMeta, ProjectionRunner, SequentialIds};
use seatledger_codec::parse_command;
use seatledger_domain::Command;
use seatledger_projections::audit::AuditLog;
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, MemoryStore, SystemClock};
use std::sync::Arc;
use std::time::Duration;

async fn apply(handler: &CommandHandler, n: u128, line: &str) {
    let env = parse_command(line).unwrap();
    let cmd =
        Command { at: env.at.unwrap_or_else(|| Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()), body: env.body };
    handler.handle(&cmd, &CommandMeta::new("t", "cli", uuid::Uuid::from_u128(n))).await.unwrap();
}

fn group(i: u32) -> String {
    format!(r#"{{"command":"create_group","workspace":"w","group":"g{i}","name":"G{i}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_catches_up_then_receives_live_events_and_saves_its_checkpoint() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_700_000_000_000)));
    apply(&handler, 1, r#"{"command":"create_workspace","workspace":"w","name":"W","billing_mode":"single","created_on":"2024-03-01"}"#).await;
    apply(&handler, 2, &group(1)).await;

    let runner = ProjectionRunner::new(store.clone());
    let mut audit = AuditLog::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = async {
        // Live appends while the runner follows.
        for i in 2..=4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            apply(&handler, 10 + u128::from(i), &group(i)).await;
        }
        // Wait until the runner has saved a checkpoint at the head.
        for _ in 0..500 {
            let saved = store.load_checkpoint("audit-log").await.unwrap();
            if saved.is_some_and(|c| c.position == 5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(()).unwrap();
    };
    let report = {
        let mut projections = [&mut audit as &mut dyn Projection];
        let follow = runner.follow(&mut projections, async {
            let _ = stop_rx.await;
        });
        tokio::join!(follow, producer).0.unwrap()
    };
    assert_eq!(report.position, 5);
    assert_eq!(audit.entries.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);

    // A later run resumes from the checkpoint: its state comes back whole and
    // nothing is folded twice.
    let mut again = AuditLog::default();
    let mut changes = ChangeLog::default();
    let report = runner.run(&mut [&mut again, &mut changes], &mut |_, _| {}).await.unwrap();
    assert_eq!(again, audit);
    assert_eq!(report.events_read, 5, "the change log had no checkpoint and read from zero");
}
