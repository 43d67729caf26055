import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
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
  tracingConfig,
  withTransaction,
  writeOutbox,
  type Pool,
  type RunningServer,
  type RunningService,
  type ServiceModule,
} from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually, spanAttribute, startOtlpReceiver, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { startGateway } from "../src/index.js";

const SUBJECT = "ttip.qrtrace.resolved";

async function writeHookEvent(pool: Pool, url: string) {
  await withTransaction(pool, (tx) => writeOutbox(tx, "qr", { id: randomUUID(), subject: SUBJECT, data: new TextEncoder().encode(url) }));
}

describe("tracing: gateway -> service -> outbox -> NATS -> consumer", () => {
  const { logger, records } = captureLogger("info");
  let db: TestDatabase;
  let cache: RedisCache;
  let bus: JetStreamBus;
  let service: RunningService;
  let gateway: RunningServer;
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
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
          await ctx.cache.set(`seen:${req.code.value ?? ""}`, "1", 60);
          return {};
        },
      }),
    // A provider's webhook: a plain HTTP POST whose handler writes an event.
    http: (ctx) => (req, res) => {
      if (req.method !== "POST" || !req.url?.startsWith("/hook/")) return false;
      void writeHookEvent(ctx.pool, req.url).then(() => res.writeHead(200).end("ok"), () => res.writeHead(500).end());
      return true;
    },
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
    receiver = await startOtlpReceiver();
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
    const tracing = await startTracing({ endpoint: receiver.url, serviceName: "ttip-test", exportDelayMs: 50 });
    try {
      const traceId = randomUUID().replaceAll("-", "");
      const callerSpan = "00f067aa0ba902b7";
      const before = consumed.length;
      await client().resolveQrCode({ code: { case: "shortCode", value: "ON12" } }, { headers: { traceparent: `00-${traceId}-${callerSpan}-01` } });
      await eventually("both events consumed", () => consumed.length === before + 2);
      const SERVER = 2, CLIENT = 3, CONSUMER = 5;
      // A consumer span ends after its handler returns (the inbox's commit): flushed once both have.
      // The gateway's rate limit charge goes to Redis up to 50 ms after the call passed (its
      // FLUSH_MS): on a quiet machine both events may be consumed before it.
      await eventually("both consumer spans and the rate limit's charge exported", async () => {
        await tracing.flush();
        const traced = receiver.spans.filter((s) => s.traceId === traceId);
        return traced.filter((s) => s.kind === CONSUMER).length >= 2 && traced.some((s) => s.kind === CLIENT && s.name.startsWith("redis ") && s.name !== "redis set");
      });

      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const rpc = "ttip.qr.v1.QrService/ResolveQrCode";
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

      // The stores' calls, as client spans of the call that made them: the transaction's
      // statements (text with placeholders, never values), the handler's cache write and
      // the gateway's rate limit check.
      const statements = spans.filter((s) => s.kind === CLIENT && s.name.startsWith("pg ") && s.parentSpanId === serviceServer.spanId).map((s) => s.name);
      assert.deepEqual(statements.filter((n) => n !== "pg SELECT").sort(), ["pg BEGIN", "pg COMMIT", "pg INSERT", "pg INSERT"]);
      const inserts = spans.filter((s) => s.name === "pg INSERT");
      assert.ok(inserts.some((s) => /^INSERT INTO "qr"\.outbox \(event_id, subject, payload, traceparent\) VALUES \(\$1, \$2, \$3, \$4\)$/.test(spanAttribute(s, "db.statement"))), "writeOutbox's statement, placeholders only");
      assert.ok(inserts.every((s) => spanAttribute(s, "db.system") === "postgresql"));
      assert.ok(spans.some((s) => s.kind === CLIENT && s.name === "redis set" && s.parentSpanId === serviceServer.spanId), `the cache write: ${spans.map((s) => s.name)}`);
      assert.ok(spans.some((s) => s.kind === CLIENT && s.name.startsWith("redis ") && s.parentSpanId === gatewayServer.spanId), "the gateway's rate limit check");
      assert.ok(!receiver.spans.some((s) => s.name.startsWith("pg ") && !s.parentSpanId), "no statement outside a trace (the relay's polls) starts one");
    } finally {
      await tracing.stop();
    }
  });

  test("a webhook (plain HTTP POST) gets a server span (a new trace: providers send none) named without its token, and the events it writes carry it", async () => {
    const tracing = await startTracing({ endpoint: receiver.url, serviceName: "ttip-test", exportDelayMs: 50 });
    try {
      const before = consumed.length;
      const token = randomUUID();
      const res = await fetch(`${service.server.url}/hook/${token}`, { method: "POST", body: "{}" });
      assert.equal(res.status, 200);
      await eventually("the hook's event consumed", () => consumed.length === before + 1);
      await tracing.flush();
      const server = receiver.spans.find((s) => s.name === "POST /hook" && s.kind === 2);
      assert.ok(server, "named by method and first segment: the token stays out");
      assert.equal(server.parentSpanId || undefined, undefined, "a new trace: the provider sent none");
      const { rows } = await db.pool.query("SELECT traceparent FROM qr.outbox WHERE position($1 in encode(payload, 'escape')) > 0", [token]);
      assert.equal(rows[0].traceparent, `00-${server.traceId}-${server.spanId}-01`);
      // The consumer's span ends after its transaction commits, a little after the handler ran.
      await eventually("its event's consumer continues it", async () => {
        await tracing.flush();
        return receiver.spans.some((s) => s.kind === 5 && s.parentSpanId === server.spanId);
      });
      assert.ok(!receiver.spans.some((s) => s.name.includes(token)));
    } finally {
      await tracing.stop();
    }
  });

  test("an event written outside any trace (a background job's) gets one from the relay: a producer span its consumer continues", async () => {
    const tracing = await startTracing({ endpoint: receiver.url, serviceName: "ttip-test", exportDelayMs: 50 });
    try {
      const before = consumed.length;
      const token = randomUUID();
      await writeHookEvent(db.pool, token);
      await eventually("its consumer's span under a producer span", async () => {
        await tracing.flush();
        const producer = receiver.spans.find((s) => s.kind === 4 && s.name === `publish ${SUBJECT}` && !s.parentSpanId);
        return producer && receiver.spans.some((s) => s.kind === 5 && s.parentSpanId === producer.spanId);
      });
      assert.equal(consumed.length, before + 1);
      const { rows } = await db.pool.query("SELECT traceparent FROM qr.outbox WHERE position($1 in encode(payload, 'escape')) > 0", [token]);
      assert.equal(rows[0].traceparent, null, "the row was written with no trace; the bus message got one");
    } finally {
      await tracing.stop();
    }
  });

  test("sampling: a ratio of 0 records no new trace, but a call continuing a sampled trace is recorded whole (parent-based)", async () => {
    const tracing = await startTracing({ endpoint: receiver.url, serviceName: "ttip-test", exportDelayMs: 50, sampleRatio: 0 });
    try {
      // A loaded machine may deliver the test before's last export after this point: only spans started
      // from here on are this test's (the 1 ms margin is the tracer's clock against Date.now).
      const startedNs = BigInt(Date.now() - 1) * 1_000_000n;
      const exported = receiver.spans.length;
      const before = consumed.length;
      await client().resolveQrCode({ code: { case: "shortCode", value: "NEW1" } });
      const unsampled = randomUUID().replaceAll("-", "");
      await client().resolveQrCode({ code: { case: "shortCode", value: "OUT1" } }, { headers: { traceparent: `00-${unsampled}-00f067aa0ba902b7-00` } });
      const sampled = randomUUID().replaceAll("-", "");
      await client().resolveQrCode({ code: { case: "shortCode", value: "IN12" } }, { headers: { traceparent: `00-${sampled}-00f067aa0ba902b7-01` } });
      await eventually("all six events consumed", () => consumed.length === before + 6);
      await eventually("the sampled trace's two consumer spans", async () => {
        await tracing.flush();
        return receiver.spans.slice(exported).filter((s) => s.kind === 5).length >= 2;
      });
      const fresh = receiver.spans.slice(exported).filter((s) => BigInt(s.startTimeUnixNano ?? "0") >= startedNs);
      // A loaded machine may still be finishing the tests before's sampled traces (a consumer's or the
      // relay's statements): their spans continue an older trace. A new trace would start with a root.
      const others = fresh.filter((s) => s.traceId !== sampled);
      const shown = JSON.stringify(others.map((s) => [s.traceId, s.name, s.parentSpanId]));
      assert.ok(others.every((s) => s.parentSpanId), `no new trace recorded: ${shown}`);
      assert.ok(!others.some((s) => s.traceId === unsampled), `nothing of the not-sampled caller's trace: ${shown}`);
      assert.equal(fresh.filter((s) => s.kind === 5).length, 2, "its events' consumers follow the caller's decision");
      const { rows } = await db.pool.query("SELECT traceparent FROM qr.outbox WHERE traceparent LIKE $1", [`00-${unsampled}-%`]);
      assert.equal(rows.length, 2);
      for (const r of rows) assert.match(r.traceparent, /-00$/, "the not-sampled decision travels with the event");
    } finally {
      await tracing.stop();
    }
  });

  test("the sampler's settings: parentbased_traceidratio with a ratio from 0 to 1 (default 1); anything else is refused by name", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" };
    assert.equal(tracingConfig(endpoint)?.sampleRatio, 1);
    assert.equal(tracingConfig({ ...endpoint, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" })?.sampleRatio, 0.25);
    assert.throws(() => tracingConfig({ ...endpoint, OTEL_TRACES_SAMPLER_ARG: "1.5" }), /OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1/);
    assert.throws(() => tracingConfig({ ...endpoint, OTEL_TRACES_SAMPLER_ARG: "half" }), /OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1/);
    assert.throws(() => tracingConfig({ ...endpoint, OTEL_TRACES_SAMPLER: "always_on" }), /OTEL_TRACES_SAMPLER: only parentbased_traceidratio/);
  });
});
