// The active span's ids for log lines, apart from tracing.ts: every process makes a logger, and
// tracing.ts loads zod (its configuration) and @connectrpc/connect (its interceptor), about 250 ms
// of CPU a process that would need neither otherwise. startTracing hands its API in here.
import type { TraceAPI } from "@opentelemetry/api";

let trace: TraceAPI | undefined;

/** Set by startTracing while spans are recorded; undefined while tracing is off. */
export function setLogTraceApi(api: TraceAPI | undefined): void {
  trace = api;
}

/** trace_id and span_id of the active span, for log lines (a pino mixin). */
export function traceLogFields(): Record<string, string> {
  if (!trace) return {};
  const span = trace.getActiveSpan()?.spanContext();
  return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
}
