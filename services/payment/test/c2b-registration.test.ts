// Registering the C2B URLs in the background: a failure that may pass is
// retried until Daraja accepts; one that can never succeed stops the loop with
// an error saying what to fix. Daraja is the simulator over its real HTTP shape.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { captureLogger } from "@ttip/runtime/testing";
import { registerInBackground } from "../src/c2b.js";
import type { PaymentConfig } from "../src/config.js";
import { DarajaClient } from "../src/daraja/client.js";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "../src/testing.js";
import type { Deps } from "../src/tips.js";

const FAST = { firstRetryMs: 20, maxRetryMs: 50 };

describe("C2B URL registration in the background", () => {
  let sim: DarajaSimulator;
  before(async () => {
    sim = await startDarajaSimulator();
  });
  after(async () => {
    await sim.close();
  });

  /** The loop with `config` (read on every pass) and a captured log; `stopAfterMs` bounds a loop that would not end alone. */
  async function register(config: () => PaymentConfig, stopAfterMs = 3_000) {
    const { logger, records } = captureLogger("debug");
    const deps = { ctx: { logger }, config, daraja: () => new DarajaClient(config().daraja!) } as unknown as Deps;
    const stop = AbortSignal.timeout(stopAfterMs);
    await registerInBackground(deps, stop, FAST);
    return { endedAlone: !stop.aborted, records: records() };
  }
  const c2b = (shortCodes: string[]) => ({ pathToken: "tok3n", shortCodes, registerVersion: "v2" as const, responseType: "Completed" as const, registerOnStart: true, validationBudgetMs: 3_000 });

  test("a short code Daraja refuses is not retried: one attempt, an error naming what to check", async () => {
    const config = simulatedPaymentConfig(sim, { callbackBaseUrl: "https://tips.example", c2b: c2b(["999999"]) });
    const { endedAlone, records } = await register(() => config);
    assert.ok(endedAlone, "the loop ended by itself instead of retrying");
    assert.equal(records.filter((r) => r.msg === "C2B URL registration failed; retrying").length, 0);
    const errors = records.filter((r) => r.level === "error");
    assert.equal(errors.length, 1);
    assert.match(String(errors[0].msg), /not retried.*C2B_SHORT_CODES/);
    assert.equal(errors[0].httpStatus, 400);
    assert.equal(sim.c2b.registrations().length, 0);
  });

  test("an address learned after start holding a refused word is not sent nor retried", async () => {
    let base = "";
    const config = () => simulatedPaymentConfig(sim, { callbackBaseUrl: base, c2b: c2b([sim.options.shortcode]) });
    setTimeout(() => (base = "https://tips.example/mpesa-callbacks"), 100);
    const { endedAlone, records } = await register(config);
    assert.ok(endedAlone, "the loop ended by itself instead of retrying");
    const errors = records.filter((r) => r.level === "error");
    assert.equal(errors.length, 1);
    assert.match(String(errors[0].msg), /"mpesa".*PAYMENT_CALLBACK_BASE_URL/);
    assert.equal(sim.c2b.registrations().length, 0);
  });

  test("Daraja out of reach is retried until the URLs are registered", async () => {
    let daraja = { ...sim.clientConfig(), baseUrl: "http://127.0.0.1:9", timeoutMs: 500 };
    const config = () => simulatedPaymentConfig(sim, { daraja, callbackBaseUrl: "https://tips.example", c2b: c2b([sim.options.shortcode]) });
    setTimeout(() => (daraja = { ...sim.clientConfig(), timeoutMs: 2_000 }), 300);
    const { endedAlone, records } = await register(config, 20_000);
    assert.ok(endedAlone);
    assert.ok(records.filter((r) => r.msg === "C2B URL registration failed; retrying").length >= 1, "the unreachable Daraja was retried");
    assert.equal(records.filter((r) => r.level === "error").length, 0);
    assert.ok(records.some((r) => r.msg === "C2B URLs registered"));
    assert.equal(sim.c2b.registrations()[0]?.confirmationUrl, "https://tips.example/c2b/tok3n/confirmation");
  });
});
