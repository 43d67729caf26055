// The reconciliation pass the service runs on its own interval (RECONCILE_INTERVAL_MS), not asked for: each of
// its steps runs whatever another failed on, as ReconcilePending's pass does (reconciliation.ts).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { REVIEW_CLAIM_GRACE_MS } from "../src/review-resumer.js";
import { loadTip } from "../src/tips.js";
import { eventually, startHarness, type Harness } from "./setup.js";
import { testPhone } from "@ttip/runtime/testing";

describe("the service's own reconciliation pass", () => {
  let h: Harness;
  before(async () => void (h = await startHarness({ reconcileIntervalMs: 50 })));
  after(() => h.close());

  /** A tip to `workerId` whose success is decided (receipt and wallet entry fixed) and not yet credited; `held` claimed for approval now by a process that stopped. */
  async function decidedTip(tipId: string, workerId: string, minor: bigint, held = false): Promise<void> {
    const receipt = `R${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    await h.t.db.pool.query(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, fee_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, completed_at,
         approval_receipt, review_claimed_at, review_claimed_by, review_note)
       VALUES ($1::uuid, $1::text, 'fp', $2, 'KES', $3::bigint, $3::bigint / 20, $3::bigint, $3::bigint - $3::bigint / 20, $4, '2547***678', $6, $1::text,
         now(), now() + interval '1 day', $5, $5, $7, now(), CASE WHEN $8 THEN $5 END, CASE WHEN $8 THEN $9::timestamptz END,
         CASE WHEN $8 THEN 'admin' END, CASE WHEN $8 THEN 'fine' END)`,
      [tipId, workerId, minor, testPhone(), receipt,
        held ? "held_for_review" : "succeeded", held ? "suspense" : "worker", held, new Date(h.clock.now())],
    );
  }

  test("a tip whose recording PostgreSQL refuses on every try does not stop the pass's later steps: a review claim left by a stopped process is finished", async () => {
    const worker = randomUUID();
    const refused = randomUUID();
    const held = randomUUID();
    const trigger = `interval_test_refuse_${refused.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF credit_entry_id ON payment.tips FOR EACH ROW
      WHEN (NEW.tip_id = '${refused}'::uuid AND OLD.credit_entry_id IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    try {
      await decidedTip(refused, worker, 10_000n);
      await decidedTip(held, worker, 20_000n, true);
      // Once a pass has tried the refused tip, every pass after it sees it; only then is the claim left long enough.
      const tried = async () => (await h.t.db.pool.query("SELECT attempts FROM payment.uncredited WHERE tip_id = $1", [refused])).rows[0]?.attempts > 0;
      await eventually(tried, "a pass tried the refused recording", 30_000);
      h.clock.advance(REVIEW_CLAIM_GRACE_MS + 1);
      // Before, every pass stopped at the refused recording, ahead of the review claims: the tip stayed held.
      const approved = await eventually(async () => (await loadTip(h.t.db.pool, held))?.status === "succeeded", "the stopped approval finished", 30_000);
      assert.ok(approved);
      assert.equal((await loadTip(h.t.db.pool, refused))!.credit_entry_id, null, "its recording still refused");
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    await eventually(async () => (await loadTip(h.t.db.pool, refused))!.credit_entry_id, "recorded once PostgreSQL takes it", 30_000);
    const balance = await h.balance(worker);
    assert.equal(balance, 9_500n + 19_000n, "each paid once");
  });
});
