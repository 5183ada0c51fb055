//! Reading the log ahead of the fold.
//!
//! A replay has three steps per event: read the row, decode its payload,
//! fold it into projections. Done one after the other on one thread, a
//! machine's other cores sit idle. [`visit_decoded`] runs them as a
//! pipeline instead: while the caller folds one page, the next page is
//! already being read (on the store's own threads) and decoded (on a
//! blocking thread). The fold still sees every event exactly once, in
//! global order, on the caller's task; only the work before it moves.
//!
//! Memory stays bounded by the pipeline's depth: at most [`AHEAD`] decoded
//! pages wait for the fold, plus the one being decoded and the one being
//! folded, each at most [`PAGE`] events.

use crate::decode::{decode_stored, DecodedEvent};
use crate::invoicing::AsOf;
use seatledger_store::{EventStore, StoreError, StoredEvent};
use std::ops::ControlFlow;
use tokio::sync::mpsc;

/// Events read and decoded per step of the pipeline.
pub const PAGE: usize = 2_000;
/// Decoded pages that may wait for the fold.
pub const AHEAD: usize = 2;
/// The fold lets the reading side move on after this many events: the
/// pipeline runs on the caller's task, and a page must not wait for a whole
/// page to be folded before its next read is started.
const YIELD_EVERY: usize = 64;

/// What the visitor is shown, in global order.
#[derive(Debug)]
pub enum Visit<'a> {
    /// One stored event; `decoded` is `None` for a stream that is not the
    /// ledger's own (a server's system stream).
    Event { position: u64, decoded: Option<&'a DecodedEvent> },
    /// Every event up to `last` has been shown.
    PageEnd { last: u64 },
}

/// Why the events could not all be visited.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A payload that does not decode; every event before it was visited.
    #[error("cannot read the ledger: {0}")]
    Unreadable(String),
}

/// A page as the fold receives it: the events decoded up to the first that
/// did not decode, and that one's error.
struct Page {
    events: Vec<(u64, Option<DecodedEvent>)>,
    error: Option<String>,
    /// The page was cut by the [`AsOf`]: nothing after it is read.
    last_page: bool,
}

/// Visit every event after position `after` known `until`, in order, with
/// reading and decoding running ahead of `visit`. Stops early when `visit`
/// breaks; returns the position of the last event visited (`after` when
/// none).
pub async fn visit_decoded(
    store: &dyn EventStore,
    after: u64,
    until: AsOf,
    mut visit: impl FnMut(Visit<'_>) -> ControlFlow<()>,
) -> Result<u64, ReadError> {
    // Three stages on one task, each waiting on its own thread: rows read
    // on the store's threads, payloads decoded on a blocking thread, and
    // the fold here. Each hands pages to the next through a short queue.
    // A page of rows comes with whether it is the last one `until` needs.
    let (rows_tx, mut rows_rx) = mpsc::channel::<Result<(Vec<StoredEvent>, bool), StoreError>>(1);
    let (pages_tx, mut pages_rx) = mpsc::channel::<Result<Page, StoreError>>(AHEAD);
    let reading = async move {
        let mut after = after;
        while !rows_tx.is_closed() {
            let mut rows = match store.read_all(after, PAGE).await {
                Ok(rows) if rows.is_empty() => return,
                Ok(rows) => rows,
                Err(e) => {
                    // The fold stops at this error; nothing after it is read.
                    let _ = rows_tx.send(Err(e)).await;
                    return;
                }
            };
            after = rows.last().map_or(after, |e| e.position);
            // A page that reaches past `until` is cut there, and is the last.
            let admitted = rows.iter().position(|e| !until.admits(e)).unwrap_or(rows.len());
            let last_page = admitted < rows.len();
            rows.truncate(admitted);
            if rows_tx.send(Ok((rows, last_page))).await.is_err() || last_page {
                return;
            }
        }
    };
    let decoding = async move {
        while let Some(rows) = rows_rx.recv().await {
            let page = match rows {
                Ok((rows, last_page)) => Ok(decode_page(rows, last_page).await),
                Err(e) => Err(e),
            };
            let more = matches!(&page, Ok(p) if !p.last_page && p.error.is_none());
            if pages_tx.send(page).await.is_err() || !more {
                return;
            }
        }
    };
    let folding = async move {
        let mut visited = after;
        while let Some(page) = pages_rx.recv().await {
            let page = page?;
            for (n, (position, decoded)) in page.events.iter().enumerate() {
                visited = *position;
                if visit(Visit::Event { position: *position, decoded: decoded.as_ref() }).is_break() {
                    return Ok(visited);
                }
                if n % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
            if let Some(error) = page.error {
                return Err(ReadError::Unreadable(error));
            }
            if !page.events.is_empty() && visit(Visit::PageEnd { last: visited }).is_break() {
                return Ok(visited);
            }
            if page.last_page {
                break;
            }
        }
        // Dropping the receiver here tells the decoding side to stop, and
        // its dropping tells the reading side.
        Ok(visited)
    };
    let ((), (), folded) = tokio::join!(reading, decoding, folding);
    folded
}

/// Decode `stored` on a blocking thread, stopping at the first payload that
/// does not decode.
async fn decode_page(stored: Vec<StoredEvent>, last_page: bool) -> Page {
    let decoding = tokio::task::spawn_blocking(move || {
        let mut events = Vec::with_capacity(stored.len());
        for e in stored {
            let position = e.position;
            match decode_stored(e) {
                Ok(decoded) => events.push((position, decoded)),
                Err(error) => return Page { events, error: Some(error), last_page: true },
            }
        }
        Page { events, error: None, last_page }
    });
    match decoding.await {
        Ok(page) => page,
        // Decoding returns errors for bad payloads; a panic is a broken
        // invariant of the codec, and is the caller's panic too.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Page { events: Vec::new(), error: Some(format!("the decoding task stopped: {e}")), last_page: true },
    }
}
