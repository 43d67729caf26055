import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnectError, Code } from "@connectrpc/connect";
import { captureLogger } from "../src/testing/index.js";

const PHONE = "254712345678";

test("a phone number never appears in the output, wherever it is logged", () => {
  const { logger, lines, records } = captureLogger();
  logger.info({ phone: PHONE }, "by key");
  logger.info({ request: { customer: { msisdn: PHONE } } }, "nested key");
  logger.info({ note: `customer ${PHONE} paid` }, "inside a value");
  logger.info(`sending STK push to ${PHONE}`);
  logger.info("local format 0712345678 and +254712345678");
  logger.error({ err: new Error(`Daraja rejected ${PHONE}`) }, "error message");
  logger.warn({ err: new ConnectError(`bad number ${PHONE}`, Code.InvalidArgument) }, "connect error");
  assert.equal(lines.length, 7);
  for (const line of lines) {
    assert.doesNotMatch(line, /712345678/, line);
  }
  // Still useful: the last digits remain for support, and structure is kept.
  assert.match(records()[3].msg as string, /sending STK push to \[REDACTED\]678/);
});

test("PINs, OTPs, tokens and card data are redacted by key and by shape", () => {
  const { logger, lines, records } = captureLogger();
  logger.info({
    pin: "4821",
    otp: "302918",
    access_token: "eyJhbGciOiJFZERTQSJ9.payload.sig",
    refreshToken: "r1",
    headers: { authorization: "Bearer abc.def.ghi" },
    card: { number: "4242424242424242", cvc: "123" },
    amountMinor: 5000n,
  });
  logger.info("card 4242 4242 4242 4242 and Bearer abc.def.ghi");
  const all = lines.join("\n");
  for (const secret of ["4821", "302918", "eyJhbGciOiJFZERTQSJ9", "abc.def.ghi", "4242424242424242", "4242 4242", '"123"']) {
    assert.ok(!all.includes(secret), `${secret} leaked: ${all}`);
  }
  const first = records()[0];
  assert.equal(first.pin, "[REDACTED]");
  assert.equal(first.amountMinor, "5000");
  // Before, a new PIN or a verification code under its own name, and a phone number held as a number, were logged as they were.
  logger.info({ newPin: "5937", currentPin: "4821", verificationCode: "482613", item: { Name: "PhoneNumber", Value: 254712345678 }, at: 1_733_450_000_000, resultCode: "0" });
  const second = records()[2];
  assert.deepEqual([second.newPin, second.currentPin, second.verificationCode], ["[REDACTED]", "[REDACTED]", "[REDACTED]"]);
  assert.equal((second.item as { Value: unknown }).Value, "[REDACTED]678");
  assert.deepEqual([second.at, second.resultCode], [1_733_450_000_000, "0"], "other numbers and codes kept");
});

test("item 12: an OTP inside a sentence under a neutral key, and phones written with spaces or dashes, are redacted", () => {
  const { logger, lines } = captureLogger();
  logger.info({ body: "Your TTIP code is 482613. It expires in 5 minutes." }, "sms sent");
  logger.info({ text: "Use verification code: 7731 to sign in" });
  logger.info({ body: "Nambari yako ya TTIP ni 904417. Inaisha baada ya dakika 5. Usimpe mtu yeyote." }, "sms sent");
  logger.info("customer +254 798 810913 called; also 0798-810-913 and 254-798-810-913 and +1 555 010 0199");
  logger.info({ note: "order 2026 paid 1500 KES at 10:45" }, "amounts and times stay");
  const all = lines.join("\n");
  for (const secret of ["482613", "7731", "904417", "798 810", "798-810", "810913", "555 010 0199"]) assert.ok(!all.includes(secret), `${secret} leaked: ${all}`);
  assert.match(all, /code is \[REDACTED\]/);
  assert.match(all, /order 2026 paid 1500 KES at 10:45/);
});

test("a trace or span id is kept whole though its digits read as a card number; anything else under those keys is still scrubbed", () => {
  const { logger, records } = captureLogger();
  const traceId = "67439191670948b2a1057b4f2b34413f"; // 14 digits in a row: CARD's shape
  const spanId = "4111111111111111";
  logger.info({ trace_id: traceId, span_id: spanId }, "traced");
  logger.info({ trace_id: "card 4111 1111 1111 1111", span_id: "+254798810913" }, "not ids");
  const [ids, other] = records();
  assert.equal(ids.trace_id, traceId);
  assert.equal(ids.span_id, spanId);
  assert.equal(JSON.stringify(other).includes("4111 1111"), false);
  assert.equal(JSON.stringify(other).includes("798810913"), false);
});

test("a UUID is kept whole though its digit groups read as a card number across a dash; a card beside it is still masked", () => {
  const { logger, records } = captureLogger();
  const id = "5f0c9a2e-1b7d-4e3a-8123-456789012345"; // "8123-456789012345": 16 digits with one dash, CARD's shape
  logger.info({ deliveryId: id, note: `delivery ${id} for card 4111 1111 1111 1111` }, `sent ${id}`);
  const [r] = records();
  assert.equal(r.deliveryId, id);
  assert.equal(r.msg, `sent ${id}`);
  assert.equal(r.note, `delivery ${id} for card [REDACTED]`);
});

test("texts are searched for secrets whenever one could be there: digits in a word, a credential after a tab; a text with neither is kept as it is", () => {
  const { logger, lines, records } = captureLogger();
  logger.info({ note: "card=4242424242424242;code=7731" }, "no spaces");
  logger.info({ note: "Bearer\tabc.def.ghi" }, "a tab");
  logger.info({ rpc: "ttip.payment.v1.PaymentService/CreateTip", status: "v1.2.3" }, "call");
  const all = lines.join("\n");
  for (const secret of ["4242424242424242", "abc.def.ghi"]) assert.ok(!all.includes(secret), `${secret} leaked: ${all}`);
  assert.equal(records()[2].rpc, "ttip.payment.v1.PaymentService/CreateTip");
  assert.equal(records()[2].status, "v1.2.3");
});
