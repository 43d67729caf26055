import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { DarajaClient, DarajaError, darajaTimestamp, stkPassword, type DarajaConfig } from "../src/daraja/client.js";
import { currentDarajaClient } from "../src/daraja/current-client.js";
import { PHONE_SUFFIX_SCRIPTS, startDarajaSimulator, type DarajaSimulator } from "../src/daraja/simulator.js";
import { AdjustableClock, httpRequest } from "@ttip/runtime";
import { isSimulatorMarker, PLAIN_PHONE_SUFFIX_FROM } from "@ttip/runtime/testing";

describe("Daraja client against the simulator", () => {
  let sim: DarajaSimulator;
  let received: { path: string; body: Record<string, unknown>; from: string }[] = [];
  let sink: http.Server;
  let sinkUrl = "";
  let oauthCalls = 0;
  const counting: DarajaConfig["request"] = (url, call) => {
    if (String(url).includes("/oauth/")) oauthCalls++;
    return httpRequest(url, call);
  };
  const config = (): DarajaConfig => ({ ...sim.clientConfig(), timeoutMs: 1000, request: counting });

  before(async () => {
    sim = await startDarajaSimulator({ callbackDelayMs: 20, lateDelayMs: 1500, tokenTtlSeconds: 2 });
    sink = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        received.push({ path: req.url ?? "", body: JSON.parse(Buffer.concat(chunks).toString()), from: req.socket.remoteAddress ?? "" });
        res.end('{"ResultCode":0,"ResultDesc":"Accepted"}');
      });
    });
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
    sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  });
  after(async () => {
    await sim.close();
    sink.closeAllConnections();
    await new Promise((r) => sink.close(r));
  });

  test("timestamp is East Africa Time and the password is base64(shortcode + passkey + timestamp)", () => {
    assert.equal(darajaTimestamp(new Date("2026-11-25T21:30:05Z")), "20261126003005");
    assert.equal(Buffer.from(stkPassword("174379", "pk", "20261126003005"), "base64").toString(), "174379pk20261126003005");
  });

  test("the OAuth token is cached, and refreshed before it expires", async () => {
    const clock = new AdjustableClock();
    const client = new DarajaClient(config(), clock);
    oauthCalls = 0;
    const [a, b] = await Promise.all([client.accessToken(), client.accessToken()]);
    assert.equal(a, b);
    assert.equal(await client.accessToken(), a);
    assert.equal(oauthCalls, 1, "one OAuth request for concurrent and repeated callers");
    // The simulator's tokens live 2 s; the client renews at 90% of that (its clock moved on, no sleep).
    clock.advance(1900);
    const c = await client.accessToken();
    assert.notEqual(c, a);
    assert.equal(oauthCalls, 2);
  });

  test("a token Daraja no longer accepts is replaced once and the call goes through", async () => {
    const client = new DarajaClient(config());
    oauthCalls = 0;
    const r = await client.stkPush({ phone: "254712345678", amount: 5, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" });
    sim.revokeTokens();
    const q = await client.stkQuery(r.CheckoutRequestID);
    assert.equal(q.CheckoutRequestID, r.CheckoutRequestID);
    assert.equal(oauthCalls, 2, "one new token after the refusal");
    assert.equal(sim.transactions().filter((t) => t.checkoutRequestId === r.CheckoutRequestID).length, 1);
  });

  test("wrong consumer secret: a clear error, nothing sent", async () => {
    const client = new DarajaClient({ ...config(), consumerSecret: "nope" });
    await assert.rejects(client.stkPush({ phone: "254712345678", amount: 10, callbackUrl: `${sinkUrl}/cb`, accountReference: "x", description: "y" }), (e: unknown) =>
      e instanceof DarajaError && e.kind === "unavailable" && /400\.008\.01/.test(e.message));
  });

  test("STK push is accepted, the callback arrives from the simulator, the query agrees", async () => {
    received = [];
    const client = new DarajaClient(config());
    const r = await client.stkPush({ phone: "254712345678", amount: 50, callbackUrl: `${sinkUrl}/cb/tok`, accountReference: "TTIP", description: "Tip" });
    assert.equal(r.ResponseCode, "0");
    assert.match(r.CheckoutRequestID, /^ws_CO_/);
    await sim.idle();
    const mine = received.filter((x) => x.path === "/cb/tok");
    assert.equal(mine.length, 1);
    const cb = (mine[0].body.Body as any).stkCallback;
    assert.equal(cb.CheckoutRequestID, r.CheckoutRequestID);
    assert.equal(cb.ResultCode, 0);
    assert.equal(mine[0].from, "127.0.0.1");
    const items = Object.fromEntries(cb.CallbackMetadata.Item.map((i: any) => [i.Name, i.Value]));
    assert.equal(items.Amount, 50);
    assert.equal(items.PhoneNumber, 254712345678);
    const q = await client.stkQuery(r.CheckoutRequestID);
    assert.equal(q.ResultCode, "0");
  });

  test("a wrong passkey is refused with Daraja's error code in the message", async () => {
    const client = new DarajaClient({ ...config(), passkey: "wrong" });
    await assert.rejects(client.stkPush({ phone: "254712345678", amount: 50, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" }), (e: unknown) =>
      e instanceof DarajaError && e.kind === "rejected" && e.details.errorCode === "400.002.02" && /Invalid Password/.test(e.message));
  });

  test("the query says 'processing' while the customer has not answered", async () => {
    const client = new DarajaClient(config());
    const r = await client.stkPush({ phone: "254712340004", amount: 20, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" });
    await assert.rejects(client.stkQuery(r.CheckoutRequestID), (e: unknown) => e instanceof DarajaError && e.kind === "processing");
  });

  test("an STK query answered with a blank ResultCode is no answer (asked again later), never a failure of the push", async () => {
    const client = new DarajaClient(config());
    sim.script({ phone: "254712349911" }, { stk: "success", blankQueryResult: true });
    const r = await client.stkPush({ phone: "254712349911", amount: 20, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" });
    await assert.rejects(client.stkQuery(r.CheckoutRequestID), (e: unknown) => e instanceof DarajaError && e.kind === "unknown" && /without ResultCode/.test(e.message));
  });

  test("B2C carries an encrypted credential the simulator can check", async () => {
    received = [];
    const client = new DarajaClient(config());
    const ok = await client.b2c({ originatorConversationId: "p-1", phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` });
    assert.equal(ok.OriginatorConversationID, "p-1");
    const bad = new DarajaClient({ ...config(), initiatorPassword: "guess" });
    await bad.b2c({ originatorConversationId: "p-2", phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` });
    await sim.idle();
    const byId = Object.fromEntries(received.filter((r) => r.path === "/r").map((r) => [(r.body.Result as any).OriginatorConversationID, (r.body.Result as any).ResultCode]));
    assert.equal(byId["p-1"], 0);
    assert.equal(byId["p-2"], 2001, "a credential that does not decrypt to the initiator password fails");
  });

  test("a held B2C result is sent only when released; the status query is not held", async () => {
    received = [];
    const client = new DarajaClient(config());
    const results = sim.hold("b2c");
    await client.b2c({ originatorConversationId: "p-held", phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` });
    await client.transactionStatus({ originalConversationId: "p-held", resultUrl: `${sinkUrl}/s`, queueTimeoutUrl: `${sinkUrl}/s` });
    await sim.idle(); // the result fell due and was parked; the status result went out
    assert.deepEqual(received.map((r) => r.path), ["/s"]);
    assert.equal(sim.transactions().find((t) => t.originatorConversationId === "p-held")!.callbacksSent, 0);
    await results.release();
    assert.deepEqual(received.map((r) => r.path), ["/s", "/r"]);
    assert.equal((received[1].body.Result as any).OriginatorConversationID, "p-held");
    assert.equal(sim.transactions().find((t) => t.originatorConversationId === "p-held")!.callbacksSent, 1);
    const again = sim.hold("b2c"); // released: it can be held again
    await again.release();
  });

  test("a B2C answered 200 with no Daraja answer in it (cut short, not JSON, JSON null, no ResponseCode, accepted but lacking its ConversationID) is 'unknown', never refused: it ran", async () => {
    // The B2C reaches the simulator and runs; only the answer the client reads is spoiled on its way back.
    const spoiling = (spoil: (text: string) => string): DarajaConfig["request"] => async (url, call) => {
      const reply = await httpRequest(url, call);
      if (!String(url).includes("/b2c/")) return reply;
      const text = spoil(await reply.text());
      return { status: reply.status, ok: reply.ok, statusText: reply.statusText, headers: reply.headers, text: async () => text };
    };
    const spoils: Record<string, (text: string) => string> = {
      "p-cut": (t) => t.slice(0, -5),
      "p-page": () => "<html><body>OK</body></html>",
      "p-no-code": () => "{}",
      // JSON, not an object: before, reading it threw a TypeError, no DarajaError (a reconciliation pass's STK query ended the pass).
      "p-null": () => "null",
      "p-no-conversation": (t) => JSON.stringify({ ...JSON.parse(t), ConversationID: undefined }),
    };
    for (const [id, spoil] of Object.entries(spoils)) {
      const client = new DarajaClient({ ...config(), request: spoiling(spoil) });
      // Before, "rejected": payouts.ts then released the hold of a payout M-Pesa paid, and the worker could withdraw it again.
      await assert.rejects(
        client.b2c({ originatorConversationId: id, phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` }),
        (e: unknown) => e instanceof DarajaError && e.kind === "unknown",
        id,
      );
      assert.equal(sim.transactions().filter((t) => t.originatorConversationId === id).length, 1, `${id}: sent once, and it ran`);
    }
    // Daraja's own refusal in a 200 (a ResponseCode other than 0) is still a refusal.
    const refused = new DarajaClient({ ...config(), request: spoiling(() => JSON.stringify({ ResponseCode: "1", ResponseDescription: "Rejected" })) });
    await assert.rejects(
      refused.b2c({ originatorConversationId: "p-refused", phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` }),
      (e: unknown) => e instanceof DarajaError && e.kind === "rejected",
    );
  });

  test("a push or B2C whose connection failed before it was written is 'unavailable' at once (nothing left); one lost after it was written is still 'unknown'", async () => {
    // The token from the simulator; the call itself to `origin`, through the runtime's HTTP client.
    const callingAt = (origin: string): DarajaConfig["request"] => (url, call) =>
      httpRequest(url.pathname.includes("/oauth/") ? url : new URL(url.pathname, origin), call);
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const refusing = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((r) => closed.close(r));
    // Reads the whole request, then drops the connection without a word.
    const dropping = http.createServer((req, res) => req.resume().on("end", () => res.socket?.destroy()));
    await new Promise<void>((r) => dropping.listen(0, "127.0.0.1", r));
    const dropsAt = `http://127.0.0.1:${(dropping.address() as AddressInfo).port}`;
    try {
      const refused = new DarajaClient({ ...config(), request: callingAt(refusing) });
      // Before, "unknown": the tip waited for its callback or expiry, and the payout for Transaction Status, though nothing was sent.
      await assert.rejects(refused.stkPush({ phone: "254712340021", amount: 10, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" }),
        (e: unknown) => e instanceof DarajaError && e.kind === "unavailable" && /ECONNREFUSED/.test(e.message), "push");
      await assert.rejects(refused.b2c({ originatorConversationId: "p-refused-conn", phone: "254712345678", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` }),
        (e: unknown) => e instanceof DarajaError && e.kind === "unavailable", "b2c");
      assert.equal(sim.transactions().filter((t) => t.phone === "254712340021" || t.originatorConversationId === "p-refused-conn").length, 0, "nothing reached Daraja");
      const dropped = new DarajaClient({ ...config(), request: callingAt(dropsAt) });
      await assert.rejects(dropped.stkPush({ phone: "254712340022", amount: 10, callbackUrl: `${sinkUrl}/cb`, accountReference: "T", description: "T" }),
        (e: unknown) => e instanceof DarajaError && e.kind === "unknown", "a push Daraja may have had");
    } finally {
      dropping.closeAllConnections();
      await new Promise((r) => dropping.close(r));
    }
  });

  test("the service's client follows a change of the Daraja timeout alone, and is kept while nothing changes", async () => {
    let current: DarajaConfig = { ...config(), timeoutMs: 300 };
    const clientOf = currentDarajaClient(() => current, () => new AdjustableClock());
    const first = clientOf();
    assert.equal(clientOf(), first, "an unchanged configuration keeps its client and its OAuth token");
    current = { ...current };
    assert.equal(clientOf(), first, "a copy with the same fields is the same configuration");
    // The answer comes after 1 s: past the old 300 ms, within the new 5 s.
    sim.script({ phone: "254712349931" }, { b2c: "slow_ack", delayMs: 1000 });
    current = { ...current, timeoutMs: 5_000 };
    const r = await clientOf().b2c({ originatorConversationId: "p-new-timeout", phone: "254712349931", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` });
    assert.equal(r.OriginatorConversationID, "p-new-timeout", "answered: the new timeout applied");
  });

  test("a B2C without an answer is 'unknown' and is not retried", async () => {
    const client = new DarajaClient({ ...config(), timeoutMs: 300 });
    await assert.rejects(
      client.b2c({ originatorConversationId: "p-slow", phone: "254712340004", amount: 100, remarks: "payout", resultUrl: `${sinkUrl}/r`, queueTimeoutUrl: `${sinkUrl}/t` }),
      (e: unknown) => e instanceof DarajaError && e.kind === "unknown",
    );
    const sent = sim.transactions().filter((t) => t.originatorConversationId === "p-slow");
    assert.equal(sent.length, 1, "sent exactly once");
    // Transaction status finds it.
    received = [];
    await client.transactionStatus({ originalConversationId: "p-slow", resultUrl: `${sinkUrl}/s`, queueTimeoutUrl: `${sinkUrl}/s` });
    await sim.idle();
    const res = received.find((r) => r.path === "/s")!.body.Result as any;
    assert.equal(res.ResultCode, 0);
    assert.equal(res.TransactionID, sent[0].receipt);
  });
});

test("every number the Daraja simulator scripts by its suffix is a marker the tests' plain numbers (testPhone) never end in", () => {
  const scripted = Object.keys(PHONE_SUFFIX_SCRIPTS);
  assert.ok(scripted.includes("0003") && scripted.includes("1032"), scripted.join(" "));
  assert.deepEqual(scripted.filter((suffix) => !isSimulatorMarker(suffix)), [], `scripted suffixes stay below ${PLAIN_PHONE_SUFFIX_FROM}`);
});
