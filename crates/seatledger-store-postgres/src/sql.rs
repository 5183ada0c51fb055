//! Every statement the store runs, written once with its schema name.
//!
//! The schema name is checked to be a plain identifier before it gets here
//! (see `PostgresOptions::schema`); every value is a bind parameter.

use crate::rows::{EVENT_COLUMNS, OUTCOME_COLUMNS};

/// The statements of one store, for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The NOTIFY channel of this schema's log head.
    pub(crate) channel: String,

    // Reads, on the pool.
    pub(crate) read_all: String,
    pub(crate) read_stream_forwards: String,
    pub(crate) read_stream_backwards: String,
    pub(crate) stream_version: String,
    pub(crate) head: String,
    pub(crate) command_outcome: String,
    pub(crate) load_checkpoint: String,
    pub(crate) save_checkpoint: String,
    pub(crate) delete_checkpoint: String,

    // Writes, on the writer's connection, inside its transaction.
    pub(crate) lock_head: String,
    pub(crate) move_head: String,
    pub(crate) locate: String,
    pub(crate) create_stream: String,
    pub(crate) advance_stream: String,
    pub(crate) stream_versions: String,
    pub(crate) import_streams: String,
    pub(crate) insert_events: String,
    pub(crate) insert_command: String,
    pub(crate) import_commands: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = schema;
        Self {
            channel: format!("{s}_log_head"),

            read_all: format!("SELECT {EVENT_COLUMNS} FROM {s}.events WHERE position > $1 ORDER BY position LIMIT $2"),
            read_stream_forwards: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND stream_version >= $2 \
                 ORDER BY stream_version ASC LIMIT $3"
            ),
            read_stream_backwards: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND stream_version <= $2 \
                 ORDER BY stream_version DESC LIMIT $3"
            ),
            stream_version: format!("SELECT version FROM {s}.streams WHERE stream = $1"),
            head: format!("SELECT position, hash FROM {s}.log_head"),
            command_outcome: format!("SELECT {OUTCOME_COLUMNS} FROM {s}.commands WHERE command_id = $1"),
            load_checkpoint: format!("SELECT position, state FROM {s}.checkpoints WHERE name = $1"),
            save_checkpoint: format!(
                "INSERT INTO {s}.checkpoints (name, position, state) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, state = EXCLUDED.state, \
                 updated_at = now()"
            ),
            delete_checkpoint: format!("DELETE FROM {s}.checkpoints WHERE name = $1"),

            // The row lock every write transaction queues on: see docs/postgres.md.
            lock_head: format!("SELECT position, hash, recorded_at FROM {s}.log_head FOR UPDATE"),
            // Moves the head and tells every listening process, at commit.
            move_head: format!(
                "WITH moved AS (UPDATE {s}.log_head SET position = $1, hash = $2, recorded_at = $3 RETURNING position) \
                 SELECT pg_notify($4, position::text) FROM moved"
            ),
            locate: format!("SELECT id, stream, stream_version, position FROM {s}.events WHERE id = ANY($1)"),
            // The compare-and-set of an append, done by the database: a new
            // stream exists only if no row was there, an existing one moves
            // only from the version the writer expected.
            create_stream: format!(
                "INSERT INTO {s}.streams (stream, version) VALUES ($1, $2) ON CONFLICT (stream) DO NOTHING"
            ),
            advance_stream: format!("UPDATE {s}.streams SET version = $3 WHERE stream = $1 AND version = $2"),
            stream_versions: format!("SELECT stream, version FROM {s}.streams WHERE stream = ANY($1)"),
            import_streams: format!(
                "INSERT INTO {s}.streams AS t (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                 ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version WHERE t.version < EXCLUDED.version"
            ),
            insert_events: format!(
                "INSERT INTO {s}.events ({EVENT_COLUMNS}) SELECT * FROM UNNEST(\
                 $1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], \
                 $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::uuid[], $12::uuid[], \
                 $13::uuid[], $14::text[], $15::text[])"
            ),
            insert_command: format!(
                "INSERT INTO {s}.commands (command_id, {OUTCOME_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            // Imported events carry command ids too: the first stream a
            // command wrote to owns it, and its range grows with its events.
            import_commands: format!(
                "INSERT INTO {s}.commands AS c (command_id, {OUTCOME_COLUMNS}) SELECT * FROM UNNEST(\
                 $1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
                 ON CONFLICT (command_id) DO UPDATE SET \
                 first_version = LEAST(c.first_version, EXCLUDED.first_version), \
                 last_version = GREATEST(c.last_version, EXCLUDED.last_version), \
                 first_position = LEAST(c.first_position, EXCLUDED.first_position), \
                 last_position = GREATEST(c.last_position, EXCLUDED.last_position) \
                 WHERE c.stream = EXCLUDED.stream"
            ),
        }
    }
}
