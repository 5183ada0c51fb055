//! Opening connections and keeping the schema at the version this build knows.
//!
//! The schema version lives in `PRAGMA user_version` (read without touching
//! any table, and changed in the same transaction as the DDL it describes);
//! `schema_migrations` keeps when each version was applied, for people.
//! `PRAGMA application_id` marks the file as a seatledger store so that
//! pointing `--store` at some other SQLite file fails clearly instead of
//! adding tables to it.

use crate::rows::{micros, Context};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use seatledger_store::StoreError;
use std::path::Path;
use std::time::Duration;

/// "SLDG": marks a SQLite file as a seatledger event store.
const APPLICATION_ID: i32 = 0x534c_4447;

/// How long a connection waits for a lock held by another connection (another
/// process, or a checkpoint of the WAL) before reporting the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `n` takes the schema from version `n` to `n + 1`. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // Version 1. `position` is the rowid: positions are gapless because events
    // are never deleted and every insert takes the next one explicitly.
    r#"
    CREATE TABLE events (
        position        INTEGER PRIMARY KEY,
        id              TEXT    NOT NULL UNIQUE,
        stream          TEXT    NOT NULL,
        stream_version  INTEGER NOT NULL,
        type            TEXT    NOT NULL,
        schema_version  INTEGER NOT NULL,
        recorded_at_us  INTEGER NOT NULL,
        effective_at_us INTEGER NOT NULL,
        actor           TEXT    NOT NULL,
        channel         TEXT    NOT NULL,
        correlation_id  TEXT    NOT NULL,
        causation_id    TEXT,
        command_id      TEXT,
        payload         TEXT    NOT NULL,
        hash            TEXT    NOT NULL,
        UNIQUE (stream, stream_version)
    ) STRICT;
    CREATE INDEX events_by_command_id ON events (command_id) WHERE command_id IS NOT NULL;
    CREATE TABLE streams (
        stream  TEXT    NOT NULL PRIMARY KEY,
        version INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE checkpoints (
        name     TEXT    NOT NULL PRIMARY KEY,
        position INTEGER NOT NULL,
        state    TEXT
    ) STRICT;
    CREATE TABLE schema_migrations (
        version       INTEGER PRIMARY KEY,
        applied_at_us INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 2. A stream's last version is read from the end of its range
    // in the `(stream, stream_version)` index, which every append seeks and
    // writes anyway; the `streams` table kept a copy of it, and updating
    // that copy cost every append one more B-tree write (one of the five
    // pages a single append's commit wrote) and two more statements. Events
    // are never deleted, so the index holds every version the table did.
    r#"
    DROP TABLE streams;
    "#,
    // Version 3: compact rows (docs/benchmarks.md, lever 30).
    // - A stream is stored as a number, its name once in `streams`. Each
    //   append to an existing stream seeks and writes its leaf of the
    //   `(stream, stream_version)` index; with the name in every entry a leaf
    //   held a few dozen entries, with a number a few hundred.
    // - Ids are 16-byte BLOBs and the hash link a 32-byte BLOB instead of 36
    //   and 64 characters of text: about 90 bytes less per row, and
    //   smaller `id` and `command_id` indexes (with the stream's number,
    //   601 → 416 bytes per stored event in all). Only text spelled as the
    //   store writes it (lowercase, hyphens in their places; 64 lowercase
    //   hex digits for a link) is converted. Anything else could only be
    //   there if something else wrote the file; it is kept as text with a
    //   marker in front, never 16 or 32 bytes long, which the store then
    //   reports as damaged, naming the event and the column.
    // The rows are copied in position order: the stored events, their hash
    // links and what the chain verifies do not change, only how they are
    // spelled in the file. The view `event_log` spells them as before (ids
    // as hyphenated text, the link as hex, the stream by its name), for
    // people reading the file with `sqlite3`. The old rows' pages stay in
    // the file as free pages, reused by later appends (`VACUUM` gives them
    // back to the disk).
    r#"
    CREATE TABLE streams (
        number  INTEGER PRIMARY KEY,
        name    TEXT    NOT NULL UNIQUE
    ) STRICT;
    INSERT INTO streams (name) SELECT stream FROM events GROUP BY stream ORDER BY MIN(position);
    CREATE TABLE events_v3 (
        position        INTEGER PRIMARY KEY,
        id              BLOB    NOT NULL UNIQUE,
        stream          INTEGER NOT NULL REFERENCES streams (number),
        stream_version  INTEGER NOT NULL,
        type            TEXT    NOT NULL,
        schema_version  INTEGER NOT NULL,
        recorded_at_us  INTEGER NOT NULL,
        effective_at_us INTEGER NOT NULL,
        actor           TEXT    NOT NULL,
        channel         TEXT    NOT NULL,
        correlation_id  BLOB    NOT NULL,
        causation_id    BLOB,
        command_id      BLOB,
        payload         TEXT    NOT NULL,
        hash            BLOB    NOT NULL,
        UNIQUE (stream, stream_version)
    ) STRICT;
    INSERT INTO events_v3
        SELECT e.position,
               CASE WHEN e.id IS NULL THEN NULL
                    WHEN length(e.id) = 36 AND lower(e.id) = e.id AND substr(e.id, 9, 1) = '-'
                        AND substr(e.id, 14, 1) = '-' AND substr(e.id, 19, 1) = '-' AND substr(e.id, 24, 1) = '-'
                        AND unhex(replace(e.id, '-', '')) IS NOT NULL THEN unhex(replace(e.id, '-', ''))
                    ELSE CAST('not as seatledger writes a uuid: ' || e.id AS BLOB) END,
               s.number, e.stream_version, e.type, e.schema_version, e.recorded_at_us, e.effective_at_us, e.actor,
               e.channel,
               CASE WHEN e.correlation_id IS NULL THEN NULL
                    WHEN length(e.correlation_id) = 36 AND lower(e.correlation_id) = e.correlation_id AND substr(e.correlation_id, 9, 1) = '-'
                        AND substr(e.correlation_id, 14, 1) = '-' AND substr(e.correlation_id, 19, 1) = '-' AND substr(e.correlation_id, 24, 1) = '-'
                        AND unhex(replace(e.correlation_id, '-', '')) IS NOT NULL THEN unhex(replace(e.correlation_id, '-', ''))
                    ELSE CAST('not as seatledger writes a uuid: ' || e.correlation_id AS BLOB) END,
               CASE WHEN e.causation_id IS NULL THEN NULL
                    WHEN length(e.causation_id) = 36 AND lower(e.causation_id) = e.causation_id AND substr(e.causation_id, 9, 1) = '-'
                        AND substr(e.causation_id, 14, 1) = '-' AND substr(e.causation_id, 19, 1) = '-' AND substr(e.causation_id, 24, 1) = '-'
                        AND unhex(replace(e.causation_id, '-', '')) IS NOT NULL THEN unhex(replace(e.causation_id, '-', ''))
                    ELSE CAST('not as seatledger writes a uuid: ' || e.causation_id AS BLOB) END,
               CASE WHEN e.command_id IS NULL THEN NULL
                    WHEN length(e.command_id) = 36 AND lower(e.command_id) = e.command_id AND substr(e.command_id, 9, 1) = '-'
                        AND substr(e.command_id, 14, 1) = '-' AND substr(e.command_id, 19, 1) = '-' AND substr(e.command_id, 24, 1) = '-'
                        AND unhex(replace(e.command_id, '-', '')) IS NOT NULL THEN unhex(replace(e.command_id, '-', ''))
                    ELSE CAST('not as seatledger writes a uuid: ' || e.command_id AS BLOB) END,
               e.payload,
               CASE WHEN length(e.hash) = 64 AND lower(e.hash) = e.hash AND unhex(e.hash) IS NOT NULL
                    THEN unhex(e.hash)
                    ELSE CAST('not as seatledger writes a link: ' || e.hash AS BLOB) END
        FROM events AS e CROSS JOIN streams AS s WHERE s.name = e.stream ORDER BY e.position;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_by_command_id ON events (command_id) WHERE command_id IS NOT NULL;
    CREATE VIEW event_log AS
        SELECT e.position, lower(substr(hex(e.id), 1, 8) || '-' || substr(hex(e.id), 9, 4) || '-' ||
                   substr(hex(e.id), 13, 4) || '-' || substr(hex(e.id), 17, 4) || '-' || substr(hex(e.id), 21)) AS id,
               s.name AS stream, e.stream_version, e.type, e.schema_version, e.recorded_at_us, e.effective_at_us,
               e.actor, e.channel,
               lower(substr(hex(e.correlation_id), 1, 8) || '-' || substr(hex(e.correlation_id), 9, 4) || '-' ||
                   substr(hex(e.correlation_id), 13, 4) || '-' || substr(hex(e.correlation_id), 17, 4) || '-' ||
                   substr(hex(e.correlation_id), 21)) AS correlation_id,
               CASE WHEN e.causation_id IS NOT NULL THEN
                   lower(substr(hex(e.causation_id), 1, 8) || '-' || substr(hex(e.causation_id), 9, 4) || '-' ||
                   substr(hex(e.causation_id), 13, 4) || '-' || substr(hex(e.causation_id), 17, 4) || '-' ||
                   substr(hex(e.causation_id), 21)) END AS causation_id,
               CASE WHEN e.command_id IS NOT NULL THEN
                   lower(substr(hex(e.command_id), 1, 8) || '-' || substr(hex(e.command_id), 9, 4) || '-' ||
                   substr(hex(e.command_id), 13, 4) || '-' || substr(hex(e.command_id), 17, 4) || '-' ||
                   substr(hex(e.command_id), 21)) END AS command_id,
               e.payload, lower(hex(e.hash)) AS hash
        FROM events AS e LEFT JOIN streams AS s ON s.number = e.stream;
    "#,
    // Version 4: the command-id index holds one entry per run of a command's
    // events, not one per event (docs/benchmarks.md, lever 31). Every event
    // keeps its command id; `events_by_command_id` carried it for each of
    // them, so a batch of 100 events wrote 100 entries with one key and a
    // batch of 10,000 wrote 10,000 (without them SQLite alone appends
    // batches of 100 about a fifth faster with this schema). Now the first
    // event of a run (the events one append writes, or consecutive imported
    // events of one command on one stream, which take consecutive versions
    // and positions) holds the run's length in `command_run`, and the rest
    // of the run holds 0, as does an event without a command id; only
    // entries whose `command_run` is not 0 are indexed. A command's outcome
    // is derived from its runs as it was from its events: the first stream
    // it wrote to owns it, with the versions and positions of all its
    // events there. Events stored before this version hold no length
    // (NULL): each is a run of one, indexed as before, so the migration
    // rewrites no row; it builds the new index from the table (about a
    // second per million events) and drops the old one.
    r#"
    ALTER TABLE events ADD COLUMN command_run INTEGER;
    CREATE INDEX events_by_command_run ON events (command_id)
        WHERE command_id IS NOT NULL AND command_run IS NOT 0;
    DROP INDEX events_by_command_id;
    "#,
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Open the one read-write connection: create the file if missing, switch to
/// WAL with fully synchronous commits, and bring the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).context(|| format!("opening `{shown}`"))?;
    conn.busy_timeout(BUSY_TIMEOUT).context(|| format!("setting the busy timeout of `{shown}`"))?;
    // FULL: a commit is on disk before its reply is sent. NORMAL would be
    // faster in WAL mode but may lose the last commits on power loss, and an
    // acknowledged append must never disappear.
    conn.pragma_update(None, "synchronous", "FULL").context(|| format!("setting synchronous=FULL on `{shown}`"))?;
    // The schema check comes before the switch to WAL, which is persistent:
    // a file that turns out not to be ours is refused untouched.
    migrate(&mut conn, path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .context(|| format!("switching `{shown}` to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!("`{shown}` refused WAL mode (it stays in {mode} mode)")));
    }
    // Checkpoints run on their own thread (`checkpointer`), not inside the
    // writer's commits.
    no_automatic_checkpoints(&conn, "writer", path)?;
    Ok(conn)
}

/// Open the checkpointer thread's connection to a file [`open_writer`] has
/// set up: read-write, `synchronous=FULL` like every checkpoint SQLite runs,
/// and no automatic checkpoints of its own (it commits nothing anyway).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).context(|| format!("opening `{shown}` to checkpoint"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .context(|| format!("setting synchronous=FULL on the checkpointer of `{shown}`"))?;
    no_automatic_checkpoints(&conn, "checkpointer", path)?;
    Ok(conn)
}

fn no_automatic_checkpoints(conn: &Connection, who: &str, path: &Path) -> Result<(), StoreError> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .context(|| format!("turning automatic checkpoints off for the {who} of `{}`", path.display()))
}

/// Open a read-only connection to a file [`open_writer`] has set up.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).context(|| format!("opening `{shown}` for reading"))?;
    conn.busy_timeout(BUSY_TIMEOUT).context(|| format!("setting the busy timeout of `{shown}`"))?;
    Ok(conn)
}

/// Refuse to write on a file whose schema version is no longer the one this
/// build opened it at — a newer build migrated it since, or somebody changed
/// it by hand (otherwise this process would fail on tables that are gone,
/// in SQLite's own words). The writer asks this once it has read the data
/// version at open, and whenever another connection has written.
pub(crate) fn check_still_known(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .prepare_cached("PRAGMA user_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .context(|| "reading the schema version".to_owned())?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the file's schema version is now {version}, not version {SCHEMA_VERSION} that this build knows and \
             opened it at (another build migrated it, or it was changed by hand); stop writing and restart this \
             process with a build that knows version {version}"
        )));
    }
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    // A file that is already ours and current needs no write lock: reading
    // its two header fields does not wait for another process that is
    // writing (a long import commits back to back, and SQLite's busy
    // handler does not queue fairly, so waiting for the lock could last as
    // long as the import).
    let current = conn
        .query_row("SELECT * FROM pragma_application_id, pragma_user_version", [], |row| {
            Ok((row.get::<_, i32>(0)?, row.get::<_, i64>(1)?))
        })
        .context(|| format!("reading the header of `{shown}`"))?;
    if current == (APPLICATION_ID, SCHEMA_VERSION) {
        return Ok(());
    }
    // IMMEDIATE: two processes opening a new file at once must not both
    // create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(|| format!("locking `{shown}` to check its schema"))?;
    let application_id: i32 = tx
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .context(|| format!("reading the application id of `{shown}`"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context(|| format!("reading the schema version of `{shown}`"))?;
    let tables: i64 = tx
        .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
        .context(|| format!("listing the tables of `{shown}`"))?;
    let ours = application_id == APPLICATION_ID || (application_id == 0 && version == 0 && tables == 0);
    if !ours {
        return Err(StoreError::Backend(format!(
            "`{shown}` is not a seatledger event store (application id {application_id:#x}, {tables} schema objects)"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "`{shown}` has schema version {version}, newer than version {SCHEMA_VERSION} that this build knows; \
             upgrade seatledger to open it"
        )));
    }
    if version < 0 {
        return Err(StoreError::Corrupt(format!("`{shown}` has a negative schema version {version}")));
    }
    // An existing file being brought up to date is worth a line in the log:
    // migration 3 copies every row (about 5 s per million events).
    let started = std::time::Instant::now();
    if version > 0 && version < SCHEMA_VERSION {
        tracing::info!(file = %shown, from = version, to = SCHEMA_VERSION, "migrating the sqlite store's schema");
    }
    for next in version..SCHEMA_VERSION {
        let target = next + 1;
        let sql = MIGRATIONS[usize::try_from(next).unwrap_or_else(|_| panic!("migration index {next} is negative"))];
        tx.execute_batch(sql).context(|| format!("migrating `{shown}` to schema version {target}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_us) VALUES (?1, ?2)",
            (target, micros(chrono::Utc::now())),
        )
        .context(|| format!("recording schema version {target} in `{shown}`"))?;
    }
    if version < SCHEMA_VERSION {
        // PRAGMAs take no parameters; both values are constants of this build.
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; PRAGMA application_id = {APPLICATION_ID};"))
            .context(|| format!("setting the schema version of `{shown}`"))?;
    }
    tx.commit().context(|| format!("committing the schema of `{shown}`"))?;
    if version > 0 && version < SCHEMA_VERSION {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(file = %shown, to = SCHEMA_VERSION, seconds, "migrated the sqlite store's schema");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_connection_never_checkpoints_by_itself() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let conn = open_writer(&dir.path().join("events.db")).expect("opening the writer connection");
        let pages: i64 =
            conn.query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0)).expect("reading wal_autocheckpoint");
        assert_eq!(pages, 0, "the writer's commits would run checkpoints (the checkpointer thread's job)");
    }
}
