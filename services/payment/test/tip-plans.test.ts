// The plans PostgreSQL keeps for payment's group statements on payment.tips
// (STK successes, STK failures, CheckoutRequestIDs, credit recordings): on a
// table of thousands of tips whose statistics were taken when it held a few
// hundred, each connection's generic plan reads payment.tips by its indexes,
// never whole. (Below ~1,000 tips a whole read is cheaper, and PostgreSQL
// plans one; a plan made then is kept by a connection until the table is
// analyzed again, which autovacuum does as it grows.)
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { PaymentMethod, TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, migrate } from "@ttip/runtime";
import { createTestDatabase, keptPlans, type KeptPlan, type TestDatabase } from "@ttip/runtime/testing";
import { storeCheckoutIds } from "../src/checkout-ids.js";
import { recordCredits } from "../src/credits.js";
import { storeStkFailure, storeStkSuccess } from "../src/stk-callbacks.js";
import { loadTip } from "../src/tips.js";

/** The table these plans must read by index only. */
const TIPS = new Set(["tips"]);

interface Tip {
  tip_id: string;
  callback_token: string;
  phone: string;
  charged_minor: bigint;
}

describe("payment's group statements on a grown payment.tips, by the generic plans connections keep", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", fileURLToPath(new URL("../migrations", import.meta.url)));
    // Statistics of a young table (300 tips, most pending), then grown to thousands without a new ANALYZE.
    await addTips(300, "pending");
    await db.pool.query("ANALYZE payment.tips");
    await addTips(5000, "succeeded");
  });
  after(async () => {
    await db?.drop();
  });

  async function addTips(count: number, status: "pending" | "succeeded"): Promise<Tip[]> {
    const run = randomUUID();
    const done = status === "succeeded";
    const { rows } = await db.pool.query<Tip>(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, checkout_request_id, credit_entry_id)
       SELECT gen_random_uuid(), $1 || i, 'fp', gen_random_uuid(), 'KES', 1000, 1000, 950, '2547' || lpad(i::text, 8, '0'), 'x', $3,
              $1 || 'token' || i, now() + interval '1 hour', now() + interval '1 hour',
              CASE WHEN $4 THEN $1 || 'r' || i END, CASE WHEN $4 THEN $1 || 'r' || i END, CASE WHEN $4 THEN 'worker' END,
              CASE WHEN $4 THEN 'ws_CO_' || $1 || i END, CASE WHEN $4 THEN 'e' || i END
         FROM generate_series(1, $2::int) i RETURNING tip_id, callback_token, phone, charged_minor`,
      [run, count, status, done],
    );
    return rows;
  }

  /** Asserts each plan reads payment.tips, by index only. */
  function byIndexOnly(plans: KeptPlan[], statements: number): void {
    assert.equal(plans.length, statements);
    for (const { statement, reads: tips } of plans) {
      assert.ok(tips.length > 0, `${statement}: reads payment.tips`);
      assert.deepEqual(tips.filter((n) => !/^Index (Only )?Scan$/.test(n["Node Type"])).map((n) => n["Node Type"]), [], `${statement}: ${tips.map((n) => n["Node Type"])}`);
    }
  }

  const raw = () => ({ callbackId: randomUUID(), source: "mpesa_stk", path: "/daraja/stk/[token]", remoteAddress: "127.0.0.1", body: Buffer.from("{}") });

  test("a group of CheckoutRequestIDs, then of STK successes and their credit recording", async () => {
    const tips = await addTips(2, "pending");
    const plans = await keptPlans(db.pool, TIPS, async (q) => {
      await Promise.all(tips.map((t) => storeCheckoutIds(q, { tipId: t.tip_id, checkoutRequestId: `ws_CO_${t.tip_id}`, merchantRequestId: "m" })));
      const decided = await Promise.all(tips.map((t) => storeStkSuccess(q, {
        raw: raw(), token: t.callback_token,
        success: { source: "callback", checkoutRequestId: `ws_CO_${t.tip_id}`, merchantRequestId: "m", resultCode: "0", resultDesc: "ok", receipt: `R${randomUUID().slice(0, 9)}`, amountMinor: t.charged_minor, phone: t.phone },
      })));
      assert.deepEqual(decided.map((row) => row?.status), ["succeeded", "succeeded"]);
      const rows = await Promise.all(tips.map(async (t) => (await loadTip(db.pool, t.tip_id))!));
      const recorded = await recordCredits(q, rows.map((tip, i) => ({ tip, entryId: `entry-${i}`, traceparent: null, autoPayoutCheckAt: new Date() })));
      assert.equal(recorded.size, 2);
    });
    byIndexOnly(plans, 3);
  });

  test("a group of STK failures", async () => {
    const tips = await addTips(2, "pending");
    const plans = await keptPlans(db.pool, TIPS, async (q) => {
      const failed = await Promise.all(tips.map((t) => storeStkFailure(q, {
        raw: raw(), token: t.callback_token,
        failure: { resultCode: "1032", resultMessage: "Cancelled", checkoutRequestId: `ws_CO_${t.tip_id}`, merchantRequestId: "m",
          event: buildEvent("payment", TipFailedSchema, { method: PaymentMethod.MPESA, resultCode: "1032" }), traceparent: null },
      })));
      assert.deepEqual(failed.map((row) => row?.status), ["failed", "failed"]);
    });
    byIndexOnly(plans, 1);
  });
});
