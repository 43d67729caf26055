// Item 8: SMS pumping. Codes go only to allowed country codes, within daily
// budgets per number range and in all; refusals are precise and counted.
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { PLAIN_PHONE_SUFFIX_FROM } from "@ttip/runtime/testing";
import { randomIp, startHarness, type Harness } from "./harness.js";

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e) => ConnectError.from(e));
// A number in a range, ending as a plain test number: one ending 0000 is refused by the SMS simulator.
const inRange = (prefix: string) => `${prefix}${String(randomInt(0, 100)).padStart(2, "0")}${randomInt(PLAIN_PHONE_SUFFIX_FROM, 10_000)}`;

describe("OTP country allow-list and daily budgets", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ AUTH_OTP_DAILY_PER_PREFIX: "2", AUTH_OTP_DAILY_TOTAL: "3" });
  });
  after(() => h?.close());

  test("item 8: a number outside the allowed countries gets no SMS and INVALID_ARGUMENT naming phone", async () => {
    const sent = h.sim.messages.length;
    for (const phone of ["+15550100199", "+447700900123", "254123456"]) {
      const err = await refusal(h.api(undefined, randomIp()).startPhoneVerification({ phone }));
      assert.equal(err?.code, Code.InvalidArgument, `${phone}: ${err?.message}`);
      assert.match(err!.rawMessage, /^phone: .*\+254/);
    }
    assert.equal(h.sim.messages.length, sent, "no SMS paid for");
  });

  test("item 8: per-range and total daily budgets answer RESOURCE_EXHAUSTED and count the refusals", async () => {
    const range = `254${randomInt(700, 800)}`;
    for (let i = 0; i < 2; i++) await h.api(undefined, randomIp()).startPhoneVerification({ phone: inRange(range) });
    const perRange = await refusal(h.api(undefined, randomIp()).startPhoneVerification({ phone: inRange(range) }));
    assert.equal(perRange?.code, Code.ResourceExhausted);
    assert.match(perRange!.rawMessage, /range/);
    const other = range.startsWith("2547") ? "254110" : "254799";
    await h.api(undefined, randomIp()).startPhoneVerification({ phone: inRange(other) });
    const total = await refusal(h.api(undefined, randomIp()).startPhoneVerification({ phone: inRange("254111") }));
    assert.equal(total?.code, Code.ResourceExhausted);
    assert.match(total!.rawMessage, /budget of sign-in codes/);
    const metrics = await h.t.ctx.metrics.registry.metrics();
    assert.match(metrics, /ttip_auth_otp_total\{[^}]*outcome="refused_total"[^}]*\} 1/);
    assert.match(metrics, /ttip_auth_otp_total\{[^}]*outcome="refused_prefix"[^}]*\} 1/);
  });
});
