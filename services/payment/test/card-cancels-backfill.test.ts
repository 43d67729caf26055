// Migration 0052: card tips refused before card_cancels_due existed get their row, so the reconciliation pass
// cancels an authorisation whose cancel was lost then (real PostgreSQL, the schema as it was before).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { migrate, type Pool } from "@ttip/runtime";
import { createTestDatabase } from "@ttip/runtime/testing";
import { migrateBefore, PAYMENT_MIGRATIONS } from "./older-schema.js";

/** A card tip ended `status` with `fraudAction`, created `daysAgo` days ago; answers its id. */
async function cardTip(pool: Pool, status: string, fraudAction: string, daysAgo: number, credited = false): Promise<string> {
  const tipId = randomUUID();
  const key = randomUUID();
  await pool.query(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, method, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, fraud_action, callback_token, deadline_at, next_check_at, created_at, completed_at,
       card_provider, provider_payment_id, card_fingerprint, credit_key)
     VALUES ($1, $2, 'fp', gen_random_uuid(), 'card', 'USD', 1000, 1000, 115117, '', '', $3, $4, $2, now(), now(),
       now() - make_interval(days => $5), now() - make_interval(days => $5), 'stripe', $6, 'fingerprint', $7)`,
    [tipId, key, status, fraudAction, daysAgo, `pi_${key.replaceAll("-", "")}`, credited ? `card:pi_${key}` : null],
  );
  return tipId;
}

test("0052: the card tips refused in the last 8 days before card_cancels_due existed are due to be cancelled, and no other tip", async () => {
  const db = await createTestDatabase();
  try {
    await migrateBefore(db.pool, "0052");
    const refused = await cardTip(db.pool, "failed", "refuse", 2);
    const lapsed = await cardTip(db.pool, "failed", "refuse", 9);
    const declined = await cardTip(db.pool, "failed", "none", 1);
    const captured = await cardTip(db.pool, "succeeded", "refuse", 1, true);
    // One refused since 0048, its row already written by its refusal (due later).
    const recorded = await cardTip(db.pool, "failed", "refuse", 0);
    await db.pool.query("INSERT INTO payment.card_cancels_due (tip_id, due_at) VALUES ($1, now() + interval '1 minute')", [recorded]);
    await migrate(db.pool, "payment", PAYMENT_MIGRATIONS);
    const { rows } = await db.pool.query("SELECT tip_id, due_at <= now() AS due FROM payment.card_cancels_due ORDER BY tip_id");
    const want = [{ tip_id: refused, due: true }, { tip_id: recorded, due: false }].sort((a, b) => (a.tip_id < b.tip_id ? -1 : 1));
    assert.deepEqual(rows, want, `not ${[lapsed, declined, captured].join(", ")}`);
  } finally {
    await db.drop();
  }
});
