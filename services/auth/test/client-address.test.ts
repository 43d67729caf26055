// Item 1 of "bad input and trust boundaries": behind a proxy, the client is the
// right-most X-Forwarded-For address the trusted proxy added, never the entries
// the client wrote itself. Here the test client plays the ingress (loopback):
// it appends the address it "saw" after whatever the client sent.
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { randomIp, startHarness, type Harness } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

const fails = (p: Promise<unknown>) => p.then(() => "accepted", (e) => ConnectError.from(e).code);
const spoofed = () => `${randomInt(1, 223)}.${randomInt(0, 255)}.${randomInt(0, 255)}.${randomInt(1, 254)}`;

describe("client address behind trusted proxies", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ AUTH_OTP_PER_IP_PER_HOUR: "3" });
  });
  after(() => h?.close());

  test("item 1: rotating a spoofed first X-Forwarded-For entry does not escape the per-address OTP limit", async () => {
    const real = randomIp();
    for (let i = 0; i < 3; i++) await h.api(undefined, `${spoofed()}, ${real}`).startPhoneVerification({ phone: testPhone() });
    const sent = h.sim.messages.length;
    for (let i = 0; i < 5; i++) {
      assert.equal(await fails(h.api(undefined, `${spoofed()}, ${real}`).startPhoneVerification({ phone: testPhone() })), Code.ResourceExhausted);
    }
    assert.equal(h.sim.messages.length, sent, "no SMS paid for");
  });

  test("item 1: a spoofed allow-listed address in X-Forwarded-For does not open admin calls", async () => {
    const root = await h.signUp(testPhone());
    await h.makeAdmin(root.userId);
    const adminToken = (await h.api().refreshSession({ refreshToken: root.tokens.refreshToken })).tokens!.accessToken;
    assert.equal(await fails(h.admin(adminToken, "10.99.4.5, 203.0.113.9").getUser({ userId: root.userId })), Code.PermissionDenied);
    const user = await h.admin(adminToken, "203.0.113.9, 10.99.4.5").getUser({ userId: root.userId });
    assert.equal(user.user?.userId, root.userId);
  });
});
