#!/usr/bin/env bash
# Peer: Python `eventsourcing` (PyPI) on a throwaway PostgreSQL server.
# Usage: run.sh DATA_DIR quick|full — prints JSON lines for seatledger-bench.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib/python_venv.sh"
. "$here/../lib/pg.sh"
py_venv eventsourcing-postgres 'eventsourcing[postgres]>=9.2,<10'
pg_start || { echo '{"not_installed": "could not start a throwaway PostgreSQL (see stderr)"}'; exit 0; }
"$VENV/bin/python" "$here/../lib/eventsourcing_bench.py" postgres "$1" "${2:-full}"
