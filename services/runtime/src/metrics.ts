import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
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
  readonly handling: Histogram<"grpc_type" | "grpc_service" | "grpc_method">;

  constructor(defaultLabels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(defaultLabels);
    collectDefaultMetrics({ register: this.registry });
    const labelNames = ["grpc_type", "grpc_service", "grpc_method"] as const;
    this.started = new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames,
      registers: [this.registry],
    });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...labelNames, "grpc_code"],
      registers: [this.registry],
    });
    this.handling = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of RPCs handled by the server.",
      labelNames,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
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
    return (next) => async (req) => {
      const labels = {
        grpc_type: grpcType(req.method.methodKind),
        grpc_service: req.service.typeName,
        grpc_method: req.method.name,
      };
      this.started.inc(labels);
      const stop = this.handling.startTimer(labels);
      const finish = (err?: unknown) => {
        stop();
        this.handled.inc({ ...labels, grpc_code: codeName(err === undefined ? undefined : ConnectError.from(err).code) });
      };
      return nextThen(next, req, finish);
    };
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
