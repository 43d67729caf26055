import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";


describe("the customer's rating and message (RateTip): only for a confirmed tip, once", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  before(async () => {
    h = await startHarness();
    pay = h.t.client(PaymentService);
  });
  after(async () => {
    await h.close();
  });

  const tip = async (mpesaPhone: string) =>
    (await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: mpesaPhone } })).tip!;
  const settled = (tipId: string) =>
    eventually(async () => {
      const t = (await pay.getTip({ tipId })).tip!;
      return t.status !== TipStatus.PENDING && t;
    }, `tip ${tipId} settled`);
  const stored = async (tipId: string) => (await h.t.db.pool.query("SELECT rating, message, rated_at FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];

  test("a confirmed tip takes a rating and message once; the same again changes nothing; different feedback is refused", async () => {
    const { tipId } = await tip(phone());
    assert.equal((await settled(tipId)).status, TipStatus.SUCCEEDED);
    const { tip: rated } = await pay.rateTip({ tipId, rating: 5, message: "Asante sana!" });
    assert.equal(rated!.rating, 5);
    assert.equal(rated!.message, "Asante sana!");
    const first = await stored(tipId);
    assert.ok(first.rated_at instanceof Date);
    await pay.rateTip({ tipId, rating: 5, message: "Asante sana!" });
    assert.deepEqual(await stored(tipId), first, "a retried submit changes nothing");
    await assert.rejects(pay.rateTip({ tipId, rating: 1, message: "changed my mind" }), (e: ConnectError) => e.code === Code.FailedPrecondition && /already given/.test(e.message));
    assert.deepEqual(await stored(tipId), first);
    // A watcher opened just after (while the decided row is still kept for first reads) is shown the rating.
    const watched = [];
    for await (const m of pay.watchTip({ tipId })) watched.push(m.tip!);
    assert.deepEqual(watched.map((t) => [t.status, t.rating, t.message]), [[TipStatus.SUCCEEDED, 5, "Asante sana!"]]);
  });

  test("a tip rated when it was made takes no other rating after", async () => {
    const { tipId } = (await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() }, rating: 1, message: "slow",
    })).tip!;
    assert.equal((await settled(tipId)).status, TipStatus.SUCCEEDED);
    // Before, taken: the 1 star given with the tip became 5 (anyone holding its id, its worker too, could).
    await assert.rejects(pay.rateTip({ tipId, rating: 5, message: "great" }), (e: ConnectError) => e.code === Code.FailedPrecondition && /already given/.test(e.message));
    assert.deepEqual([(await stored(tipId)).rating, (await stored(tipId)).message], [1, "slow"]);
  });

  test("a pending or failed tip takes no feedback, and an unknown one is NOT_FOUND", async () => {
    const cancelled = await tip(phone("1032"));
    await assert.rejects(pay.rateTip({ tipId: cancelled.tipId, rating: 4, message: "" }), (e: ConnectError) => e.code === Code.FailedPrecondition);
    assert.equal((await settled(cancelled.tipId)).status, TipStatus.FAILED);
    await assert.rejects(pay.rateTip({ tipId: cancelled.tipId, rating: 4, message: "" }), (e: ConnectError) => e.code === Code.FailedPrecondition && /went through/.test(e.message));
    assert.equal((await stored(cancelled.tipId)).rating, 0);
    await assert.rejects(pay.rateTip({ tipId: randomUUID(), rating: 4, message: "" }), (e: ConnectError) => e.code === Code.NotFound);
  });

  test("a rating outside 1..5 or a message over 280 characters is INVALID_ARGUMENT naming the field", async () => {
    const tipId = randomUUID();
    await assert.rejects(pay.rateTip({ tipId, rating: 6, message: "" }), (e: ConnectError) => e.code === Code.InvalidArgument && /rating/.test(e.message));
    await assert.rejects(pay.rateTip({ tipId, rating: 3, message: "x".repeat(281) }), (e: ConnectError) => e.code === Code.InvalidArgument && /message/.test(e.message));
  });
});
