import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { performance } from "node:perf_hooks";
import type { DescMethod } from "@bufbuild/protobuf";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Pool } from "./db.js";
import { nextThen } from "./interceptors.js";

/** gRPC status names as grpc-go and go-grpc-prometheus print them. */
export function codeName(code: Code | undefined): string {
  return code === undefined ? "OK" : Code[code];
}

/** One Prometheus registry per process, with the standard gRPC server metrics. */
export class Metrics {
  readonly registry = new Registry();
  readonly started: Counter<"grpc_type" | "grpc_service" | "grpc_method">;
  readonly handled: Counter<"grpc_type" | "grpc_service" | "grpc_method" | "grpc_code">;
  readonly handling: CallDurations;
  /**
   * Each method's figures since the last scrape, added to the counters when they are read
   * (collect): prom-client hashes a call's label set on every inc and observe (2-3% of a
   * service's CPU). One cell per method this registry's servers serve (the router's
   * descriptors, never a request's path), each with at most one count per status code (17):
   * bounded by the services' schemas.
   */
  private readonly cells = new Map<DescMethod, MethodCell>();

  constructor(defaultLabels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(defaultLabels);
    collectDefaultMetrics({ register: this.registry });
    const labelNames = ["grpc_type", "grpc_service", "grpc_method"] as const;
    const flush = () => this.flushCalls();
    this.started = new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames,
      registers: [this.registry],
      collect: flush,
    });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...labelNames, "grpc_code"],
      registers: [this.registry],
      collect: flush,
    });
    this.handling = new CallDurations(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of RPCs handled by the server.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    this.registry.registerMetric(this.handling as never);
  }

  /** Adds the calls counted since the last read to the counters: one hash per method and code per scrape, none per call. */
  private flushCalls(): void {
    for (const cell of this.cells.values()) {
      if (cell.started) this.started.inc(cell.labels, cell.started);
      cell.started = 0;
      for (const [code, n] of cell.handled) if (n) this.handled.inc({ ...cell.labels, grpc_code: code }, n);
      cell.handled.clear();
    }
  }

  private cellOf(method: DescMethod): MethodCell {
    let cell = this.cells.get(method);
    if (!cell) {
      const labels = { grpc_type: grpcType(method.methodKind), grpc_service: method.parent.typeName, grpc_method: method.name };
      cell = { labels, started: 0, handled: new Map(), durations: this.handling.series(labels) };
      this.cells.set(method, cell);
    }
    return cell;
  }

  /**
   * A counter of this registry, made on first use: services sharing a process
   * (embedded mode, tests) share one registry, and each may ask for the same name.
   */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return (this.registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return (this.registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
    return (
      (this.registry.getSingleMetric(name) as Histogram<L> | undefined) ??
      new Histogram({ name, help, labelNames, buckets, registers: [this.registry] })
    );
  }

  /**
   * The series of `labels` of histogram `name` (a CallDurations, made on first use), observed
   * without a label hash per observation: for code that observes often under labels fixed for
   * its life (an outbox relay's service). prom-client's Histogram hashes the labels on every
   * observe. The same labels answer the same series.
   */
  histogramSeries(name: string, help: string, bounds: number[], labels: Record<string, string>): DurationSeries {
    const found = this.registry.getSingleMetric(name) as unknown;
    if (found !== undefined && !(found instanceof CallDurations)) throw new Error(`metric ${name} is registered already, not as a series histogram`);
    let histogram = found;
    if (!histogram) this.registry.registerMetric((histogram = new CallDurations(name, help, bounds)) as never);
    return histogram.series(labels);
  }

  /**
   * Counter `name` (made on first use) whose series are found by their label values and counted
   * in place, for code that counts on every tip or message: prom-client validates and hashes the
   * label set on every inc; here the counts are added to the counter when the registry reads it,
   * one hash per series per scrape. The same name answers the same family.
   */
  counterFamily<L extends string>(name: string, help: string, labelNames: readonly L[]): CounterFamily<L> {
    let family = this.families.get(name);
    if (family === undefined) this.families.set(name, (family = new CounterFamily(this.counter(name, help, labelNames), labelNames)));
    if (!(family instanceof CounterFamily)) throw new Error(`metric ${name} is a histogram family, not a counter family`);
    return family as CounterFamily<L>;
  }

  /** histogramSeries for labels that vary by call: each label set's series found by its values, once looked up (see counterFamily). */
  histogramFamily<L extends string>(name: string, help: string, labelNames: readonly L[], bounds: number[]): HistogramFamily<L> {
    let family = this.families.get(name);
    if (family === undefined) this.families.set(name, (family = new HistogramFamily<L>(labelNames, (labels) => this.histogramSeries(name, help, bounds, labels))));
    if (!(family instanceof HistogramFamily)) throw new Error(`metric ${name} is a counter family, not a histogram family`);
    return family as HistogramFamily<L>;
  }

  /** The families by metric name (services sharing a process share one, as they share the registry). */
  private readonly families = new Map<string, CounterFamily<string> | HistogramFamily<string>>();

  private readonly outboxes = new Map<string, Pool>();
  private readonly pools = new Map<Pool, string>();

  /**
   * Reports a service's outbox at each scrape: rows not yet on the bus and the
   * age of the oldest (the relay's lag). Read from the table, so every replica
   * reports the same backlog.
   */
  watchOutbox(schema: string, pool: Pool): void {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`not a schema name: ${schema}`);
    this.outboxes.set(schema, pool);
    const outboxes = this.outboxes;
    const pending = this.gauge("ttip_outbox_pending", "Events written to a service's outbox and not yet published to the bus.", ["service"]);
    const oldest = this.gauge("ttip_outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox event (0 when none): the relay's lag.", ["service"]);
    // Both gauges come from one read per scrape (the registry collects them concurrently).
    let last: { at: number; done: Promise<void> } | undefined;
    const read = () => {
      if (last && Date.now() - last.at < 1_000) return last.done;
      const done = (async () => {
        for (const [service, p] of outboxes) {
          try {
            const { rows } = await p.query<{ n: number; age: number }>(
              `SELECT count(*)::int AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age
                 FROM "${service}".outbox WHERE published_at IS NULL`,
            );
            pending.set({ service }, rows[0].n);
            oldest.set({ service }, rows[0].age);
          } catch {
            // The database is unreachable: report nothing rather than stale figures.
            pending.remove({ service });
            oldest.remove({ service });
          }
        }
      })();
      last = { at: Date.now(), done };
      return done;
    };
    (pending as unknown as { collect?: () => Promise<void> }).collect = read;
    (oldest as unknown as { collect?: () => Promise<void> }).collect = read;
  }

  /** Reports a pg pool's connections in use, idle and callers waiting for one, at each scrape. */
  watchPool(pool: Pool, name: string): void {
    if (!this.pools.has(pool)) this.pools.set(pool, name);
    const pools = this.pools;
    const gauge = this.gauge("ttip_db_pool_connections", "PostgreSQL pool: connections in use, idle, and callers waiting for one.", ["pool", "state"]);
    (gauge as unknown as { collect?: () => void }).collect = function () {
      for (const [p, n] of pools) {
        gauge.set({ pool: n, state: "in_use" }, p.totalCount - p.idleCount);
        gauge.set({ pool: n, state: "idle" }, p.idleCount);
        gauge.set({ pool: n, state: "waiting" }, p.waitingCount);
      }
    };
  }

  /** Counts and times every RPC; streaming RPCs are timed until their stream ends. */
  interceptor(): Interceptor {
    // No async function around nextThen: its promise is the call's.
    return (next) => (req) => {
      const cell = this.cellOf(req.method);
      cell.started++;
      return nextThen(next, req, callEnded, { cell, started: performance.now() });
    };
  }
}

/** Counts and times a call that ended (Metrics.interceptor). */
function callEnded(call: { cell: MethodCell; started: number }, err?: unknown): void {
  const { cell } = call;
  cell.durations.observe((performance.now() - call.started) / 1000);
  const code = codeName(err === undefined ? undefined : ConnectError.from(err).code);
  cell.handled.set(code, (cell.handled.get(code) ?? 0) + 1);
}

type CallLabels = { grpc_type: string; grpc_service: string; grpc_method: string };
type SeriesLabels = Readonly<Record<string, string>>;

/** One method's calls since the last scrape (started, handled by code) and its duration series. */
interface MethodCell {
  labels: CallLabels;
  started: number;
  handled: Map<string, number>;
  durations: DurationSeries;
}

/** One label set's histogram: counts per bucket (not cumulative; the last is above every bound), sum and count. */
export interface DurationSeries {
  observe(seconds: number): void;
}

/**
 * A family's series by label values: one Map level per label, in the family's label order, so a
 * lookup hashes the values the caller holds (no key built per call).
 */
class SeriesByLabels<L extends string, T> {
  private readonly root = new Map<string, unknown>();

  constructor(private readonly labelNames: readonly L[]) {}

  /** The series of `labels`, made by `make` on first use. */
  find(labels: Readonly<Record<L, string>>, make: () => T): T {
    const names = this.labelNames;
    let level = this.root;
    for (let i = 0; i < names.length - 1; i++) {
      let next = level.get(labels[names[i]]) as Map<string, unknown> | undefined;
      if (next === undefined) level.set(labels[names[i]], (next = new Map()));
      level = next;
    }
    const last = names.length ? labels[names[names.length - 1]] : "";
    let found = level.get(last) as T | undefined;
    if (found === undefined) level.set(last, (found = make()));
    return found;
  }
}

/** Metrics.counterFamily: counts per label set, added to prom-client's counter when it is read. */
export class CounterFamily<L extends string> {
  private readonly cells: Array<{ labels: Record<L, string>; count: number }> = [];
  private readonly byLabels: SeriesByLabels<L, { labels: Record<L, string>; count: number }>;

  constructor(
    private readonly counter: Counter<L>,
    labelNames: readonly L[],
  ) {
    this.byLabels = new SeriesByLabels(labelNames);
    // Counter.get() (every scrape, and a test's read) calls its collect first.
    const collected = counter as unknown as { collect?: (this: unknown) => unknown };
    const own = collected.collect;
    const flush = () => this.flush();
    collected.collect = function (this: unknown) {
      flush();
      return own?.call(this);
    };
  }

  inc(labels: Record<L, string>, count = 1): void {
    this.byLabels.find(labels, () => this.newCell(labels)).count += count;
  }

  private newCell(labels: Record<L, string>) {
    // Checked as prom-client checks it, once per label set: a wrong name throws here, not at a scrape.
    this.counter.inc(labels, 0);
    const cell = { labels: { ...labels }, count: 0 };
    this.cells.push(cell);
    return cell;
  }

  private flush(): void {
    for (const cell of this.cells) {
      if (cell.count === 0) continue;
      this.counter.inc(cell.labels, cell.count);
      cell.count = 0;
    }
  }
}

/** Metrics.histogramFamily: each label set's DurationSeries, looked up by its values. */
export class HistogramFamily<L extends string> {
  private readonly byLabels: SeriesByLabels<L, DurationSeries>;

  constructor(
    labelNames: readonly L[],
    private readonly make: (labels: Record<string, string>) => DurationSeries,
  ) {
    this.byLabels = new SeriesByLabels(labelNames);
  }

  observe(labels: Record<L, string>, value: number): void {
    this.byLabels.find(labels, () => this.make({ ...labels })).observe(value);
  }
}

/**
 * A histogram whose series are looked up once (series()) and then observed without a label
 * hash, written as prom-client writes its histograms (buckets cumulative, +Inf, _sum, _count).
 * Registered in the registry as a metric of its own: prom-client's Histogram has no way to add
 * observations counted elsewhere.
 */
export class CallDurations {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly all: Array<{ labels: SeriesLabels; buckets: number[]; sum: number; count: number }> = [];
  /** Each label set's series, so asking again answers the same one (one line per label set in a scrape). */
  private readonly byLabels = new Map<string, DurationSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: number[],
  ) {}

  /** The series of `labels` (made on first use; the caller keeps it: see Metrics.cells and histogramSeries for the bound). */
  series(labels: SeriesLabels): DurationSeries {
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
    const known = this.byLabels.get(key);
    if (known) return known;
    const series = { labels, buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
    this.all.push(series);
    const bounds = this.bounds;
    const made: DurationSeries = {
      observe(seconds) {
        let i = 0;
        while (i < bounds.length && seconds > bounds[i]) i++;
        series.buckets[i]++;
        series.sum += seconds;
        series.count++;
      },
    };
    this.byLabels.set(key, made);
    return made;
  }

  /** The figures as prom-client's Histogram.get() gives them (what the registry writes out). */
  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.all) {
      if (s.count === 0) continue;
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.buckets[i];
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: "+Inf", ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

function grpcType(kind: string): string {
  switch (kind) {
    case "unary":
      return "unary";
    case "server_streaming":
      return "server_stream";
    case "client_streaming":
      return "client_stream";
    default:
      return "bidi_stream";
  }
}
