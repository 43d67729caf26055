import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AdjustableClock } from "@ttip/runtime";
import http from "node:http";
import net from "node:net";
import { CALLBACK_ROUTE, newCallbackToken } from "../src/callback-paths.js";
import { ACCEPTED, parseResult, parseStkCallback, remoteAddress, reply } from "../src/callbacks.js";
import { bannedUrlWord } from "../src/daraja/client.js";
import { addressAllowed, loadPaymentConfig, SAFARICOM_CALLBACK_IPS } from "../src/config.js";

describe("callback checks", () => {
  test("the allow-list takes exact addresses, IPv4 CIDRs and IPv4-mapped IPv6", () => {
    assert.ok(addressAllowed("196.201.214.200", SAFARICOM_CALLBACK_IPS));
    assert.ok(!addressAllowed("196.201.214.201", SAFARICOM_CALLBACK_IPS));
    assert.ok(addressAllowed("::ffff:127.0.0.1", ["127.0.0.1"]));
    assert.ok(addressAllowed("10.1.2.3", ["10.0.0.0/8"]));
    assert.ok(!addressAllowed("11.1.2.3", ["10.0.0.0/8"]));
    assert.ok(!addressAllowed("127.0.0.1", []));
  });

  test("production defaults to Safaricom's addresses; loopback only when configured", () => {
    assert.deepEqual(loadPaymentConfig({}).callbackAllowList, SAFARICOM_CALLBACK_IPS);
    assert.ok(!addressAllowed("127.0.0.1", loadPaymentConfig({}).callbackAllowList));
    assert.deepEqual(loadPaymentConfig({ MPESA_CALLBACK_ALLOWED_IPS: "127.0.0.1, ::1" }).callbackAllowList, ["127.0.0.1", "::1"]);
    assert.throws(() => loadPaymentConfig({ DARAJA_BASE_URL: "ftp://x" }), /DARAJA_BASE_URL/);
  });

  test("a callback's sender is named by X-Forwarded-For only from the configured proxies (the ingress), not from any private address", () => {
    const req = (socket: string) => ({ socket: { remoteAddress: socket }, headers: { "x-forwarded-for": "196.201.214.200" } }) as unknown as http.IncomingMessage;
    const ingress = loadPaymentConfig({ PAYMENT_CALLBACK_TRUSTED_PROXIES: "10.42.0.0/16" }).callbackTrustedProxies;
    assert.equal(remoteAddress(req("10.42.3.4"), ingress), "196.201.214.200", "the ingress names Safaricom");
    assert.equal(remoteAddress(req("10.7.0.9"), ingress), "10.7.0.9", "another pod names nobody but itself");
    assert.equal(remoteAddress(req("10.42.3.4"), loadPaymentConfig({}).callbackTrustedProxies), "10.42.3.4", "no proxies: the socket's address");
    assert.throws(() => loadPaymentConfig({ PAYMENT_CALLBACK_TRUSTED_PROXIES: "10.42.0.0/99" }), /PAYMENT_CALLBACK_TRUSTED_PROXIES/);
  });

  test("a paybill URL token or base URL Safaricom would refuse to register is a configuration error", () => {
    const token = "a1b2c3d4e5f6a7b8c9d0";
    assert.equal(loadPaymentConfig({ C2B_URL_TOKEN: token, PAYMENT_CALLBACK_BASE_URL: "https://tips.example.com" }).c2b?.pathToken, token);
    assert.throws(() => loadPaymentConfig({ C2B_URL_TOKEN: "Xy7_kExE9qLm2pQr8sTu" }), /C2B_URL_TOKEN: holds "exe"/);
    assert.throws(() => loadPaymentConfig({ C2B_URL_TOKEN: token, PAYMENT_CALLBACK_BASE_URL: "https://mpesa-tips.example.com" }), /PAYMENT_CALLBACK_BASE_URL: holds "mpesa"/);
    // Without paybill payments nothing is registered, so the base URL alone is not refused.
    assert.equal(loadPaymentConfig({ PAYMENT_CALLBACK_BASE_URL: "https://mpesa-tips.example.com" }).c2b, undefined);
  });

  const success = (items: unknown[]) => ({ Body: { stkCallback: { MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResultCode: 0, ResultDesc: "ok", CallbackMetadata: { Item: items } } } });
  const goodItems = [
    { Name: "Amount", Value: 1.0 }, { Name: "MpesaReceiptNumber", Value: "NLJ7RT61SV" }, { Name: "Balance" },
    { Name: "TransactionDate", Value: 20191219102115 }, { Name: "PhoneNumber", Value: 254708374149 },
  ];

  test("an STK callback in Daraja's shape is read, Balance without a value included", () => {
    const cb = parseStkCallback(success(goodItems));
    assert.deepEqual(cb, {
      checkoutRequestId: "ws_CO_191220191020363925", merchantRequestId: "29115-34620561-1", resultCode: "0", resultDesc: "ok",
      receipt: "NLJ7RT61SV", amountMinor: 100n, phone: "254708374149",
    });
    const failed = parseStkCallback({ Body: { stkCallback: { MerchantRequestID: "m", CheckoutRequestID: "ws_CO_1", ResultCode: 1032, ResultDesc: "Request cancelled by user" } } });
    assert.equal(failed?.resultCode, "1032");
    assert.equal(failed?.receipt, undefined);
  });

  test("anything off-shape is refused", () => {
    assert.equal(parseStkCallback({}), undefined);
    assert.equal(parseStkCallback({ Body: { stkCallback: { CheckoutRequestID: "ws_CO_1", MerchantRequestID: "m", ResultCode: 0, ResultDesc: "ok" } } }), undefined, "success without metadata");
    assert.equal(parseStkCallback(success(goodItems.filter((i) => i.Name !== "MpesaReceiptNumber"))), undefined);
    assert.equal(parseStkCallback(success(goodItems.map((i) => (i.Name === "Amount" ? { Name: "Amount", Value: "one shilling" } : i)))), undefined);
    assert.equal(parseStkCallback(success(goodItems.map((i) => (i.Name === "PhoneNumber" ? { Name: "PhoneNumber", Value: 712345678 } : i)))), undefined);
    assert.equal(parseStkCallback({ Body: { stkCallback: { CheckoutRequestID: "ws_CO_1; DROP", MerchantRequestID: "m", ResultCode: 1, ResultDesc: "x" } } }), undefined);
  });

  test("the B2C Result envelope is read with its parameters", () => {
    const r = parseResult({ Result: { ResultType: 0, ResultCode: 0, ResultDesc: "ok", OriginatorConversationID: "o", ConversationID: "c", TransactionID: "NLJ41HAY6Q",
      ResultParameters: { ResultParameter: [{ Key: "TransactionAmount", Value: 10 }, { Key: "TransactionReceipt", Value: "NLJ41HAY6Q" }] } } });
    assert.equal(r?.parameters.get("TransactionAmount"), 10);
    assert.equal(r?.resultCode, "0");
    assert.equal(parseResult({ Result: { ResultCode: 0 } }), undefined);
  });
});

describe("callback tokens", () => {
  test("a token holds none of the words kept out of callback URLs, and fits the callback route", () => {
    // Before, a random token held "exe", "cmd" or "sql" about once in 360 draws: a push, payout or reversal whose URL Safaricom may refuse.
    for (let i = 0; i < 20_000; i++) {
      const token = newCallbackToken();
      assert.equal(bannedUrlWord(token), undefined, token);
      assert.match(`/daraja/stk/${token}`, CALLBACK_ROUTE);
    }
  });
});

describe("the answer to a callback", () => {
  /** The raw bytes of one HTTP/1.1 answer written by reply(res, status, body). */
  async function rawAnswer(status: number, body: unknown): Promise<string> {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => reply(res, status, body));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const socket = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
      socket.end("POST /callbacks/mpesa/stk HTTP/1.1\r\nhost: payment\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}");
      let text = "";
      for await (const chunk of socket) text += String(chunk);
      return text;
    } finally {
      server.close();
    }
  }

  test("is its JSON with its length, not chunked (the head and body go as one string)", async () => {
    for (const [status, body] of [[200, ACCEPTED], [404, { ResultCode: 1, ResultDesc: "Not found" }]] as const) {
      const answer = await rawAnswer(status, body);
      const [head, text] = answer.split("\r\n\r\n");
      assert.match(head, new RegExp(`^HTTP/1.1 ${status} `));
      assert.match(head, /\r\ncontent-type: application\/json\r\n/i);
      assert.doesNotMatch(head, /transfer-encoding/i);
      assert.match(head, new RegExp(`\r\ncontent-length: ${Buffer.byteLength(text)}\r\n`, "i"));
      assert.deepEqual(JSON.parse(text), body);
    }
  });

  test("the usual answer cannot be changed under its bytes encoded once", async () => {
    const changeable = ACCEPTED as { ResultDesc: string };
    const before = changeable.ResultDesc;
    try {
      assert.throws(() => { changeable.ResultDesc = "Changed"; }, TypeError);
    } finally {
      if (changeable.ResultDesc !== before) changeable.ResultDesc = before;
    }
    const [, text] = (await rawAnswer(200, ACCEPTED)).split("\r\n\r\n");
    assert.deepEqual(JSON.parse(text), ACCEPTED);
  });
});

describe("Daraja facts checked against Safaricom's portal (item 11)", () => {
  const callback = (ResultCode: unknown, items?: unknown[]) => ({
    Body: { stkCallback: { MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResultCode, ResultDesc: "The operator does not exist", ...(items ? { CallbackMetadata: { Item: items } } : {}) } },
  });

  test("item 11: a non-numeric ResultCode (SFC_IC0003) is a failure with its own words, not a malformed callback", async () => {
    const cb = parseStkCallback(callback("SFC_IC0003"));
    assert.equal(cb?.resultCode, "SFC_IC0003");
    const { resultMessage } = await import("../src/messages.js");
    assert.match(resultMessage("SFC_IC0003"), /does not exist/);
    assert.match(resultMessage("17"), /2 minutes/);
    assert.equal(parseStkCallback(callback("1032"))?.resultCode, "1032");
    assert.equal(parseStkCallback(callback("0 OR 1=1")), undefined, "still strict about what a code may look like");
  });

  test("item 11: Amount may arrive as a string", () => {
    const items = [{ Name: "Amount", Value: "150.00" }, { Name: "MpesaReceiptNumber", Value: "NLJ7RT61SV" }, { Name: "TransactionDate", Value: 20191219102115 }, { Name: "PhoneNumber", Value: 254708374149 }];
    const cb = parseStkCallback(callback(0, items));
    assert.equal(cb?.amountMinor, 15000n);
    assert.equal(cb?.receipt, "NLJ7RT61SV");
    const withAmount = (v: unknown) => parseStkCallback(callback(0, items.map((i) => (i.Name === "Amount" ? { Name: "Amount", Value: v } : i))));
    assert.equal(withAmount(150.5)?.amountMinor, 15050n);
    // No rounding: 150.004 was read as KES 150 exactly, the amount a KES 150 tip expects.
    assert.equal(withAmount(150.004), undefined);
    assert.equal(withAmount(150.499), undefined);
    assert.equal(withAmount(0), undefined);
  });

  test("item 11: the B2C request spells its optional field Occassion", async () => {
    const { DarajaClient } = await import("../src/daraja/client.js");
    const bodies: Record<string, unknown>[] = [];
    const client = new DarajaClient({
      baseUrl: "https://daraja.invalid", consumerKey: "k", consumerSecret: "s", shortcode: "600100", passkey: "p",
      initiatorName: "api", initiatorPassword: "pw", certificatePem: (await import("../src/testing.js")).SIMULATOR_CERTIFICATE_PEM,
      request: (async (url: URL, init: { body?: string }) => {
        if (String(url).includes("oauth")) return new Response(JSON.stringify({ access_token: "t", expires_in: "3599" }), { status: 200 });
        bodies.push(JSON.parse(String(init.body)));
        return new Response(JSON.stringify({ ConversationID: "AG_1", OriginatorConversationID: "o1", ResponseCode: "0", ResponseDescription: "Accept the service request successfully." }), { status: 200 });
      }) as never,
    } as never);
    await client.b2c({ originatorConversationId: "o1", phone: "254708374149", amount: 95, remarks: "tips", occasion: "auto payout", resultUrl: "https://x/r", queueTimeoutUrl: "https://x/t" });
    assert.equal(bodies[0].Occassion, "auto payout");
    assert.equal("Occasion" in bodies[0], false);
  });

  test("item 11: spike arrest (500.003.02) and quota (500.003.03) make the client back off: nothing is sent until the pause is over", async () => {
    const { DarajaClient, DarajaError } = await import("../src/daraja/client.js");
    const clock = new AdjustableClock();
    let sent = 0;
    let throttle = true;
    const client = new DarajaClient({
      baseUrl: "https://daraja.invalid", consumerKey: "k", consumerSecret: "s", shortcode: "600100", passkey: "p",
      initiatorName: "api", initiatorPassword: "pw", certificatePem: (await import("../src/testing.js")).SIMULATOR_CERTIFICATE_PEM,
      request: (async (url: URL) => {
        if (String(url).includes("oauth")) return new Response(JSON.stringify({ access_token: "t", expires_in: "3599" }), { status: 200 });
        sent++;
        if (throttle) return new Response(JSON.stringify({ requestId: "r", errorCode: "500.003.02", errorMessage: "Spike arrest violation" }), { status: 500 });
        return new Response(JSON.stringify({ ConversationID: "AG_1", OriginatorConversationID: "o1", ResponseCode: "0", ResponseDescription: "ok" }), { status: 200 });
      }) as never,
    } as never, clock);
    const b2c = () => client.b2c({ originatorConversationId: "o1", phone: "254708374149", amount: 95, remarks: "tips", resultUrl: "https://x/r", queueTimeoutUrl: "https://x/t" });
    await assert.rejects(b2c(), (e: Error) => e instanceof DarajaError && e.kind === "unavailable");
    throttle = false;
    await assert.rejects(b2c(), (e: Error) => e instanceof DarajaError && e.kind === "unavailable" && /fewer requests/.test(e.message));
    assert.equal(sent, 1, "nothing sent during the pause");
    clock.advance(1_050); // past the first (1 s) pause, no sleep
    await b2c();
    assert.equal(sent, 2);
  });
});
