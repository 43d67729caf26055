import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

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
      let res;
      try {
        res = await next(req);
      } catch (err) {
        finish(err);
        throw err;
      }
      if (!res.stream) {
        finish();
        return res;
      }
      const message = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* message;
          } catch (err) {
            finish(err);
            throw err;
          }
          finish();
        })(),
      };
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
