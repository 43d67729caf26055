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
    try {
      // start() returns at the process's exit; its bound (the default 60 s of every start here, not 10 s)
      // only ends a process that neither exits nor serves: at load 29 the exit came after 20 s.
      const failed = await broken.start().then(() => undefined, (e: Error) => e);
      assert.ok(failed, "the wallet started and served without DATABASE_URL, NATS_URL and INTERNAL_SIGNING_KEY");
      assert.match(failed.message, /exited with 78/);
      for (const name of ["DATABASE_URL", "NATS_URL", "INTERNAL_SIGNING_KEY"]) assert.match(failed.message, new RegExp(name), `the error names ${name}`);
    } finally {
      await broken.kill();
    }
  });
});
