import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's SpanKind: 2 server, 3 client, 5 consumer. */
  kind: number;
  /** When it started, in nanoseconds since the epoch (a decimal string, as OTLP/JSON sends it). */
  startTimeUnixNano?: string;
  attributes?: { key: string; value: { stringValue?: string } }[];
  /** The exporting process's service.name (its resource's). */
  service: string;
}

/** A span's string attribute ("" when absent). */
export function spanAttribute(span: ReceivedSpan, key: string): string {
  return span.attributes?.find((a) => a.key === key)?.value.stringValue ?? "";
}

/**
 * An OTLP/HTTP collector on loopback: keeps the spans of every JSON export it receives.
 * holdMs keeps each export that long before taking it (a slow network or collector).
 */
export async function startOtlpReceiver(options: { holdMs?: number } = {}) {
  const spans: ReceivedSpan[] = [];
  let exports = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => setTimeout(() => {
      exports++;
      assert.equal(req.url, "/v1/traces");
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a: { key: string }) => a.key === "service.name")?.value.stringValue ?? "";
        for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans) spans.push({ ...span, service });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    }, options.holdMs ?? 0));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, exports: () => exports, close: () => new Promise<void>((r) => server.close(() => r())) };
}
