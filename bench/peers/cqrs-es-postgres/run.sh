#!/usr/bin/env bash
# Peer: cqrs-es with postgres-es (crates.io) on a throwaway PostgreSQL.
# Builds a separate cargo project (never a member of the seatledger
# workspace) in $SEATLEDGER_BENCH_CACHE/cqrs-es (default
# ~/.cache/seatledger-bench). Usage: run.sh DATA_DIR quick|full.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib/pg.sh"
mode="${2:-full}"
cache="${SEATLEDGER_BENCH_CACHE:-$HOME/.cache/seatledger-bench}/cqrs-es"
mkdir -p "$cache/src"
cp "$here/Cargo.toml" "$cache/Cargo.toml"
cp "$here/src/main.rs" "$cache/src/main.rs"
command -v cargo >/dev/null || { echo '{"not_installed": "cargo is not on PATH"}'; exit 0; }
(cd "$cache" && cargo build --release --quiet >&2) \
    || { echo '{"not_installed": "cargo build of cqrs-es + postgres-es failed (see stderr)"}'; exit 0; }
bin="${CARGO_TARGET_DIR:-$cache/target}/release/cqrs-es-peer"
pg_start || { echo '{"not_installed": "could not start a throwaway PostgreSQL (see stderr)"}'; exit 0; }
events=$([ "$mode" = quick ] && echo 20000 || echo 100000)
psql -q -v ON_ERROR_STOP=1 <<SQL >&2 || { echo '{"not_installed": "could not create the postgres-es schema"}'; exit 0; }
CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL,
    payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
INSERT INTO events
SELECT 'pool', 'replay', g, 'ReservationMade', '1',
       json_build_object('ReservationMade', json_build_object('reservation', 'r' || g, 'user', 'u' || (g % 500),
           'starts_at', '2024-03-04T09:00:00Z', 'ends_at', '2024-03-04T11:00:00Z')),
       '{}'::json
FROM generate_series(1, $events) g;
SQL
"$bin" "postgresql://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE" "$mode" "$events"
