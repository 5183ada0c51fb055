//! Reads: a small pool of read-only connections, used on tokio's blocking
//! threads. WAL lets them read a consistent snapshot while the writer
//! commits, so reads never queue behind writes.

use crate::schema::open_reader;
use rusqlite::Connection;
use seatledger_store::StoreError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Semaphore;

/// How many reads run at once; more wait for a permit rather than pile up
/// blocking threads and connections.
pub(crate) const MAX_READERS: usize = 4;

#[derive(Debug)]
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    /// A pool for `path`, with one connection opened at once so that a file
    /// that cannot be read fails at open rather than at the first read.
    pub(crate) fn open(path: PathBuf) -> Result<Self, StoreError> {
        let first = open_reader(&path)?;
        Ok(Self { path, idle: Mutex::new(vec![first]), permits: Semaphore::new(MAX_READERS) })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The list is only pushed to and popped from; a panic elsewhere
        // cannot leave it half-changed.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `read` on a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Backend("the sqlite read pool is closed".to_owned()))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = pool.idle().pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
            };
            let result = read(&conn);
            pool.idle().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a sqlite read task failed: {e}")))?
    }
}
