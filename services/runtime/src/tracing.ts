import type { Attributes, Context, Link, Span, Tracer } from "@opentelemetry/api";
import type { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { env as vars, loadConfig, type Env } from "./config.js";
import { setLogTraceApi } from "./trace-log-fields.js";

/**
 * OpenTelemetry traces, off unless an OTLP/HTTP endpoint is configured. While
 * off, every hook below returns at its first test: no span, no context, no
 * extra header or statement, and none of OpenTelemetry's packages is loaded
 * (they cost 60-90 ms of CPU in every process that loaded them): startTracing
 * imports them.
 */
interface On {
  api: typeof import("@opentelemetry/api");
  w3c: W3CTraceContextPropagator;
  tracer: Tracer;
  provider: BasicTracerProvider;
}
let on: On | undefined;
/** Set once by the first startTracing: a context manager stays registered with the API for the process's life. */
let contextManagerSet = false;

/** The W3C header carried by calls and events. */
export const TRACEPARENT_HEADER = "traceparent";
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export interface TracingOptions {
  /** OTLP/HTTP base URL (the collector's :4318); spans go to <endpoint>/v1/traces. */
  endpoint: string;
  /** service.name of the exported resource. */
  serviceName: string;
  /** Export delay for batched spans (default 1000 ms). */
  exportDelayMs?: number;
  /**
   * Share of new traces recorded, 0 to 1 (default 1: all). Parent-based: a
   * call or event that continues a trace keeps its caller's decision, so a
   * trace is whole or absent, never cut in the middle.
   */
  sampleRatio?: number;
}

export interface Tracing {
  /** Exports what is pending: every span ended before the call has reached the collector. */
  flush(): Promise<void>;
  /** Exports what is pending and turns tracing off. */
  stop(): Promise<void>;
}

/**
 * Reads OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME and the sampler
 * (OTEL_TRACES_SAMPLER, only parentbased_traceidratio, with its ratio in
 * OTEL_TRACES_SAMPLER_ARG, as OpenTelemetry's SDKs name them); undefined when
 * no endpoint is set (tracing off).
 */
export function tracingConfig(env: Env = process.env, serviceName = "ttip"): TracingOptions | undefined {
  const config = loadConfig(
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: vars.url(["http", "https"]).optional(),
      OTEL_TRACES_SAMPLER: z.enum(["parentbased_traceidratio"], { message: "only parentbased_traceidratio (its ratio in OTEL_TRACES_SAMPLER_ARG)" }).optional(),
      OTEL_TRACES_SAMPLER_ARG: z.coerce.number({ message: "must be a ratio from 0 to 1" }).min(0, "must be a ratio from 0 to 1").max(1, "must be a ratio from 0 to 1").default(1),
    },
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined,
      OTEL_TRACES_SAMPLER: env.OTEL_TRACES_SAMPLER || undefined,
      OTEL_TRACES_SAMPLER_ARG: env.OTEL_TRACES_SAMPLER_ARG || undefined,
    },
  );
  if (!config.OTEL_EXPORTER_OTLP_ENDPOINT) return undefined;
  return { endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: env.OTEL_SERVICE_NAME || serviceName, sampleRatio: config.OTEL_TRACES_SAMPLER_ARG };
}

/**
 * Turns tracing on for this process (one exporter for every service it hosts),
 * loading OpenTelemetry's SDK and exporter only now.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const ratio = options.sampleRatio ?? 1;
  if (!(ratio >= 0 && ratio <= 1)) throw new Error(`sampleRatio must be from 0 to 1, not ${ratio}`);
  if (on) throw new Error("tracing already started");
  const [api, core, asyncHooks, otlp, resources, sdk] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/core"),
    import("@opentelemetry/context-async-hooks"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base"),
  ]);
  // Checked again: two calls may both have passed the first test while the packages loaded.
  if (on) throw new Error("tracing already started");
  if (!contextManagerSet) {
    api.context.setGlobalContextManager(new asyncHooks.AsyncLocalStorageContextManager().enable());
    contextManagerSet = true;
  }
  const exporter = new otlp.OTLPTraceExporter({ url: `${options.endpoint.replace(/\/+$/, "")}/v1/traces` });
  const provider = new sdk.BasicTracerProvider({
    resource: resources.resourceFromAttributes({ "service.name": options.serviceName }),
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter, { scheduledDelayMillis: options.exportDelayMs ?? 1000, maxQueueSize: 4096 })],
  });
  const started: On = { api, w3c: new core.W3CTraceContextPropagator(), tracer: provider.getTracer("ttip"), provider };
  on = started;
  setLogTraceApi(api.trace);
  return {
    // The processor's flush sends what is buffered but does not wait for an export its timer
    // already began; the exporter's waits for every send in flight.
    flush: async () => {
      await provider.forceFlush();
      await exporter.forceFlush();
    },
    stop: async () => {
      if (on === started) {
        on = undefined;
        setLogTraceApi(undefined);
      }
      await provider.shutdown();
    },
  };
}

/** Whether spans are being recorded. */
export function tracingEnabled(): boolean {
  return on !== undefined;
}

function traceparentOf(t: On, ctx: Context): string | undefined {
  const carrier: Record<string, string> = {};
  t.w3c.inject(ctx, carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier[TRACEPARENT_HEADER];
}

/** The active span's traceparent, stored with an outbox row; undefined when off. */
export function currentTraceparent(): string | undefined {
  return on ? traceparentOf(on, on.api.context.active()) : undefined;
}

/** Only a well-formed traceparent travels (it is inlined into SQL and headers). */
export function validTraceparent(value: string | null | undefined): string | undefined {
  return value && TRACEPARENT.test(value) ? value : undefined;
}

function contextFrom(t: On, traceparent: string | undefined): Context {
  const root = t.api.ROOT_CONTEXT;
  if (!traceparent) return root;
  return t.w3c.extract(root, { traceparent }, { get: (c, k) => c[k as "traceparent"], keys: (c) => Object.keys(c) });
}

async function inSpan<T>(t: On, span: Span, ctx: Context, fn: () => Promise<T>): Promise<T> {
  try {
    return await t.api.context.with(t.api.trace.setSpan(ctx, span), fn);
  } catch (err) {
    span.setStatus({ code: t.api.SpanStatusCode.ERROR, message: err instanceof Error ? err.message.slice(0, 200) : "error" });
    if (err instanceof ConnectError) span.setAttribute("rpc.grpc.status_code", err.code);
    throw err;
  } finally {
    span.end();
  }
}

/**
 * One interceptor for both sides of a Connect call: a server span continues
 * the caller's traceparent; a client span is a child of the active span and
 * sends its traceparent on.
 */
export function tracingInterceptor(side: "server" | "client"): Interceptor {
  return (next) => (req) => {
    const t = on;
    if (!t) return next(req);
    const { SpanKind, context, trace } = t.api;
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const attributes = { "rpc.system": "connect_rpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name };
    if (side === "server") {
      const parent = contextFrom(t, validTraceparent(req.header.get(TRACEPARENT_HEADER)));
      const span = t.tracer.startSpan(rpc, { kind: SpanKind.SERVER, attributes }, parent);
      return inSpan(t, span, parent, () => next(req));
    }
    const span = t.tracer.startSpan(rpc, { kind: SpanKind.CLIENT, attributes });
    const traceparent = traceparentOf(t, trace.setSpan(context.active(), span));
    if (traceparent) req.header.set(TRACEPARENT_HEADER, traceparent);
    return inSpan(t, span, context.active(), () => next(req));
  };
}

/**
 * Runs a call to a store (a PostgreSQL statement, a Redis command) in a client
 * span, only inside a trace: background polls (the outbox relay, sweepers)
 * would otherwise start a trace per statement.
 */
export function inClientSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const t = on;
  if (!t || !t.api.trace.getActiveSpan()) return fn();
  return inSpan(t, t.tracer.startSpan(name, { kind: t.api.SpanKind.CLIENT, attributes }), t.api.context.active(), fn);
}

/**
 * Runs fn in a server span for a plain HTTP request (a provider's webhook):
 * the child of its traceparent if it sent one, else a new trace, so the events
 * it writes carry a trace too. Named by method and first path segment only
 * (callback paths hold tokens).
 */
export function inHttpServerSpan(method: string, url: string, traceparent: string | undefined, fn: () => Promise<void>): Promise<void> {
  const t = on;
  if (!t) return fn();
  const route = `/${url.split("?", 1)[0].split("/")[1] ?? ""}`;
  const parent = contextFrom(t, validTraceparent(traceparent));
  const span = t.tracer.startSpan(`${method} ${route}`, { kind: t.api.SpanKind.SERVER, attributes: { "http.request.method": method, "http.route": route } }, parent);
  return inSpan(t, span, parent, fn);
}

/**
 * The traceparent of a new trace for an event written outside any (by a
 * background job: a sweeper, a reconciliation pass): one producer span, begun
 * and ended as the relay publishes it, so its consumers still share a trace.
 * Undefined when off.
 */
export function producerTraceparent(subject: string): string | undefined {
  const t = on;
  if (!t) return undefined;
  const { ROOT_CONTEXT, SpanKind, trace } = t.api;
  const span = t.tracer.startSpan(`publish ${subject}`, { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "nats", "messaging.destination.name": subject } }, ROOT_CONTEXT);
  span.end();
  return traceparentOf(t, trace.setSpan(ROOT_CONTEXT, span));
}

/**
 * Runs an event consumer's work in a span: the child of the traceparent the
 * event was written with (one event), or linked to each (a batch).
 */
export function inConsumerSpan<T>(name: string, traceparents: (string | undefined)[], fn: () => Promise<T>): Promise<T> {
  const t = on;
  if (!t) return fn();
  const { ROOT_CONTEXT, SpanKind, trace } = t.api;
  const attributes = { "messaging.system": "nats", "messaging.operation": "process", "messaging.batch.message_count": traceparents.length };
  if (traceparents.length === 1) {
    const parent = contextFrom(t, validTraceparent(traceparents[0]));
    return inSpan(t, t.tracer.startSpan(name, { kind: SpanKind.CONSUMER, attributes }, parent), parent, fn);
  }
  const links: Link[] = [];
  for (const tp of traceparents.slice(0, 128)) {
    const spanContext = trace.getSpanContext(contextFrom(t, validTraceparent(tp)));
    if (spanContext) links.push({ context: spanContext });
  }
  return inSpan(t, t.tracer.startSpan(name, { kind: SpanKind.CONSUMER, attributes, links }, ROOT_CONTEXT), ROOT_CONTEXT, fn);
}

/** Starts tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set; undefined (off) otherwise. */
export async function tracingFromEnv(serviceName: string, env: Env = process.env): Promise<Tracing | undefined> {
  const options = tracingConfig(env, serviceName);
  return options ? startTracing(options) : undefined;
}
