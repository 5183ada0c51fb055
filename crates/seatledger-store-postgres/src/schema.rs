//! The store's tables, and bringing them to the version this build knows.
//!
//! Everything lives in one schema (`seatledger` unless configured), so the
//! tables are obviously ours and several ledgers can share a database.
//! `<schema>.schema_migrations` records each version applied. Each migration
//! runs in its own transaction, which first takes a transaction-scoped
//! advisory lock keyed on the schema name: two processes starting at once on
//! a new database queue on the lock, and the second finds the work done.

use crate::connect::{describe, pg_error};
use seatledger_store::{chain, StoreError};
use tokio_postgres::Client;

/// The first key of the advisory lock that guards migrations ("SLDG"); the
/// second is `hashtext(schema)`.
const MIGRATION_LOCK: i32 = 0x534c_4447;

/// Migration `n` takes the schema from version `n` to `n + 1`, with a line
/// saying what it does. `{schema}` stands for the schema name. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[(&str, &str)] = &[(
    "the event log, streams, commands, checkpoints, the log head, and the trigger keeping events forever",
    r#"
    CREATE TABLE {schema}.events (
        position        BIGINT      PRIMARY KEY CHECK (position > 0),
        id              UUID        NOT NULL UNIQUE,
        stream          TEXT        NOT NULL,
        stream_version  BIGINT      NOT NULL CHECK (stream_version >= 0),
        type            TEXT        NOT NULL,
        schema_version  BIGINT      NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
        recorded_at     TIMESTAMPTZ NOT NULL,
        effective_at    TIMESTAMPTZ NOT NULL,
        actor           TEXT        NOT NULL,
        channel         TEXT        NOT NULL,
        correlation_id  UUID        NOT NULL,
        causation_id    UUID,
        command_id      UUID,
        -- TEXT, not JSONB: the payload must come back byte for byte, as the
        -- hash chain covers its exact text.
        payload         TEXT        NOT NULL,
        hash            TEXT        NOT NULL,
        CONSTRAINT events_stream_version_key UNIQUE (stream, stream_version)
    );

    -- Each stream's last version: the compare-and-set of an append.
    CREATE TABLE {schema}.streams (
        stream  TEXT   PRIMARY KEY,
        version BIGINT NOT NULL CHECK (version >= 0)
    );

    -- The outcome of each command id, for idempotent retries.
    CREATE TABLE {schema}.commands (
        command_id     UUID   PRIMARY KEY,
        stream         TEXT   NOT NULL,
        first_version  BIGINT NOT NULL,
        last_version   BIGINT NOT NULL,
        first_position BIGINT NOT NULL,
        last_position  BIGINT NOT NULL
    );

    CREATE TABLE {schema}.checkpoints (
        name       TEXT        PRIMARY KEY,
        position   BIGINT      NOT NULL CHECK (position >= 0),
        state      TEXT,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );

    -- The head of the global log: one row, locked by every append for the
    -- length of its transaction. It serialises the tail of the log, so that
    -- positions are gapless, commit order is position order, and each event
    -- is linked to the one before it.
    CREATE TABLE {schema}.log_head (
        only_row    BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        position    BIGINT      NOT NULL CHECK (position >= 0),
        hash        TEXT        NOT NULL,
        recorded_at TIMESTAMPTZ
    );
    INSERT INTO {schema}.log_head (only_row, position, hash, recorded_at) VALUES (TRUE, 0, '{genesis}', NULL);

    -- Events are forever: stored events are never changed or removed.
    CREATE FUNCTION {schema}.events_are_forever() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        RAISE EXCEPTION 'events are forever: % on %.% is refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation',
                  HINT = 'the seatledger event log is append-only; correct a fact with a new event';
    END
    $fn$;
    CREATE TRIGGER events_are_forever BEFORE UPDATE OR DELETE ON {schema}.events
        FOR EACH ROW EXECUTE FUNCTION {schema}.events_are_forever();
    CREATE TRIGGER events_are_forever_truncate BEFORE TRUNCATE ON {schema}.events
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.events_are_forever();
    "#,
)];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Bring `schema` up to [`SCHEMA_VERSION`]. Returns how many migrations
/// this call applied (0 when another process, or an earlier start, did).
pub(crate) async fn migrate(client: &mut Client, schema: &str, target: &str) -> Result<usize, StoreError> {
    let mut applied = 0;
    loop {
        let doing = |what: &str| format!("{what} of schema `{schema}` at {target}");
        let tx = client.transaction().await.map_err(|e| pg_error(doing("starting the migration"), &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&MIGRATION_LOCK, &schema])
            .await
            .map_err(|e| pg_error(doing("locking the migration"), &e))?;
        let has_table = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{schema}.schema_migrations")])
            .await
            .map_err(|e| pg_error(doing("looking for the migrations table"), &e))?
            .get::<_, bool>(0);
        if !has_table {
            let foreign: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
                    &[&schema],
                )
                .await
                .map_err(|e| pg_error(doing("listing the tables"), &e))?
                .get(0);
            if foreign > 0 {
                return Err(StoreError::Backend(format!(
                    "schema `{schema}` at {target} holds {foreign} objects but no seatledger migrations table: \
                     it is not a seatledger store; choose another schema name"
                )));
            }
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE {schema}.schema_migrations (
                     version     INTEGER     PRIMARY KEY,
                     description TEXT        NOT NULL,
                     applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
                 );"
            ))
            .await
            .map_err(|e| pg_error(doing("creating the migrations table"), &e))?;
        }
        let version: i32 = tx
            .query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_migrations"), &[])
            .await
            .map_err(|e| pg_error(doing("reading the version"), &e))?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "schema `{schema}` at {target} has version {version}, newer than version {SCHEMA_VERSION} that this \
                 build knows; upgrade seatledger to use it"
            )));
        }
        if version < 0 {
            return Err(StoreError::Corrupt(format!("schema `{schema}` at {target} has a negative version {version}")));
        }
        if version == SCHEMA_VERSION {
            tx.commit().await.map_err(|e| pg_error(doing("ending the migration check"), &e))?;
            return Ok(applied);
        }
        let (description, sql) = MIGRATIONS[version as usize];
        let next = version + 1;
        let sql = sql.replace("{schema}", schema).replace("{genesis}", &hex32(&chain::GENESIS));
        tx.batch_execute(&sql).await.map_err(|e| {
            StoreError::Backend(format!("migrating schema `{schema}` at {target} to version {next}: {}", describe(&e)))
        })?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, description) VALUES ($1, $2)"),
            &[&next, &description],
        )
        .await
        .map_err(|e| pg_error(doing(&format!("recording version {next}")), &e))?;
        tx.commit().await.map_err(|e| pg_error(doing(&format!("committing version {next}")), &e))?;
        tracing::info!(%schema, %target, version = next, "applied a seatledger schema migration");
        applied += 1;
    }
}

/// Lowercase hex of a link, as the chain stores it.
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64);
    for byte in bytes {
        // Writing into a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}
