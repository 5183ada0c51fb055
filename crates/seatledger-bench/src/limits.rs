//! The machine's limits, measured in the same directory as the ledger:
//! what durable appends and replays cost with nothing of seatledger in the way.

use crate::report::Percentiles;
use anyhow::Context;
use rusqlite::Connection;
use seatledger_store::StoredEvent;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// One durable append: `write` of `record` bytes at the end of a file, then
/// `fdatasync` (`File::sync_data`). `n` times; each latency kept.
pub fn fdatasync_loop(dir: &Path, n: usize, record: usize) -> anyhow::Result<(f64, Percentiles)> {
    let path = dir.join("raw-fdatasync.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let buf = vec![b'x'; record];
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        lat.push(t.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    Ok((rate, Percentiles::of(&mut lat)))
}

fn raw_sqlite(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
           stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,
           UNIQUE (stream, version));",
    )?;
    Ok(conn)
}

/// Raw rusqlite: `n` transactions of `batch` INSERTs each (WAL,
/// `synchronous=FULL`, a table shaped like the ledger's with its two unique
/// indexes), timing each COMMIT. Returns events/s and per-transaction latency.
pub fn rusqlite_loop(dir: &Path, n: usize, batch: usize, payload: &str) -> anyhow::Result<(f64, Percentiles)> {
    let path = dir.join(format!("raw-rusqlite-{batch}.db"));
    let mut conn = raw_sqlite(&path)?;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    let mut version = 0i64;
    for _ in 0..n {
        let t = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events (id, stream, version, type, payload) VALUES (?1, 'bench-raw', ?2, 'ReservationMade', ?3)",
            )?;
            for _ in 0..batch {
                stmt.execute((uuid::Uuid::now_v7().to_string(), version, payload))?;
                version += 1;
            }
        }
        tx.commit()?;
        lat.push(t.elapsed());
    }
    Ok(finish(conn, &path, (n * batch) as f64, start, lat))
}

/// How [`rusqlite_streams`] lays out and writes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsShape {
    /// The file as seatledger's store lays it out, and every statement its
    /// writer runs for a single-event append of fresh uuid v7 ids: the
    /// stream's version (a seek in the `(stream, stream_version)` index) and
    /// the INSERT of all sixteen columns (the command-id probe and the
    /// event-id lookup are skipped for such ids since lever 18, no
    /// `streams` row is updated since lever 21, since lever 30 the
    /// stream is a number the writer already knows; lever 31 changes nothing
    /// here, a one-event append being one run of its command); 64 tasks that draw their ids
    /// before they queue can hand the writer an id below one it has just
    /// stored, which it then looks up, so in that shape the row is a little
    /// kinder to SQLite than the writer's work). Left out is what is
    /// seatledger's own: the hash chain (the link is a constant), the codec,
    /// the channel to a writer thread, the tasks.
    Seatledger,
    /// The least a one-row-per-event log can store: ids and the link as
    /// BLOBs, the stream as a number, and the INSERT alone, with or without
    /// the `(stream, stream_version)` index that reading a stream needs.
    Compact { stream_index: bool },
}

impl StreamsShape {
    pub fn label(self) -> &'static str {
        match self {
            StreamsShape::Seatledger => "seatledger's schema and statements",
            StreamsShape::Compact { stream_index: true } => "compact rows, INSERT only, with a (stream, version) index",
            StreamsShape::Compact { stream_index: false } => "compact rows, INSERT only, no per-stream index",
        }
    }
}

/// The shape of 64 tasks appending one event each to streams of their own,
/// as SQLite alone serves it: COMMITs of `per_commit` single-event appends
/// spread round-robin over `streams` streams, on one plain rusqlite
/// connection (WAL, `synchronous=FULL`), for `duration`. Returns events/s
/// and per-COMMIT latency.
pub fn rusqlite_streams(
    dir: &Path,
    duration: Duration,
    streams: usize,
    per_commit: usize,
    shape: StreamsShape,
    payload: &str,
) -> anyhow::Result<(f64, Percentiles)> {
    let path = dir.join(format!("raw-rusqlite-{streams}-streams.db"));
    // A file left by an interrupted run would start the positions over.
    remove_database(&path);
    let mut conn = match shape {
        StreamsShape::Seatledger => seatledger_file(&path)?,
        StreamsShape::Compact { stream_index } => {
            let conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.execute_batch(&format!(
                "CREATE TABLE events (position INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, stream INTEGER NOT NULL,
                   stream_version INTEGER NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL,
                   recorded_at_us INTEGER NOT NULL, effective_at_us INTEGER NOT NULL, actor TEXT NOT NULL,
                   channel TEXT NOT NULL, correlation_id BLOB NOT NULL, causation_id BLOB, command_id BLOB,
                   payload TEXT NOT NULL, hash BLOB NOT NULL{}) STRICT;
                 CREATE INDEX events_by_command_id ON events (command_id) WHERE command_id IS NOT NULL;",
                if stream_index { ", UNIQUE (stream, stream_version)" } else { "" }
            ))?;
            conn
        }
    };
    conn.pragma_update(None, "synchronous", "FULL")?;
    let names: Vec<String> = (0..streams).map(|s| format!("workspace-raw-{s}")).collect();
    // seatledger's writer knows a stream's number once it has seen it.
    let numbers = match shape {
        StreamsShape::Seatledger => {
            names.iter().map(|name| new_stream(&conn, name)).collect::<anyhow::Result<Vec<_>>>()?
        }
        StreamsShape::Compact { .. } => Vec::new(),
    };
    let mut lat = Vec::new();
    let mut appended = 0usize;
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for _ in 0..per_commit {
            let (stream, round) = (appended % streams, appended / streams);
            appended += 1;
            let position = i64::try_from(appended)?;
            let (id, command) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
            match shape {
                StreamsShape::Seatledger => seatledger_append(&tx, position, numbers[stream], id, command, payload)?,
                StreamsShape::Compact { .. } => {
                    tx.prepare_cached(
                        "INSERT INTO events (position, id, stream, stream_version, type, schema_version, \
                         recorded_at_us, effective_at_us, actor, channel, correlation_id, causation_id, command_id, \
                         payload, hash) VALUES (?1, ?2, ?3, ?4, 'ReservationMade', 1, ?5, ?5, 'ops@bench.example', \
                         'portal', ?6, NULL, ?6, ?7, ?8)",
                    )?
                    .execute(rusqlite::params![
                        position,
                        &id.as_bytes()[..],
                        i64::try_from(stream)?,
                        i64::try_from(round)?,
                        1_700_000_000_000_000 + position,
                        &command.as_bytes()[..],
                        payload,
                        &[0u8; 32][..],
                    ])?;
                }
            }
        }
        tx.commit()?;
        lat.push(t.elapsed());
    }
    Ok(finish(conn, &path, appended as f64, start, lat))
}

/// A stream's row in seatledger's `streams` table, as its writer adds one:
/// the number its events are stored under.
fn new_stream(conn: &Connection, name: &str) -> anyhow::Result<i64> {
    conn.execute("INSERT INTO streams (name) VALUES (?1)", [name])?;
    Ok(conn.last_insert_rowid())
}

/// The statements seatledger's SQLite writer runs for one single-event
/// append to a stream whose number it knows, on its own schema (see
/// `crates/seatledger-store-sqlite/src/writer.rs`).
fn seatledger_append(
    tx: &Connection,
    position: i64,
    stream: i64,
    id: uuid::Uuid,
    command: uuid::Uuid,
    payload: &str,
) -> anyhow::Result<()> {
    // No command-id probe and no event-id lookup: the writer skips both for
    // uuid v7 ids above the greatest it has stored (lever 18), which every
    // id drawn here is.
    let version = next_version(tx, stream)?;
    insert_seatledger_row(tx, position, stream, version, id, (command, 1), payload)
}

/// The stream's next version, as the writer reads it: one seek to the end
/// of the stream's range in the `(stream, stream_version)` index.
fn next_version(tx: &Connection, stream: i64) -> anyhow::Result<i64> {
    use rusqlite::OptionalExtension;
    let current: Option<i64> = tx
        .prepare_cached("SELECT stream_version FROM events WHERE stream = ?1 ORDER BY stream_version DESC LIMIT 1")?
        .query_row([stream], |row| row.get(0))
        .optional()?;
    Ok(current.map_or(0, |v| v + 1))
}

/// The writer's INSERT of one event, all sixteen columns, ids and the link
/// as BLOBs, the stream as its number.
fn insert_seatledger_row(
    tx: &Connection,
    position: i64,
    stream: i64,
    version: i64,
    id: uuid::Uuid,
    (command, command_run): (uuid::Uuid, i64),
    payload: &str,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (position, id, stream, stream_version, type, schema_version, recorded_at_us, \
         effective_at_us, actor, channel, correlation_id, causation_id, command_id, payload, hash, command_run) \
         VALUES (?1, ?2, ?3, ?4, 'ReservationMade', 1, ?5, ?5, 'ops@bench.example', 'portal', ?6, NULL, ?6, ?7, ?8, \
         ?9)",
    )?
    .execute(rusqlite::params![
        position,
        &id.as_bytes()[..],
        stream,
        version,
        1_700_000_000_000_000 + position,
        &command.as_bytes()[..],
        payload,
        &[0u8; 32][..],
        command_run
    ])?;
    Ok(())
}

/// Batched appends as SQLite alone serves them with seatledger's schema and
/// statements: COMMITs of one append of `batch` events to one stream (the
/// version read once per append, the INSERT once per event, the command id
/// indexed on the first event only since lever 31),
/// for `duration`. Left out, as in [`StreamsShape::Seatledger`]: the hash
/// chain, the codec, the writer thread. Returns events/s and per-COMMIT
/// latency.
pub fn rusqlite_seatledger_batches(
    dir: &Path,
    duration: Duration,
    batch: usize,
    payload: &str,
) -> anyhow::Result<(f64, Percentiles)> {
    let path = dir.join(format!("raw-rusqlite-seatledger-{batch}.db"));
    // A file left by an interrupted run would start the positions over.
    remove_database(&path);
    let mut conn = seatledger_file(&path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // As seatledger's writer: no checkpoint inside a COMMIT. Nothing else
    // checkpoints either, so for its few seconds the row is SQLite at its
    // best (a 10,000-event COMMIT writes about 1,250 WAL frames, and with
    // SQLite's default of 1,000 every COMMIT would copy them back too:
    // medians 315,276 against 361,145 events/s in three alternations of
    // `child --mode rawbatch:10000`, 13 % slower).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let stream = new_stream(&conn, "workspace-raw-batches")?;
    let mut lat = Vec::new();
    let mut appended = 0i64;
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let first = next_version(&tx, stream)?;
        let command = uuid::Uuid::now_v7();
        let length = i64::try_from(batch)?;
        for k in 0..length {
            appended += 1;
            // The append's length on its first event, 0 on the rest.
            let run = if k == 0 { length } else { 0 };
            insert_seatledger_row(&tx, appended, stream, first + k, uuid::Uuid::now_v7(), (command, run), payload)?;
        }
        tx.commit()?;
        lat.push(t.elapsed());
    }
    Ok(finish(conn, &path, appended as f64, start, lat))
}

/// A file laid out by seatledger's store, which then closes it: the rest is
/// plain SQL on one connection.
fn seatledger_file(path: &Path) -> anyhow::Result<Connection> {
    drop(crate::ledger::open(path)?);
    Ok(Connection::open(path)?)
}

/// Close a limit row's file and remove it: the row's events per second
/// since `start`, and its per-COMMIT latencies.
fn finish(conn: Connection, path: &Path, events: f64, start: Instant, mut lat: Vec<Duration>) -> (f64, Percentiles) {
    let rate = events / start.elapsed().as_secs_f64();
    drop(conn);
    remove_database(path);
    (rate, Percentiles::of(&mut lat))
}

/// Remove a SQLite file and its WAL and shared-memory files, if there.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
    }
}

/// The replay limit: read a JSON Lines export of stored events, decode each
/// line with serde_json into the store's own `StoredEvent` (envelope typed,
/// payload checked as JSON and kept as text), and fold a count per stream
/// and per type. No domain decoding, no projections.
pub fn json_fold(file: &Path) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut per_stream: HashMap<smol_str::SmolStr, u64> = HashMap::new();
    let mut per_type: HashMap<smol_str::SmolStr, u64> = HashMap::new();
    let mut bytes = 0u64;
    let mut events = 0u64;
    for line in reader.lines() {
        let line = line?;
        let e: StoredEvent = serde_json::from_str(&line).with_context(|| format!("line {}", events + 1))?;
        *per_stream.entry(e.stream).or_default() += 1;
        *per_type.entry(e.event_type).or_default() += 1;
        bytes += e.payload.len() as u64;
        events += 1;
    }
    let took = start.elapsed();
    anyhow::ensure!(per_stream.values().sum::<u64>() == events && bytes > 0, "fold lost events");
    Ok((events, took))
}
