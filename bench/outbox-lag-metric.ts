// The outbox relay's publish lag, observed once per event published, against its yardstick in the
// same process: prom-client's Histogram observed with the relay's label set (hashed on every
// observe, as the relay did) and the relay's series looked up once (Metrics.histogramSeries).
// Seven relays (one per service in a process), batches of 1-16 events, alternated by round.
// Prints CPU nanoseconds per observation and the ratio to the yardstick.
//   node --import tsx bench/outbox-lag-metric.ts [observations per round=500000] [rounds=6]
import { Metrics } from "@ttip/runtime";
import { compareRounds } from "./alternated.js";

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

/** A round of observations: relays in turn, each observing a batch. */
const round = (way: (service: number) => (age: number) => void) => (observations: number) => {
  const relays = SERVICES.map((_, s) => way(s));
  for (let i = 0, batch = 0; i < observations; batch++) {
    const observe = relays[batch % relays.length];
    for (let n = 1 + (batch % 16); n > 0 && i < observations; n--, i++) observe((i % 997) / 100);
  }
};

await compareRounds([[ways[0][0], round(ways[0][1])], [ways[1][0], round(ways[1][1])]], perRound, rounds, "observation");
await metrics.registry.metrics(); // a scrape reads both
