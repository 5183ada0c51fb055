"""The seatledger peer workload on Python `eventsourcing` (PyPI).

Usage: eventsourcing_bench.py sqlite|postgres DATA_DIR quick|full

Prints one JSON object per measurement on stdout:
  {"measure", "value", "unit", "detail", "compare"}
where `compare` names the seatledger figure it is set against
(`single`, `batch100`, `replay`).

The workload mirrors seatledger-bench's:
- single appends: one aggregate (one stream), one event per save; every
  save checks the expected version (eventsourcing's recorder inserts with a
  unique (originator_id, originator_version) key and raises on conflict);
- batches of 100: 100 pending events saved at once (one transaction);
- replay: every stored event read back through the application's
  notification log, decoded by its mapper, and folded into a count.
"""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Pool(Aggregate):
    def __init__(self, name):
        self.name = name
        self.reservations = 0

    @event("ReservationMade")
    def reserve(self, reservation, user, starts_at, ends_at):
        self.reservations += 1


class Ledger(Application):
    pass


def pct(samples, q):
    s = sorted(samples)
    i = max(1, min(len(s), int(-(-len(s) * q // 1)))) - 1
    return s[i]


def out(measure, value, unit, detail, compare):
    print(json.dumps({"measure": measure, "value": value, "unit": unit, "detail": detail, "compare": compare}), flush=True)


def main():
    backend, data, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    quick = mode == "quick"
    env = {"IS_SNAPSHOTTING_ENABLED": "n"}
    if backend == "sqlite":
        env.update({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(data, "es.db")})
    else:
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": os.environ["PGDATABASE"], "POSTGRES_HOST": os.environ["PGHOST"],
            "POSTGRES_PORT": os.environ["PGPORT"], "POSTGRES_USER": os.environ["PGUSER"],
            "POSTGRES_PASSWORD": os.environ.get("PGPASSWORD", ""),
        })
    app = Ledger(env=env)
    durability = ""
    if backend == "sqlite":
        import sqlite3
        # eventsourcing switches the file to WAL and leaves `synchronous` at the
        # library default; a fresh connection shows that default.
        probe = sqlite3.connect(os.path.join(data, "es.db"))
        mode = probe.execute("PRAGMA journal_mode").fetchone()[0]
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(probe.execute("PRAGMA synchronous").fetchone()[0])
        probe.close()
        durability = f"; journal_mode={mode}, synchronous={sync} (SQLite {sqlite3.sqlite_version})"
    starts = datetime(2024, 3, 4, 9, tzinfo=timezone.utc)

    # Single appends.
    n = 300 if quick else 2000
    pool = Pool("single")
    app.save(pool)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        pool.reserve(f"r{i}", f"u{i % 500}", starts.isoformat(), (starts + timedelta(hours=2)).isoformat())
        t = time.perf_counter()
        app.save(pool)
        lat.append(time.perf_counter() - t)
    rate = n / (time.perf_counter() - t0)
    out("single appends, expected version, one event per save", rate, "events/s",
        f"p50 {pct(lat, .5)*1e3:.3f} ms, p99 {pct(lat, .99)*1e3:.3f} ms, p99.9 {pct(lat, .999)*1e3:.3f} ms (n={n})"
        + durability,
        "single")

    # Batches of 100.
    batches = 20 if quick else 100
    pool = Pool("batch")
    app.save(pool)
    t0 = time.perf_counter()
    for b in range(batches):
        for i in range(100):
            pool.reserve(f"b{b}-{i}", f"u{i}", starts.isoformat(), (starts + timedelta(hours=2)).isoformat())
        app.save(pool)
    rate = batches * 100 / (time.perf_counter() - t0)
    out("batches of 100 events per save", rate, "events/s", f"{batches} batches", "batch100")

    # Replay: fill up to N events, then read them all back and fold.
    target = 20_000 if quick else 100_000
    pool = Pool("replay")
    app.save(pool)
    written = 0
    while written < target:
        for i in range(1000):
            pool.reserve(f"x{written + i}", f"u{i}", starts.isoformat(), (starts + timedelta(hours=2)).isoformat())
        app.save(pool)
        written += 1000
    t0 = time.perf_counter()
    count, start = 0, 1
    per_type = {}
    while True:
        notes = app.recorder.select_notifications(start, 1000)
        if not notes:
            break
        for note in notes:
            e = app.mapper.to_domain_event(note)
            per_type[type(e).__name__] = per_type.get(type(e).__name__, 0) + 1
            count += 1
        start = notes[-1].id + 1
    took = time.perf_counter() - t0
    out("replay: read + decode + fold every stored event", count / took, "events/s",
        f"{count} events in {took:.2f} s (all on one stream; decoded, not folded into projections)", "replay")


if __name__ == "__main__":
    main()
