import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import {
  consumeEvents,
  createPeers,
  JetStreamBus,
  Metrics,
  RedisCache,
  startService,
  startTracing,
  withTransaction,
  writeOutbox,
  type RunningServer,
  type RunningService,
  type ServiceModule,
} from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { startGateway } from "../src/index.js";

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
}

/** An OTLP/HTTP collector on loopback: keeps the spans of every JSON export it receives. */
async function startReceiver() {
  const spans: ReceivedSpan[] = [];
  let exports = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      exports++;
      assert.equal(req.url, "/v1/traces");
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, exports: () => exports, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const SUBJECT = "ttip.qrtrace.resolved";

describe("tracing: gateway -> service -> outbox -> NATS -> consumer", () => {
  const { logger, records } = captureLogger("info");
  let db: TestDatabase;
  let cache: RedisCache;
  let bus: JetStreamBus;
  let service: RunningService;
  let gateway: RunningServer;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const consumed: string[] = [];

  // ResolveQrCode is anonymous at the gateway: its handler writes two events,
  // one through writeOutbox and one by a plain INSERT (as services' SQL does).
  const traced: ServiceModule = {
    name: "qr",
    services: [QrService],
    routes: (router, ctx) =>
      void router.service(QrService, {
        async resolveQrCode(req) {
          await withTransaction(ctx.pool, async (tx) => {
            await writeOutbox(tx, "qr", { id: randomUUID(), subject: SUBJECT, data: new TextEncoder().encode(req.code.value ?? "") });
            await tx.query("INSERT INTO qr.outbox (event_id, subject, payload) VALUES ($1, $2, $3)", [randomUUID(), SUBJECT, Buffer.from("raw")]);
          });
          return {};
        },
      }),
    start: async (ctx) => {
      const sub = await consumeEvents({
        bus: ctx.bus,
        pool: ctx.pool,
        schema: "qr",
        consumer: uniqueName("trace"),
        subject: SUBJECT,
        logger: ctx.logger,
        handle: async (message) => {
          ctx.logger.info({ eventId: message.id }, "traced event applied");
          consumed.push(message.id);
        },
      });
      return () => sub.stop();
    },
  };

  before(async () => {
    receiver = await startReceiver();
    db = await createTestDatabase();
    cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream: uniqueName("S").toUpperCase(), subjectPrefix: uniqueName("ev"), logger, redeliveryDelayMs: 100 });
    const ctx = { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers: createPeers(() => undefined) };
    service = await startService(traced, ctx);
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache,
      backends: [{ service: QrService, url: service.server.url }],
      rateLimit: { points: 1000, durationSeconds: 60 },
      corsOrigins: [],
    });
  });

  after(async () => {
    await gateway.close();
    await service.close();
    await bus.close();
    await cache.close();
    await db.drop();
    await receiver.close();
  });

  const client = () => createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));

  test("off (no endpoint): nothing is exported, no trace ids in logs or outbox rows", async () => {
    const before = consumed.length;
    await client().resolveQrCode({ code: { case: "shortCode", value: "OFF1" } });
    await eventually("both events consumed", () => consumed.length === before + 2);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM qr.outbox WHERE traceparent IS NOT NULL");
    assert.equal(rows[0].n, 0);
    assert.ok(records().some((r) => r.msg === "traced event applied"));
    assert.ok(records().every((r) => r.trace_id === undefined));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(receiver.exports(), 0);
  });

  test("on: one trace id from the caller's traceparent through gateway, service and both events' consumers; logs carry it", async () => {
    const tracing = startTracing({ endpoint: receiver.url, serviceName: "ttip-test", exportDelayMs: 50 });
    try {
      const traceId = randomUUID().replaceAll("-", "");
      const callerSpan = "00f067aa0ba902b7";
      const before = consumed.length;
      await client().resolveQrCode({ code: { case: "shortCode", value: "ON12" } }, { headers: { traceparent: `00-${traceId}-${callerSpan}-01` } });
      await eventually("both events consumed", () => consumed.length === before + 2);
      await tracing.flush();

      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const rpc = "ttip.qr.v1.QrService/ResolveQrCode";
      const SERVER = 2, CLIENT = 3, CONSUMER = 5;
      const gatewayServer = spans.find((s) => s.name === rpc && s.kind === SERVER && s.parentSpanId === callerSpan);
      assert.ok(gatewayServer, `gateway's server span continues the caller's: ${JSON.stringify(spans)}`);
      const gatewayClient = spans.find((s) => s.name === rpc && s.kind === CLIENT && s.parentSpanId === gatewayServer.spanId);
      assert.ok(gatewayClient, "gateway's call to the service is its child");
      const serviceServer = spans.find((s) => s.name === rpc && s.kind === SERVER && s.parentSpanId === gatewayClient.spanId);
      assert.ok(serviceServer, "the service's span is the child of the gateway's call");
      const consumers = spans.filter((s) => s.kind === CONSUMER);
      assert.equal(consumers.length, 2, "both events (writeOutbox and a plain INSERT) reach their consumer in the trace");
      for (const c of consumers) assert.equal(c.parentSpanId, serviceServer.spanId);

      const applied = records().filter((r) => r.msg === "traced event applied" && r.trace_id !== undefined);
      assert.equal(applied.length, 2);
      for (const line of applied) {
        assert.equal(line.trace_id, traceId);
        assert.ok(consumers.some((c) => c.spanId === line.span_id), "the log line names its consumer span");
      }
      const { rows } = await db.pool.query("SELECT traceparent FROM qr.outbox WHERE traceparent IS NOT NULL");
      assert.equal(rows.length, 2);
      for (const r of rows) assert.equal(r.traceparent, `00-${traceId}-${serviceServer.spanId}-01`);
    } finally {
      await tracing.stop();
    }
  });
});
