"""message-db style appends on PostgreSQL, driven with psycopg 3.

The schema and write_message function follow message-db's: a `messages`
table with a global position and a per-stream position, and a function
that takes a per-stream advisory lock, reads the stream's version, refuses
a wrong expected version, and inserts. Durability is the server default
(fsync=on, synchronous_commit=on).

Usage: bench.py DATA_DIR quick|full; prints JSON lines for seatledger-bench.
"""

import json
import sys
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

SCHEMA = """
CREATE TABLE messages (
  global_position bigserial PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  stream_name text NOT NULL,
  type text NOT NULL,
  position bigint NOT NULL,
  data jsonb,
  metadata jsonb,
  time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
  UNIQUE (stream_name, position)
);
CREATE FUNCTION write_message(_id uuid, _stream text, _type text, _data jsonb, _metadata jsonb,
                              _expected bigint DEFAULT NULL) RETURNS bigint AS $$
DECLARE
  _version bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext(_stream));
  SELECT max(position) INTO _version FROM messages WHERE stream_name = _stream;
  _version := coalesce(_version, -1);
  IF _expected IS NOT NULL AND _expected <> _version THEN
    RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)', _expected, _stream, _version;
  END IF;
  INSERT INTO messages (id, stream_name, type, position, data, metadata)
    VALUES (_id, _stream, _type, _version + 1, _data, _metadata);
  RETURN _version + 1;
END;
$$ LANGUAGE plpgsql;
"""

DATA = {"reservation": "r0", "user": "u0", "starts_at": "2024-03-04T09:00:00Z", "ends_at": "2024-03-04T11:00:00Z"}
META = {"actor": "ops@bench.example", "channel": "portal"}


def pct(samples, q):
    s = sorted(samples)
    i = max(1, min(len(s), int(-(-len(s) * q // 1)))) - 1
    return s[i]


def out(measure, value, unit, detail, compare):
    print(json.dumps({"measure": measure, "value": value, "unit": unit, "detail": detail, "compare": compare}), flush=True)


def main():
    quick = sys.argv[2] == "quick"
    conn = psycopg.connect(autocommit=True)
    conn.execute(SCHEMA)
    sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
    fsync = conn.execute("SHOW fsync").fetchone()[0]

    n = 300 if quick else 2000
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        conn.execute("SELECT write_message(%s, %s, %s, %s, %s, %s)",
                     (uuid.uuid4(), "pool-single", "ReservationMade", Jsonb(DATA), Jsonb(META), i - 1))
        lat.append(time.perf_counter() - t)
    rate = n / (time.perf_counter() - t0)
    out("single appends, write_message with expected version", rate, "events/s",
        f"p50 {pct(lat, .5)*1e3:.3f} ms, p99 {pct(lat, .99)*1e3:.3f} ms, p99.9 {pct(lat, .999)*1e3:.3f} ms (n={n}); "
        f"fsync={fsync}, synchronous_commit={sync}", "single")

    batches = 20 if quick else 100
    t0 = time.perf_counter()
    version = -1
    for b in range(batches):
        with conn.transaction():
            with conn.cursor() as cur:
                for i in range(100):
                    cur.execute("SELECT write_message(%s, %s, %s, %s, %s, %s)",
                                (uuid.uuid4(), "pool-batch", "ReservationMade", Jsonb(DATA), Jsonb(META), version))
                    version += 1
    rate = batches * 100 / (time.perf_counter() - t0)
    out("batches of 100 write_message calls per transaction", rate, "events/s", f"{batches} batches", "batch100")

    target = 20_000 if quick else 100_000
    with conn.transaction():
        conn.execute(
            "INSERT INTO messages (id, stream_name, type, position, data, metadata) "
            "SELECT gen_random_uuid(), 'pool-' || (g %% 1000), 'ReservationMade', g / 1000, %s, %s "
            "FROM generate_series(0, %s - 1) g", (Jsonb(DATA), Jsonb(META), target))
    t0 = time.perf_counter()
    count, after, per_stream = 0, 0, {}
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT global_position, stream_name, type, position, data, metadata FROM messages "
                        "WHERE global_position > %s ORDER BY global_position LIMIT 10000", (after,))
            rows = cur.fetchall()
            if not rows:
                break
            for gp, stream, typ, pos, data, meta in rows:
                per_stream[stream] = per_stream.get(stream, 0) + 1
                count += 1
            after = rows[-1][0]
    took = time.perf_counter() - t0
    out("replay: read + decode (jsonb to dict) + fold a count", count / took, "events/s",
        f"{count} events in {took:.2f} s", "replay")


if __name__ == "__main__":
    main()
