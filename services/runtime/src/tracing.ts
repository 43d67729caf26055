import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace, type Attributes, type Context, type Link, type Span, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { env as vars, loadConfig, type Env } from "./config.js";

/**
 * OpenTelemetry traces, off unless an OTLP/HTTP endpoint is configured. While
 * off, every hook below returns at its first test: no span, no context, no
 * extra header or statement.
 */
let tracer: Tracer | undefined;
let provider: BasicTracerProvider | undefined;
const w3c = new W3CTraceContextPropagator();
let contextManager: AsyncLocalStorageContextManager | undefined;

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
  /** Exports what is pending. */
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

/** Turns tracing on for this process (one exporter for every service it hosts). */
export function startTracing(options: TracingOptions): Tracing {
  if (provider) throw new Error("tracing already started");
  if (!contextManager) {
    contextManager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(contextManager);
  }
  const exporter = new OTLPTraceExporter({ url: `${options.endpoint.replace(/\/+$/, "")}/v1/traces` });
  const ratio = options.sampleRatio ?? 1;
  if (!(ratio >= 0 && ratio <= 1)) throw new Error(`sampleRatio must be from 0 to 1, not ${ratio}`);
  const started = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: options.exportDelayMs ?? 1000, maxQueueSize: 4096 })],
  });
  provider = started;
  tracer = started.getTracer("ttip");
  return {
    flush: () => started.forceFlush(),
    stop: async () => {
      if (provider === started) {
        provider = undefined;
        tracer = undefined;
      }
      await started.shutdown();
    },
  };
}

/** Whether spans are being recorded. */
export function tracingEnabled(): boolean {
  return tracer !== undefined;
}

/** trace_id and span_id of the active span, for log lines (a pino mixin). */
export function traceLogFields(): Record<string, string> {
  if (!tracer) return {};
  const span = trace.getActiveSpan()?.spanContext();
  return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
}

/** The active span's traceparent, stored with an outbox row; undefined when off. */
export function currentTraceparent(): string | undefined {
  if (!tracer) return undefined;
  const carrier: Record<string, string> = {};
  w3c.inject(context.active(), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier[TRACEPARENT_HEADER];
}

/** Only a well-formed traceparent travels (it is inlined into SQL and headers). */
export function validTraceparent(value: string | null | undefined): string | undefined {
  return value && TRACEPARENT.test(value) ? value : undefined;
}

function contextFrom(traceparent: string | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return w3c.extract(ROOT_CONTEXT, { traceparent }, { get: (c, k) => c[k as "traceparent"], keys: (c) => Object.keys(c) });
}

async function inSpan<T>(span: Span, ctx: Context, fn: () => Promise<T>): Promise<T> {
  try {
    return await context.with(trace.setSpan(ctx, span), fn);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message.slice(0, 200) : "error" });
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
    const active = tracer;
    if (!active) return next(req);
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const attributes = { "rpc.system": "connect_rpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name };
    if (side === "server") {
      const parent = contextFrom(validTraceparent(req.header.get(TRACEPARENT_HEADER)));
      const span = active.startSpan(rpc, { kind: SpanKind.SERVER, attributes }, parent);
      return inSpan(span, parent, () => next(req));
    }
    const span = active.startSpan(rpc, { kind: SpanKind.CLIENT, attributes });
    const carrier: Record<string, string> = {};
    w3c.inject(trace.setSpan(context.active(), span), carrier, { set: (c, k, v) => (c[k] = v) });
    if (carrier[TRACEPARENT_HEADER]) req.header.set(TRACEPARENT_HEADER, carrier[TRACEPARENT_HEADER]);
    return inSpan(span, context.active(), () => next(req));
  };
}

/**
 * Runs a call to a store (a PostgreSQL statement, a Redis command) in a client
 * span, only inside a trace: background polls (the outbox relay, sweepers)
 * would otherwise start a trace per statement.
 */
export function inClientSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const active = tracer;
  if (!active || !trace.getActiveSpan()) return fn();
  return inSpan(active.startSpan(name, { kind: SpanKind.CLIENT, attributes }), context.active(), fn);
}

/**
 * Runs fn in a server span for a plain HTTP request (a provider's webhook):
 * the child of its traceparent if it sent one, else a new trace, so the events
 * it writes carry a trace too. Named by method and first path segment only
 * (callback paths hold tokens).
 */
export function inHttpServerSpan(method: string, url: string, traceparent: string | undefined, fn: () => Promise<void>): Promise<void> {
  const active = tracer;
  if (!active) return fn();
  const route = `/${url.split("?", 1)[0].split("/")[1] ?? ""}`;
  const parent = contextFrom(validTraceparent(traceparent));
  const span = active.startSpan(`${method} ${route}`, { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "http.route": route } }, parent);
  return inSpan(span, parent, fn);
}

/**
 * The traceparent of a new trace for an event written outside any (by a
 * background job: a sweeper, a reconciliation pass): one producer span, begun
 * and ended as the relay publishes it, so its consumers still share a trace.
 * Undefined when off.
 */
export function producerTraceparent(subject: string): string | undefined {
  const active = tracer;
  if (!active) return undefined;
  const span = active.startSpan(`publish ${subject}`, { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "nats", "messaging.destination.name": subject } }, ROOT_CONTEXT);
  span.end();
  const carrier: Record<string, string> = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier[TRACEPARENT_HEADER];
}

/**
 * Runs an event consumer's work in a span: the child of the traceparent the
 * event was written with (one event), or linked to each (a batch).
 */
export function inConsumerSpan<T>(name: string, traceparents: (string | undefined)[], fn: () => Promise<T>): Promise<T> {
  const active = tracer;
  if (!active) return fn();
  const attributes = { "messaging.system": "nats", "messaging.operation": "process", "messaging.batch.message_count": traceparents.length };
  if (traceparents.length === 1) {
    const parent = contextFrom(validTraceparent(traceparents[0]));
    return inSpan(active.startSpan(name, { kind: SpanKind.CONSUMER, attributes }, parent), parent, fn);
  }
  const links: Link[] = [];
  for (const tp of traceparents.slice(0, 128)) {
    const spanContext = trace.getSpanContext(contextFrom(validTraceparent(tp)));
    if (spanContext) links.push({ context: spanContext });
  }
  return inSpan(active.startSpan(name, { kind: SpanKind.CONSUMER, attributes, links }, ROOT_CONTEXT), ROOT_CONTEXT, fn);
}

/** Starts tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set; undefined (off) otherwise. */
export function tracingFromEnv(serviceName: string, env: Env = process.env): Tracing | undefined {
  const options = tracingConfig(env, serviceName);
  return options ? startTracing(options) : undefined;
}
