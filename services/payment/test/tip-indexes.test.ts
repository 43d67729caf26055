// payment.tips' unique indexes on columns a tip fills only on one road or only
// later: each value still belongs to one tip at most (a receipt, a card
// payment, a wallet credit key credited once), and a tip without one writes
// no index entry for it (real PostgreSQL).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { migrate } from "@ttip/runtime";
import { createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";

/** The columns, each unique where it is filled. */
const ONCE_COLUMNS = ["mpesa_receipt", "credit_key", "checkout_request_id", "account_reference", "provider_payment_id", "provider_charge_id"] as const;

describe("payment.tips' unique indexes on columns filled later or on one road", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", fileURLToPath(new URL("../migrations", import.meta.url)));
  });
  after(async () => {
    await db?.drop();
  });

  /** Two pending M-Pesa tips with every one of ONCE_COLUMNS empty. */
  async function twoTips(): Promise<[string, string]> {
    const run = randomUUID();
    const { rows } = await db.pool.query<{ tip_id: string }>(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at)
       SELECT gen_random_uuid(), $1 || i, 'fp', gen_random_uuid(), 'KES', 10000, 10000, 9500, '254700000001', 'x', 'pending',
              $1 || 'token' || i, now() + interval '1 hour', now() + interval '1 hour'
         FROM generate_series(1, 2) AS i ORDER BY i RETURNING tip_id`,
      [run],
    );
    return [rows[0].tip_id, rows[1].tip_id];
  }

  for (const column of ONCE_COLUMNS) {
    test(`a ${column} given to a second tip is refused, and the first keeps it`, async () => {
      const [first, second] = await twoTips();
      const value = `${column}-${randomUUID()}`;
      await db.pool.query(`UPDATE payment.tips SET ${column} = $2 WHERE tip_id = $1`, [first, value]);
      await assert.rejects(db.pool.query(`UPDATE payment.tips SET ${column} = $2 WHERE tip_id = $1`, [second, value]), { code: "23505" });
      const { rows } = await db.pool.query(`SELECT tip_id FROM payment.tips WHERE ${column} = $1`, [value]);
      assert.deepEqual(rows.map((r) => r.tip_id), [first]);
    });
  }

  test("a receipt a tip holds cannot be inserted with another tip either", async () => {
    const [first] = await twoTips();
    const receipt = `R${randomUUID()}`;
    await db.pool.query("UPDATE payment.tips SET mpesa_receipt = $2, credit_key = $2 WHERE tip_id = $1", [first, receipt]);
    await assert.rejects(
      db.pool.query(
        `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt)
         VALUES (gen_random_uuid(), $1, 'fp', gen_random_uuid(), 'KES', 10000, 10000, 9500, '254700000001', 'x', 'succeeded', $1, now(), now(), $2)`,
        [randomUUID(), receipt],
      ),
      { code: "23505" },
    );
  });

  test("tips without a value leave no entry in its index: each is unique over filled values only", async () => {
    const { rows } = await db.pool.query<{ column: string; unique: boolean; predicate: string | null }>(
      `SELECT a.attname AS column, i.indisunique AS unique, pg_get_expr(i.indpred, i.indrelid) AS predicate
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'payment.tips'::regclass AND i.indnatts = 1 AND a.attname = ANY($1::text[]) ORDER BY a.attname`,
      [[...ONCE_COLUMNS]],
    );
    assert.deepEqual(
      rows,
      [...ONCE_COLUMNS].sort().map((column) => ({ column, unique: true, predicate: `(${column} IS NOT NULL)` })),
    );
  });
});
