// Emmett (npm @event-driven-io/emmett-postgresql) on a throwaway PostgreSQL.
// Usage: node bench.mjs quick|full — prints JSON lines for seatledger-bench.
import { getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';

const quick = process.argv[2] === 'quick';
const url = `postgresql://${process.env.PGUSER}@${process.env.PGHOST}:${process.env.PGPORT}/${process.env.PGDATABASE}`;
const store = getPostgreSQLEventStore(url);
const data = { reservation: 'r0', user: 'u0', startsAt: '2024-03-04T09:00:00Z', endsAt: '2024-03-04T11:00:00Z' };
const event = () => ({ type: 'ReservationMade', data });
const out = (measure, value, unit, detail, compare) =>
  console.log(JSON.stringify({ measure, value, unit, detail, compare }));
const pct = (s, q) => { const a = [...s].sort((x, y) => x - y); return a[Math.max(1, Math.min(a.length, Math.ceil(a.length * q))) - 1]; };

// Single appends, each with the expected stream version.
const n = quick ? 300 : 2000;
const lat = [];
let version = undefined;
let t0 = performance.now();
for (let i = 0; i < n; i++) {
  const t = performance.now();
  const r = await store.appendToStream('pool-single', [event()],
    version === undefined ? { expectedStreamVersion: 'STREAM_DOES_NOT_EXIST' } : { expectedStreamVersion: version });
  lat.push(performance.now() - t);
  version = r.nextExpectedStreamVersion;
}
let rate = n / ((performance.now() - t0) / 1000);
out('single appends, expected stream version', rate, 'events/s',
  `p50 ${pct(lat, .5).toFixed(3)} ms, p99 ${pct(lat, .99).toFixed(3)} ms, p99.9 ${pct(lat, .999).toFixed(3)} ms (n=${n})`, 'single');

// Batches of 100 events per append.
const batches = quick ? 20 : 100;
version = undefined;
t0 = performance.now();
for (let b = 0; b < batches; b++) {
  const r = await store.appendToStream('pool-batch', Array.from({ length: 100 }, event),
    version === undefined ? { expectedStreamVersion: 'STREAM_DOES_NOT_EXIST' } : { expectedStreamVersion: version });
  version = r.nextExpectedStreamVersion;
}
rate = batches * 100 / ((performance.now() - t0) / 1000);
out('batches of 100 events per append', rate, 'events/s', `${batches} batches`, 'batch100');

// Replay: aggregate one stream of N events with an evolve function.
const target = quick ? 20000 : 100000;
version = undefined;
for (let written = 0; written < target; written += 1000) {
  const r = await store.appendToStream('pool-replay', Array.from({ length: 1000 }, event),
    version === undefined ? { expectedStreamVersion: 'STREAM_DOES_NOT_EXIST' } : { expectedStreamVersion: version });
  version = r.nextExpectedStreamVersion;
}
t0 = performance.now();
const { state } = await store.aggregateStream('pool-replay', {
  evolve: (s, e) => ({ count: s.count + 1, users: s.users }),
  initialState: () => ({ count: 0, users: 0 }),
});
const took = (performance.now() - t0) / 1000;
out('replay: aggregateStream over one stream (read + decode + fold a count)', state.count / took, 'events/s',
  `${state.count} events in ${took.toFixed(2)} s`, 'replay');
await store.close();
