// Payment registers its paybill (C2B) URLs in the background from its start,
// and can only once its own address is known. The embedded platform used to
// learn that address after the whole platform and the web app had started
// (tens of seconds on a busy machine), while the registration then gave up
// after about a minute. Each service's address is now known the moment it listens.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { InProcessBus, MemoryCache, Metrics, type ServiceModule } from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually, type TestDatabase } from "@ttip/runtime/testing";
import type { DarajaSimulator } from "@ttip/payment/testing";
// Payment's own list (not exported by its package): the words its client and simulator refuse.
import { bannedUrlWord } from "../../services/payment/src/daraja/client.js";
import { c2bUrlToken, startDaraja } from "../src/embedded.js";
import { createModules } from "../src/modules.js";
import { startPlatform, type Platform } from "../src/platform.js";

describe("the platform's services learn each other's addresses as each listens", () => {
  let db: TestDatabase;
  let daraja: DarajaSimulator | undefined;
  let platform: Platform | undefined;
  const { logger } = captureLogger("silent");
  const bus = new InProcessBus(logger);

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await platform?.close();
    await bus.close();
    await daraja?.close();
    await db?.drop();
  });

  test("payment's C2B URLs are registered while a part started after it is still starting", async () => {
    // The M-Pesa simulator and payment's settings exactly as the embedded platform makes them.
    const vars: Record<string, string | undefined> = {};
    daraja = await startDaraja(vars);
    const sim = daraja!;
    const urls = new Map<string, string>();
    const payment = createModules({ env: vars, paymentCallbackBaseUrl: () => urls.get("payment") }).find((m) => m.name === "payment")!;
    // Starts only once payment has registered (or fails the start): a slow part after payment, as the web app is.
    const later: ServiceModule = {
      name: "later_part",
      services: [],
      routes: () => undefined,
      start: async () => {
        await eventually("payment's C2B URLs registered", () => sim.c2b.registrations().length > 0, { timeoutMs: 30_000, everyMs: 50 });
        return async () => undefined;
      },
    };
    platform = await startPlatform({
      modules: [payment, later],
      ctx: { logger, pool: db.pool, bus, cache: new MemoryCache(), metrics: new Metrics() },
      urls,
      gateway: { rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [], host: "127.0.0.1", port: 0 },
    });
    const [registered] = sim.c2b.registrations();
    assert.equal(registered.confirmationUrl, `${urls.get("payment")}/c2b/${vars.C2B_URL_TOKEN}/confirmation`);
    assert.equal(platform.urls, urls, "the platform's map is the one its services read");
  });
});

describe("the embedded platform's C2B URL token", () => {
  test("never holds a word Safaricom refuses in a registered URL, so its registration cannot be refused every time", () => {
    // base64url tokens hold one about once in 500; this many would show dozens.
    const tokens = Array.from({ length: 20_000 }, () => c2bUrlToken());
    const refused = tokens.filter((t) => bannedUrlWord(`http://127.0.0.1:1/c2b/${t}/confirmation`));
    assert.deepEqual(refused.slice(0, 5), []);
    for (const t of tokens.slice(0, 100)) assert.match(t, /^[A-Za-z0-9_-]{16,64}$/, "what payment's C2B_URL_TOKEN accepts");
    assert.equal(new Set(tokens).size, tokens.length);
  });
});
