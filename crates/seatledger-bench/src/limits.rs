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
    let rate = (n * batch) as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
    }
    Ok((rate, Percentiles::of(&mut lat)))
}

/// The replay limit: read a JSON Lines export of stored events, decode each
/// line with serde_json into the store's own `StoredEvent` (envelope typed,
/// payload checked as JSON and kept as text), and fold a count per stream
/// and per type. No domain decoding, no projections.
pub fn json_fold(file: &Path) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut per_stream: HashMap<String, u64> = HashMap::new();
    let mut per_type: HashMap<String, u64> = HashMap::new();
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
