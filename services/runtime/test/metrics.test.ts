// The server's call metrics are counted in per-method cells and added to prom-client's
// counters when read (no label hash per call): the figures and the text a scrape gets are
// those prom-client's own counters and histogram give for the same calls.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { Histogram, Registry } from "prom-client";
import { CallDurations, Metrics } from "../src/metrics.js";

type Req = Parameters<ReturnType<Interceptor>>[0];

/** One call of `method` through the metrics interceptor, failing with `code` when given. */
async function callThrough(metrics: Metrics, method: (typeof QrService.methods)[number], code?: Code): Promise<void> {
  const next = async () => {
    if (code !== undefined) throw new ConnectError("refused", code);
    return { stream: false } as never;
  };
  const req = { method, service: QrService, stream: false } as unknown as Req;
  await metrics.interceptor()(next)(req).catch(() => undefined);
}

test("calls are counted by method and code, timed per method, and a second scrape adds only what came since", async () => {
  const metrics = new Metrics();
  const [get, other] = QrService.methods;
  for (let i = 0; i < 3; i++) await callThrough(metrics, get);
  await callThrough(metrics, get, Code.NotFound);
  await callThrough(metrics, other);
  const labels = (m: typeof get) => `grpc_type="unary",grpc_service="${QrService.typeName}",grpc_method="${m.name}"`;
  let text = await metrics.registry.metrics();
  assert.match(text, new RegExp(`grpc_server_started_total\\{${labels(get)}\\} 4\\n`));
  assert.match(text, new RegExp(`grpc_server_handled_total\\{${labels(get)},grpc_code="OK"\\} 3\\n`));
  assert.match(text, new RegExp(`grpc_server_handled_total\\{${labels(get)},grpc_code="NotFound"\\} 1\\n`));
  assert.match(text, new RegExp(`grpc_server_handling_seconds_count\\{${labels(get)}\\} 4\\n`));
  assert.match(text, new RegExp(`grpc_server_handling_seconds_bucket\\{le="\\+Inf",${labels(get)}\\} 4\\n`));
  assert.match(text, new RegExp(`grpc_server_started_total\\{${labels(other)}\\} 1\\n`));

  await callThrough(metrics, get);
  text = await metrics.registry.metrics();
  assert.match(text, new RegExp(`grpc_server_started_total\\{${labels(get)}\\} 5\\n`), "counted once, not again at each scrape");
  assert.match(text, new RegExp(`grpc_server_handled_total\\{${labels(get)},grpc_code="OK"\\} 4\\n`));
  const handled = (await metrics.handled.get()).values.filter((v) => v.labels.grpc_method === get.name);
  assert.deepEqual(handled.map((v) => [v.labels.grpc_code, v.value]).sort(), [["NotFound", 1], ["OK", 4]], "get() reads what was counted too");
});

test("a CallDurations series is written as prom-client's Histogram writes the same observations", async () => {
  const bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const labels = { grpc_type: "unary", grpc_service: "s.S", grpc_method: "M" };
  const observed = [0.001, 0.005, 0.007, 0.3, 0.3, 2, 11, 0.05];
  const ours = new Registry();
  const durations = new CallDurations("h_seconds", "help", bounds);
  ours.registerMetric(durations as never);
  const series = durations.series(labels);
  const theirs = new Registry();
  const histogram = new Histogram({ name: "h_seconds", help: "help", labelNames: Object.keys(labels), buckets: bounds, registers: [theirs] });
  for (const s of observed) {
    series.observe(s);
    histogram.observe(labels, s);
  }
  // Label order within a line differs (ours writes le first); Prometheus reads either.
  const lines = async (r: Registry) =>
    (await r.metrics())
      .trim()
      .split("\n")
      .map((l) => l.replace(/\{([^}]*)\}/, (_, inner: string) => `{${inner.split(",").sort().join(",")}}`));
  assert.deepEqual(await lines(ours), await lines(theirs));
});

test("a histogram series asked for twice is one series, written as prom-client's Histogram writes it", async () => {
  const bounds = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
  const metrics = new Metrics();
  const payment = metrics.histogramSeries("lag_seconds", "help", bounds, { service: "payment" });
  assert.equal(metrics.histogramSeries("lag_seconds", "help", bounds, { service: "payment" }), payment, "the same labels, the same series");
  const wallet = metrics.histogramSeries("lag_seconds", "help", bounds, { service: "wallet" });
  const theirs = new Registry();
  const histogram = new Histogram({ name: "lag_seconds", help: "help", labelNames: ["service"], buckets: bounds, registers: [theirs] });
  for (const [series, service, s] of [[payment, "payment", 0.003], [payment, "payment", 0.05], [wallet, "wallet", 400], [payment, "payment", 7]] as const) {
    series.observe(s);
    histogram.observe({ service }, s);
  }
  const lines = async (text: string) =>
    text
      .split("\n")
      .filter((l) => /^(# (HELP|TYPE) )?lag_seconds/.test(l))
      .map((l) => l.replace(/\{([^}]*)\}/, (_, inner: string) => `{${inner.split(",").sort().join(",")}}`));
  assert.deepEqual(await lines(await metrics.registry.metrics()), await lines(await theirs.metrics()));
  metrics.histogram("other_seconds", "help", ["service"], bounds);
  assert.throws(() => metrics.histogramSeries("other_seconds", "help", bounds, { service: "payment" }), /registered already/);
});

/** The lines of a scrape that are `name`'s. */
async function linesOf(metrics: Metrics, name: string): Promise<string[]> {
  return (await metrics.registry.metrics()).split("\n").filter((line) => line.startsWith(name));
}

test("a counter family scrapes as prom-client's counter given the same counts, and a registry reset drops the counts not scraped yet", async () => {
  const family = new Metrics();
  const plain = new Metrics();
  const counted = family.counterFamily("ttip_test_things_total", "Things.", ["kind", "result"]);
  const yardstick = plain.counter("ttip_test_things_total", "Things.", ["kind", "result"]);
  const both = (labels: { kind: string; result: string }, n?: number) => {
    counted.inc(labels, n);
    yardstick.inc(labels, n);
  };
  both({ kind: "code", result: "hit" });
  both({ kind: "code", result: "hit" }, 3);
  both({ kind: "code", result: "miss" });
  both({ kind: "profile", result: "hit" }, 2);
  assert.deepEqual(await linesOf(family, "ttip_test_things_total"), await linesOf(plain, "ttip_test_things_total"));
  assert.ok((await linesOf(family, "ttip_test_things_total")).includes('ttip_test_things_total{kind="code",result="hit"} 4'));

  // Counted, not scraped, then the registry reset: those counts are gone, as they are from prom-client's counter.
  both({ kind: "code", result: "hit" }, 5);
  family.registry.resetMetrics();
  plain.registry.resetMetrics();
  assert.deepEqual(await linesOf(family, "ttip_test_things_total"), await linesOf(plain, "ttip_test_things_total"));
  both({ kind: "code", result: "miss" });
  assert.deepEqual(await linesOf(family, "ttip_test_things_total"), await linesOf(plain, "ttip_test_things_total"));
  assert.ok((await linesOf(family, "ttip_test_things_total")).includes('ttip_test_things_total{kind="code",result="miss"} 1'));
});
