import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { createTestDatabase, PlatformProcess, testEnv, type TestDatabase } from "@ttip/runtime/testing";
import { connect } from "nats";
import { PLATFORM_MAIN } from "../src/entry.js";
import { ownStream } from "./cluster-harness.js";

// Cluster mode: each role its own OS process from the one entry point, on real servers.
describe("cluster mode: one process per role", () => {
  let db: TestDatabase;
  let wallet: PlatformProcess;
  let gateway: PlatformProcess;
  const stream = ownStream();

  before(async () => {
    db = await createTestDatabase();
    const { redisUrl, natsUrl } = testEnv();
    const INTERNAL_SIGNING_KEY = randomBytes(32).toString("base64url");
    wallet = await PlatformProcess.create(PLATFORM_MAIN, "wallet", { DATABASE_URL: db.url, NATS_URL: natsUrl, ...stream, REDIS_URL: redisUrl, INTERNAL_SIGNING_KEY, DRAIN_DELAY_MS: "0" });
    const urls = Object.fromEntries(["AUTH", "PAYMENT", "QR", "NOTIFICATION", "ANALYTICS", "VENUE"].map((n) => [`${n}_URL`, "http://127.0.0.1:9"]));
    gateway = await PlatformProcess.create(PLATFORM_MAIN, "gateway", { ...urls, WALLET_URL: wallet.url, REDIS_URL: `${redisUrl}/0`, RATE_LIMIT_POINTS: "10000", INTERNAL_SIGNING_KEY, DRAIN_DELAY_MS: "0" });
    await wallet.start();
    await gateway.start();
  });
  after(async () => {
    await gateway.stop();
    await wallet.stop();
    await db.drop();
  });

  const walletHealth = () =>
    createClient(Health, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }))
      .check({ service: "ttip.wallet.v1.WalletService" }, { timeoutMs: 2_000 })
      .then((r) => Status[r.status], (e) => String(e.code));

  test("the wallet process's bus is this test's own stream and subjects, not the shared default", async () => {
    const nc = await connect({ servers: testEnv().natsUrl });
    try {
      // Made by the process as it connected (the wallet publishes through its outbox and consumes nothing).
      const info = await (await nc.jetstreamManager()).streams.info(stream.NATS_STREAM);
      assert.deepEqual(info.config.subjects, [`${stream.NATS_SUBJECT_PREFIX}.>`]);
    } finally {
      await nc.close();
    }
  });

  test("the gateway reaches the wallet process; a killed wallet is unavailable, then serves again after restart", async () => {
    assert.equal(await walletHealth(), "SERVING");
    await wallet.kill();
    assert.notEqual(await walletHealth(), "SERVING");
    await wallet.start();
    assert.equal(await walletHealth(), "SERVING");
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM wallet.schema_migrations`);
    assert.ok(rows[0].n >= 2, "migrations ran once and were found applied on restart");
  });

  test("a missing setting stops the process at start with the variable's name", async () => {
    const broken = await PlatformProcess.create(PLATFORM_MAIN, "wallet", { DATABASE_URL: "mysql://nope", NATS_URL: "", REDIS_URL: "" });
    await assert.rejects(broken.start(10_000), (e: Error) => /DATABASE_URL/.test(e.message) && /NATS_URL/.test(e.message) && /INTERNAL_SIGNING_KEY/.test(e.message) && /exited with 78/.test(e.message));
  });
});
