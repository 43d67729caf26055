// The outbox relay's publish lag, observed once per event published, against its yardstick in the
// same process: prom-client's Histogram observed with the relay's label set (hashed on every
// observe, as the relay did) and the relay's series looked up once (Metrics.histogramSeries).
// Seven relays (one per service in a process), batches of 1-16 events, alternated by round.
// Prints CPU nanoseconds per observation and the ratio to the yardstick.
//   node --import tsx bench/outbox-lag-metric.ts [observations per round=500000] [rounds=6]
import { Metrics } from "@ttip/runtime";

const perRound = Number(process.argv[2] ?? 500_000);
const rounds = Number(process.argv[3] ?? 6);
const BOUNDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const SERVICES = ["payment", "wallet", "notification", "qr", "auth", "analytics", "venue"];

const metrics = new Metrics();
const histogram = metrics.histogram("bench_lag_seconds", "yardstick", ["service"], BOUNDS);
const ways: Array<[string, (service: number) => (age: number) => void]> = [
  ["prom-client, labels per observe (before)", (s) => (age) => histogram.observe({ service: SERVICES[s] }, age)],
  ["the relay's series (histogramSeries)", (s) => {
    const series = metrics.histogramSeries("ttip_outbox_publish_lag_seconds", "lag", BOUNDS, { service: SERVICES[s] });
    return (age) => series.observe(age);
  }],
];

/** CPU ns per observation: relays in turn, each observing a batch. */
function round(way: (service: number) => (age: number) => void): number {
  const relays = SERVICES.map((_, s) => way(s));
  const before = process.cpuUsage();
  for (let i = 0, batch = 0; i < perRound; batch++) {
    const observe = relays[batch % relays.length];
    for (let n = 1 + (batch % 16); n > 0 && i < perRound; n--, i++) observe((i % 997) / 100);
  }
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / perRound;
}

for (const [, way] of ways) round(way); // warm up
const ns = new Map<string, number[]>();
for (let r = 1; r <= rounds; r++) {
  for (const [name, way] of r % 2 ? ways : [...ways].reverse()) {
    const perObservation = round(way);
    ns.set(name, [...(ns.get(name) ?? []), perObservation]);
    console.log(`round ${r}  ${name.padEnd(42)} CPU ${perObservation.toFixed(0)} ns per observation`);
  }
}
await metrics.registry.metrics(); // a scrape reads both
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
const [yardstick, ours] = ways.map(([name]) => median(ns.get(name)!));
console.log(`median CPU per observation: ${yardstick.toFixed(0)} -> ${ours.toFixed(0)} ns (ratio ${(ours / yardstick).toFixed(3)})`);
