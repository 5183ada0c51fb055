#!/usr/bin/env bash
# Peer: message-db style appends — a PL/pgSQL write_message function with an
# expected-version check, as message-db has — on a throwaway PostgreSQL,
# driven from Python (psycopg 3). Usage: run.sh DATA_DIR quick|full.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib/python_venv.sh"
. "$here/../lib/pg.sh"
py_venv psycopg 'psycopg[binary]>=3.1,<4'
pg_start || { echo '{"not_installed": "could not start a throwaway PostgreSQL (see stderr)"}'; exit 0; }
"$VENV/bin/python" "$here/bench.py" "$1" "${2:-full}"
