#!/usr/bin/env bash
# Peer: Python `eventsourcing` (PyPI) on SQLite.
# Usage: run.sh DATA_DIR quick|full — prints JSON lines for seatledger-bench.
# Installs eventsourcing into a venv under $SEATLEDGER_BENCH_CACHE
# (default ~/.cache/seatledger-bench), never into the system Python.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
data="$1"
mode="${2:-full}"
cache="${SEATLEDGER_BENCH_CACHE:-$HOME/.cache/seatledger-bench}"
venv="$cache/venv-eventsourcing"
mkdir -p "$cache"
if ! [ -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2 || { echo '{"not_installed": "python3 -m venv failed"}'; exit 0; }
fi
if ! "$venv/bin/python" -c 'import eventsourcing' 2>/dev/null; then
    "$venv/bin/pip" install -q 'eventsourcing>=9.2,<10' >&2 \
        || { echo '{"not_installed": "pip install eventsourcing failed (no network to PyPI?)"}'; exit 0; }
fi
version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("eventsourcing"))')"
echo "eventsourcing $version" >&2
exec "$venv/bin/python" "$here/../lib/eventsourcing_bench.py" sqlite "$data" "$mode"
