#!/usr/bin/env bash
# Peer: Emmett (npm @event-driven-io/emmett-postgresql) on a throwaway
# PostgreSQL. Installs into $SEATLEDGER_BENCH_CACHE/emmett (default
# ~/.cache/seatledger-bench), never into the repository.
# Usage: run.sh DATA_DIR quick|full — prints JSON lines for seatledger-bench.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib/pg.sh"
cache="${SEATLEDGER_BENCH_CACHE:-$HOME/.cache/seatledger-bench}/emmett"
command -v node >/dev/null && command -v npm >/dev/null || { echo '{"not_installed": "node and npm are not on PATH"}'; exit 0; }
mkdir -p "$cache"
cd "$cache" || exit 0
[ -f package.json ] || npm init -y >/dev/null 2>&1
if ! [ -d node_modules/@event-driven-io/emmett-postgresql ]; then
    npm install --no-audit --no-fund @event-driven-io/emmett-postgresql @event-driven-io/emmett >&2 \
        || { echo '{"not_installed": "npm install @event-driven-io/emmett-postgresql failed (no network to the npm registry?)"}'; exit 0; }
fi
echo "emmett-postgresql $(node -p 'require("./node_modules/@event-driven-io/emmett-postgresql/package.json").version')" >&2
cp "$here/bench.mjs" "$cache/bench.mjs"
pg_start || { echo '{"not_installed": "could not start a throwaway PostgreSQL (see stderr)"}'; exit 0; }
node "$cache/bench.mjs" "${2:-full}"
