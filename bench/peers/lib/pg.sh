# A throwaway PostgreSQL server for one peer run, never the machine's own:
# initdb in a fresh temporary directory, a free port on 127.0.0.1, default
# durability (fsync=on, synchronous_commit=on, wal_sync_method default).
# Source it, call `pg_start`, and the server is stopped and removed on exit.
# Sets PGHOST, PGPORT, PGUSER, PGDATABASE. Returns non-zero with a reason on
# stderr when PostgreSQL cannot be started.

pg_bin() {
    for d in /usr/local/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    return 1
}

pg_as() {
    # initdb refuses to run as root: run the server as `postgres` then.
    # From a directory every user may enter.
    if [ "$(id -u)" = 0 ]; then (cd /tmp && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_start() {
    local bin
    bin="$(pg_bin)" || { echo "initdb/pg_ctl not found" >&2; return 1; }
    PG_TMP="$(mktemp -d /tmp/seatledger-bench-pg.XXXXXX)" || return 1
    if [ "$(id -u)" = 0 ]; then chown postgres "$PG_TMP"; fi
    chmod 700 "$PG_TMP"
    PGPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    pg_as "$bin/initdb" -D "$PG_TMP/data" -U bench --auth=trust -E UTF8 >"$PG_TMP/initdb.log" 2>&1 \
        || { echo "initdb failed: $(tail -1 "$PG_TMP/initdb.log")" >&2; return 1; }
    pg_as "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 30 \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PG_TMP" start >/dev/null \
        || { echo "pg_ctl start failed: $(tail -1 "$PG_TMP/server.log")" >&2; return 1; }
    PG_BIN="$bin"
    export PGHOST=127.0.0.1 PGPORT PGUSER=bench PGDATABASE=postgres
    trap pg_stop EXIT
    echo "postgres $("$bin/postgres" --version | awk '{print $3}') on port $PGPORT in $PG_TMP" >&2
}

pg_stop() {
    if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP/data" ]; then
        pg_as "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1
    fi
    [ -n "${PG_TMP:-}" ] && rm -rf "$PG_TMP"
}
