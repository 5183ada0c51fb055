//! WAL checkpoints, copied on their own thread, off the commit path.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint
//! copies them back into the database file. SQLite's default runs that
//! checkpoint inside the commit that crosses 1,000 WAL pages: the writer
//! thread — the one thread every append goes through — copies every page
//! itself (8.7 % of the batched-append profile, 10 % of the 64-appender
//! one; see `docs/benchmarks.md`).
//!
//! So the writer's connection has `wal_autocheckpoint` off, and once about
//! as much has been committed as SQLite's own threshold ([`DUE_EVENTS`],
//! [`DUE_COMMITS`]) it wakes this thread, which runs a `PASSIVE`
//! checkpoint on a connection of its own: it copies what no reader still
//! needs, never blocks the writer or a reader, and runs at most once per
//! [`PAUSE`].
//!
//! Under a steady load such a checkpoint never copies the whole WAL (new
//! frames arrive while it copies), and SQLite starts a WAL over from the
//! top only once all of it is copied; left alone the WAL grows without
//! end (750 MB in five seconds of 64 appenders), and every commit then
//! extends the file, which makes its fsync flush the file's size as well.
//! So when the thread finds [`RESTART_FRAMES`] in the WAL, the writer runs
//! one `PASSIVE` checkpoint itself between two commits, copying only the
//! few pages the thread has not, and its next transaction starts the WAL
//! over. The writer still pays that checkpoint's fsyncs, as before; the
//! copying of the pages is what moved.
//!
//! Durability does not change: an append is durable once its commit is in
//! the fsynced WAL, before any checkpoint; checkpoints fsync as SQLite's
//! own do. When the store is dropped the thread stops first, so that the
//! writer's connection is the last to close and SQLite folds the whole WAL
//! back into the file and deletes it.

use rusqlite::Connection;
use seatledger_store::StoreError;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two checkpoints.
pub(crate) const PAUSE: Duration = Duration::from_millis(50);

/// A checkpoint is due once this many events, or this many commits, have
/// been written since the last: about the 1,000 WAL pages at which SQLite
/// itself would checkpoint (single appends dirty four or five pages per
/// commit, appends of many events about one page per event and a half).
/// Checkpointing more often than that costs every append: a checkpoint's
/// two fsyncs queue on the same disk as the commits' own.
pub(crate) const DUE_EVENTS: u64 = 1_000;
pub(crate) const DUE_COMMITS: u64 = 200;

/// WAL frames (pages) beyond which the writer lets the WAL restart (see
/// above). SQLite's own threshold: a WAL that grows to 32 MiB before it
/// restarts, measured, made single appends on a new file 10 % slower.
pub(crate) const RESTART_FRAMES: u64 = 1_000;

/// What the checkpointer has done, for [`crate::CheckpointStats`].
#[derive(Debug, Default)]
pub(crate) struct CheckpointCounters {
    /// Checkpoints run by the thread.
    pub(crate) runs: AtomicU64,
    /// Checkpoints the writer ran to restart the WAL.
    pub(crate) restarts: AtomicU64,
    /// The last checkpoint found at least [`RESTART_FRAMES`] in the WAL.
    pub(crate) restart_due: AtomicBool,
    /// The last checkpoint's answer: frames in the WAL, and how many of
    /// them are now in the database file.
    pub(crate) wal_frames: AtomicU64,
    pub(crate) copied_frames: AtomicU64,
}

/// The handle the writer keeps: told of every commit; dropped, it stops the
/// thread and waits for it.
pub(crate) struct Checkpointer {
    counters: Arc<CheckpointCounters>,
    /// Written since the thread was last woken.
    events_since: u64,
    commits_since: u64,
    nudge: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Open a connection of its own to `path` and start the thread.
    pub(crate) fn start(path: &Path, counters: Arc<CheckpointCounters>) -> Result<Self, StoreError> {
        let conn = crate::schema::open_checkpointer(path)?;
        let shown = path.display();
        let (nudge, nudged) = sync_channel(1);
        let theirs = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("seatledger-sqlite-checkpointer".to_owned())
            .spawn(move || run(&conn, &nudged, &theirs))
            .map_err(|e| StoreError::Backend(format!("starting the checkpointer thread for `{shown}`: {e}")))?;
        Ok(Self { counters, events_since: 0, commits_since: 0, nudge: Some(nudge), thread: Some(thread) })
    }

    /// Called by the writer between two transactions on its own connection:
    /// when the WAL has grown past [`RESTART_FRAMES`], copy what is left of
    /// it so that the next transaction starts it over.
    pub(crate) fn restart_if_due(&self, writer: &Connection) {
        if !self.counters.restart_due.swap(false, Ordering::Relaxed) {
            return;
        }
        match writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0)) {
            Ok(_) => {
                self.counters.restarts.fetch_add(1, Ordering::Relaxed);
            }
            // Nothing is lost: the thread goes on copying, and the next
            // report sets the flag again.
            Err(e) => tracing::warn!(error = %e, "sqlite checkpoint before a WAL restart failed"),
        }
    }

    /// A commit of `events` events: once [`DUE_EVENTS`] or [`DUE_COMMITS`]
    /// have passed, a checkpoint is due (after the pause), and only the
    /// commit that makes it due wakes the thread.
    pub(crate) fn committed(&mut self, events: u64) {
        self.events_since += events;
        self.commits_since += 1;
        if self.events_since < DUE_EVENTS && self.commits_since < DUE_COMMITS {
            return;
        }
        self.events_since = 0;
        self.commits_since = 0;
        if let Some(nudge) = &self.nudge {
            match nudge.try_send(()) {
                // Full: a nudge is already waiting, which is all it needs.
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::error!("the sqlite checkpointer has stopped; the WAL is no longer checkpointed")
                }
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel is what tells the thread to stop.
        drop(self.nudge.take());
        crate::join(self.thread.take(), "checkpointer");
    }
}

fn run(conn: &Connection, nudged: &Receiver<()>, counters: &CheckpointCounters) {
    // Asleep until a checkpoint is due.
    let mut due = nudged.recv().is_ok();
    while due {
        let started = Instant::now();
        checkpoint(conn, counters);
        // Wait out the pause, noting whether another checkpoint fell due
        // meanwhile, but stop at once when the writer goes.
        let mut again = false;
        while let Some(left) = PAUSE.checked_sub(started.elapsed()) {
            match nudged.recv_timeout(left) {
                Ok(()) => again = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        due = again || nudged.recv().is_ok();
    }
}

/// One `PASSIVE` checkpoint: copy what no reader still needs.
fn checkpoint(conn: &Connection, counters: &CheckpointCounters) {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    }) {
        Ok((busy, log, copied)) => {
            // -1 means "not in WAL mode", which this store never leaves.
            let frames = u64::try_from(log).unwrap_or(0);
            counters.wal_frames.store(frames, Ordering::Relaxed);
            counters.copied_frames.store(u64::try_from(copied).unwrap_or(0), Ordering::Relaxed);
            counters.runs.fetch_add(1, Ordering::Relaxed);
            if frames >= RESTART_FRAMES {
                counters.restart_due.store(true, Ordering::Relaxed);
            }
            tracing::trace!(busy, log, copied, "sqlite checkpoint");
        }
        // A failed checkpoint loses nothing: the frames stay in the WAL and
        // the next one copies them.
        Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed; retrying after the next commit"),
    }
}
