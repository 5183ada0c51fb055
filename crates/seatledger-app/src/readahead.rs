//! Reading the log ahead of the fold.
//!
//! A replay has three steps per event: read the row, decode its payload,
//! fold it into projections. Done one after the other on one thread, a
//! machine's other cores sit idle. [`visit_decoded`] runs them as a
//! pipeline instead: while the caller folds one page, the next page is
//! already being read (on the store's own threads) and decoded (on a
//! blocking thread). The fold still sees every event exactly once, in
//! global order; only the work before it moves. [`fold_decoded`], folding
//! into several projections, also shares them between the caller's thread
//! and a second one, each projection on one thread at a time.
//!
//! Memory stays bounded by the pipeline's depth: at most [`AHEAD`] decoded
//! pages wait for the fold, plus the one being decoded and the one being
//! folded, each at most [`PAGE`] events.

use crate::decode::{decode_stored, DecodedEvent};
use crate::invoicing::AsOf;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, StoreError, StoredEvent};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{Duration, Instant};
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
    pipeline(store, after, until, |mut pages_rx| async move {
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
    })
    .await
}

/// Fold every event after position `after` known `until` into
/// `projections`, with reading and decoding running ahead. Stops once every
/// projection is complete ([`Projection::is_complete`]); returns the position
/// of the last event folded (`after` when none).
///
/// With two projections or more on a machine with two cores or more, the
/// projections are shared between this thread and one more, a chunk of
/// [`CHUNK`] events at a time: each projection still sees every event up to
/// its completion, once and in order, and no two threads touch one
/// projection; what changes is only which thread applies it. The split
/// follows the time each projection has taken so far, heaviest first onto
/// the lighter side. A chunk blocks the caller's task for a millisecond or
/// two, as a page of 64 events did before.
pub async fn fold_decoded(
    store: &dyn EventStore,
    after: u64,
    until: AsOf,
    projections: &mut [&mut dyn Projection],
) -> Result<u64, ReadError> {
    let parallel = projections.len() >= 2 && cores() >= 2;
    pipeline(store, after, until, |mut pages_rx| async move {
        let mut folded = after;
        let mut spent = vec![Duration::ZERO; projections.len()];
        while let Some(page) = pages_rx.recv().await {
            let page = page?;
            // Alone, a chunk is what the fold did between two looks at the
            // pipeline before; shared, it is long enough to pay for a thread.
            for chunk in page.events.chunks(if parallel { CHUNK } else { YIELD_EVERY }) {
                // With no projection, none can complete: read to the end.
                let stop = if projections.is_empty() {
                    None
                } else if parallel {
                    fold_chunk_on_two_threads(chunk, projections, &mut spent)
                } else {
                    fold_chunk(chunk, projections.iter_mut().zip(spent.iter_mut()))
                };
                if let Some(stop) = stop {
                    return Ok(chunk[stop].0);
                }
                folded = chunk.last().map_or(folded, |(position, _)| *position);
                tokio::task::yield_now().await;
            }
            if let Some(error) = page.error {
                return Err(ReadError::Unreadable(error));
            }
            if page.last_page {
                break;
            }
        }
        Ok(folded)
    })
    .await
}

/// The cores this process may use, asked once (on Linux the answer reads
/// cgroup files).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Events a fold shared between two threads applies per hand-over to the
/// second thread, and between two looks at the pipeline: a thread is
/// started per chunk, a few tens of microseconds against a millisecond or
/// two of work.
pub const CHUNK: usize = 512;

/// Apply `chunk` to each projection in turn, adding the time each takes to
/// the time beside it. Returns the index of the event after which every
/// projection is complete, if all are by the end of the chunk. A projection
/// is not applied past its completion: later events cannot change it, by
/// [`Projection::is_complete`]'s contract.
fn fold_chunk<'p, 'q: 'p>(
    chunk: &[(u64, Option<DecodedEvent>)],
    projections: impl Iterator<Item = (&'p mut &'q mut dyn Projection, &'p mut Duration)>,
) -> Option<usize> {
    let mut last_completion = Some(0);
    for (projection, spent) in projections {
        let started = Instant::now();
        let completed = apply_until_complete(chunk, &mut **projection);
        *spent += started.elapsed();
        last_completion = last_completion.zip(completed).map(|(a, b)| a.max(b));
    }
    last_completion
}

/// Apply `chunk` to one projection; the index of the event after which it is
/// complete, if it is by the end.
fn apply_until_complete(chunk: &[(u64, Option<DecodedEvent>)], projection: &mut dyn Projection) -> Option<usize> {
    // Complete before the chunk: it stopped within an earlier one while
    // another projection was still going, and needs none of these events.
    if projection.is_complete() {
        return Some(0);
    }
    for (index, (_, decoded)) in chunk.iter().enumerate() {
        if let Some(decoded) = decoded {
            projection.apply(&decoded.recorded());
        }
        if projection.is_complete() {
            return Some(index);
        }
    }
    None
}

/// [`fold_chunk`] with the projections shared between this thread and a
/// scoped second one, balanced by the time each has taken so far. Folds on
/// this thread alone when fewer than two projections still take events,
/// when the chunk is short, or when no thread can be started.
fn fold_chunk_on_two_threads(
    chunk: &[(u64, Option<DecodedEvent>)],
    projections: &mut [&mut dyn Projection],
    spent: &mut [Duration],
) -> Option<usize> {
    let working = projections.iter().filter(|p| !p.is_complete()).count();
    if working < 2 || chunk.len() < YIELD_EVERY {
        return fold_chunk(chunk, projections.iter_mut().zip(spent.iter_mut()));
    }
    // Heaviest first, each onto the side with less time so far; a complete
    // projection weighs nothing, as it takes no more events.
    let weight = |i: usize| if projections[i].is_complete() { Duration::ZERO } else { spent[i] };
    let mut order: Vec<usize> = (0..projections.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(i)));
    let mut elsewhere = vec![false; projections.len()];
    let (mut here_total, mut there_total) = (Duration::ZERO, Duration::ZERO);
    let (mut here_count, mut there_count) = (0, 0);
    for i in order {
        // Ties (the first chunk, when nothing is timed yet) alternate.
        if there_total < here_total || (there_total == here_total && there_count < here_count) {
            elsewhere[i] = true;
            there_total += weight(i);
            there_count += 1;
        } else {
            here_total += weight(i);
            here_count += 1;
        }
    }
    let (mut here, there): (Vec<_>, Vec<_>) =
        projections.iter_mut().zip(spent.iter_mut()).zip(elsewhere).partition(|(_, elsewhere)| !elsewhere);
    // The other side, for whichever thread folds it: the second one, or
    // this one when no thread can be started (never contended).
    let other_side = Mutex::new(there);
    let fold_other_side = || {
        let mut side = other_side.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        fold_chunk(chunk, side.iter_mut().map(|((p, s), _)| (&mut **p, &mut **s)))
    };
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new().name("seatledger-fold".to_owned()).spawn_scoped(scope, fold_other_side);
        let completed_here = fold_chunk(chunk, here.iter_mut().map(|((p, s), _)| (&mut **p, &mut **s)));
        let completed_there = match other {
            // A panic in a projection is a broken invariant there: it is ours too.
            Ok(other) => other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::debug!(error = %e, "no second thread for the fold; folding on one");
                fold_other_side()
            }
        };
        completed_here.zip(completed_there).map(|(a, b)| a.max(b))
    })
}

/// Run the read and decode stages ahead of `consume`, which receives the
/// decoded pages in order. Each stage waits on its own thread; all three
/// run on the caller's task and hand pages on through short queues.
async fn pipeline<T, F>(
    store: &dyn EventStore,
    after: u64,
    until: AsOf,
    consume: impl FnOnce(mpsc::Receiver<Result<Page, StoreError>>) -> F,
) -> Result<T, ReadError>
where
    F: std::future::Future<Output = Result<T, ReadError>>,
{
    // A page of rows comes with whether it is the last one `until` needs.
    let (rows_tx, mut rows_rx) = mpsc::channel::<Result<(Vec<StoredEvent>, bool), StoreError>>(1);
    let (pages_tx, pages_rx) = mpsc::channel::<Result<Page, StoreError>>(AHEAD);
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
    let ((), (), consumed) = tokio::join!(reading, decoding, consume(pages_rx));
    consumed
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
