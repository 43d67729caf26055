// payment.tips' unique indexes on columns a tip fills only on one road or only
// later: each value still belongs to one tip at most (a receipt, a card
// payment, a wallet credit key credited once), and a tip without one writes
// no index entry for it. The CheckoutRequestID is unique through a narrow table
// its triggers keep, so storing it updates the row in place (real PostgreSQL).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { migrate, type Pool, type Queryable } from "@ttip/runtime";
import { createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";
import { DUE_CARD_TIPS_SQL } from "../src/cards/tips.js";
import { dueMpesaTipsSql } from "../src/tips.js";
import { migrateBefore, PAYMENT_MIGRATIONS as MIGRATIONS } from "./older-schema.js";

/** The columns, each unique where it is filled. */
const ONCE_COLUMNS = ["mpesa_receipt", "credit_key", "checkout_request_id", "account_reference", "provider_payment_id", "provider_charge_id"] as const;


/** Inserts one tip (with a fresh key, and `tipId` if given) that holds `value` in `column` from the start. */
function insertTipHolding(pool: Pool, column: "mpesa_receipt" | "checkout_request_id", value: string, status = "pending", tipId?: string) {
  return pool.query(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, callback_token, deadline_at, next_check_at, ${column})
     VALUES (COALESCE($1::uuid, gen_random_uuid()), $2, 'fp', gen_random_uuid(), 'KES', 10000, 10000, 9500, '254700000001', 'x', $3, $2, now(), now(), $4)`,
    [tipId ?? null, randomUUID(), status, value],
  );
}

describe("payment.tips' unique indexes on columns filled later or on one road", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", MIGRATIONS);
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
      insertTipHolding(db.pool, "mpesa_receipt", receipt, "succeeded"),
      { code: "23505" },
    );
  });

  test("a CheckoutRequestID taken by a tip cannot be inserted with another, and a tip that gives its id up frees it", async () => {
    const [first, second] = await twoTips();
    const checkout = `ws_CO_${randomUUID()}`;
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [first, checkout]);
    await assert.rejects(
      insertTipHolding(db.pool, "checkout_request_id", checkout),
      { code: "23505" },
    );
    // The same id stated again (a callback after the push's answer) changes nothing and is no conflict with itself.
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [first, checkout]);
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [first, `${checkout}-next`]);
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [second, checkout]);
    const { rows } = await db.pool.query("SELECT checkout_request_id, tip_id FROM payment.tip_checkout_ids WHERE tip_id = ANY($1::uuid[]) ORDER BY checkout_request_id", [[first, second]]);
    assert.deepEqual(rows, [{ checkout_request_id: checkout, tip_id: second }, { checkout_request_id: `${checkout}-next`, tip_id: first }]);
  });

  test("a deleted tip gives its CheckoutRequestID up: another tip may take it", async () => {
    const [first, second] = await twoTips();
    const checkout = `ws_CO_${randomUUID()}`;
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [first, checkout]);
    await db.pool.query("DELETE FROM payment.tips WHERE tip_id = $1", [first]);
    await db.pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [second, checkout]);
    const { rows } = await db.pool.query("SELECT tip_id FROM payment.tip_checkout_ids WHERE checkout_request_id = $1", [checkout]);
    assert.deepEqual(rows, [{ tip_id: second }]);
  });

  test("storing a push's CheckoutRequestID on its tip is a HOT update: no index names the column", async () => {
    const [tip] = await twoTips();
    const client = await db.pool.connect();
    try {
      // This session's counts not yet reported (earlier statements' included): read around the update.
      const counts = async () => (await client.query<{ updates: bigint; hot: bigint }>(
        "SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_xact_user_tables WHERE relid = 'payment.tips'::regclass")).rows[0];
      await client.query("BEGIN");
      const before = await counts();
      await client.query("UPDATE payment.tips SET checkout_request_id = $2, merchant_request_id = 'm' WHERE tip_id = $1", [tip, `ws_CO_${randomUUID()}`]);
      const after = await counts();
      await client.query("COMMIT");
      assert.deepEqual({ updates: after.updates - before.updates, hot: after.hot - before.hot }, { updates: 1n, hot: 1n });
    } finally {
      client.release();
    }
  });

  test("a decided tip enters payment.uncredited by one plain insert (no speculative insertion's confirm record); a row there already is kept", async () => {
    const [tip, other] = await twoTips();
    const decide = (client: Queryable, tipId: string) =>
      client.query("UPDATE payment.tips SET status = 'succeeded', mpesa_receipt = $2, credit_key = $2, credit_kind = 'worker' WHERE tip_id = $1", [tipId, `R${randomUUID()}`]);
    const client = await db.pool.connect();
    try {
      await client.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
      // Each commit flushed, so the WAL can be read back up to it; the queue's records only (the server's other databases write meanwhile).
      await client.query("SET synchronous_commit = on");
      const { rows: [from] } = await client.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
      await decide(client, tip);
      const { rows } = await client.query<{ record_type: string }>(
        `SELECT w.record_type FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn()) w, pg_class c, pg_database d
          WHERE c.oid = 'payment.uncredited'::regclass AND d.datname = current_database()
            AND w.block_ref LIKE '%rel ' || (CASE c.reltablespace WHEN 0 THEN d.dattablespace ELSE c.reltablespace END) || '/' || d.oid || '/' || pg_relation_filenode(c.oid) || ' %'
          ORDER BY w.start_lsn`,
        [from.lsn],
      );
      assert.deepEqual(rows.map((r) => r.record_type), ["INSERT"]);
    } finally {
      client.release();
    }
    await db.pool.query("INSERT INTO payment.uncredited (tip_id, method, attempts) VALUES ($1, 'mpesa', 3)", [other]);
    await decide(db.pool, other);
    const { rows } = await db.pool.query("SELECT tip_id, attempts FROM payment.uncredited WHERE tip_id = ANY($1::uuid[]) ORDER BY attempts", [[tip, other]]);
    assert.deepEqual(rows, [{ tip_id: tip, attempts: 0 }, { tip_id: other, attempts: 3 }]);
  });

  test("new pages of payment.tips keep room for their tips' later row versions (fillfactor 65, was 85)", async () => {
    const { rows } = await db.pool.query("SELECT reloptions AS options FROM pg_class WHERE oid = 'payment.tips'::regclass");
    assert.deepEqual(rows, [{ options: ["fillfactor=65"] }]);
  });

  test("both pollers of pending tips (M-Pesa's checks, cards' reconciliation) read one index, and the table with its indexes fits a backend's 16 fast-path locks", async () => {
    // The pollers' own reads (tips.ts' reconcileTips, cards/tips.ts' reconcileCardTips), at the service's time.
    const poll = { mpesa: dueMpesaTipsSql(false), card: DUE_CARD_TIPS_SQL };
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SET LOCAL enable_seqscan = off");
      const indexesRead = async (sql: string) => {
        const { rows } = await client.query<{ plan: unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, [100, new Date()]);
        return [...JSON.stringify(rows[0]).matchAll(/"Index Name":"([^"]+)"/g)].map((m) => m[1]);
      };
      assert.deepEqual({ mpesa: await indexesRead(poll.mpesa), card: await indexesRead(poll.card) }, { mpesa: ["tips_pending_due"], card: ["tips_pending_due"] });
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    // The table and its indexes, each a lock per statement on it: past 16 the rest go to the shared lock table.
    const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'payment.tips'::regclass");
    assert.ok(1 + rows[0].n <= 15, `payment.tips and its ${rows[0].n} indexes`);
  });

  test("tips without a value leave no entry in its index: each is unique over filled values only", async () => {
    const { rows } = await db.pool.query<{ column: string; unique: boolean; predicate: string | null }>(
      `SELECT a.attname AS column, i.indisunique AS unique, pg_get_expr(i.indpred, i.indrelid) AS predicate
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'payment.tips'::regclass AND i.indnatts = 1 AND a.attname = ANY($1::text[]) ORDER BY a.attname`,
      [[...ONCE_COLUMNS]],
    );
    const indexed = ONCE_COLUMNS.filter((column) => column !== "checkout_request_id");
    assert.deepEqual(
      rows,
      [...indexed].sort().map((column) => ({ column, unique: true, predicate: `(${column} IS NOT NULL)` })),
    );
  });
  test("CheckoutRequestIDs stored before the triggers existed are copied: each still refused to a second tip", async () => {
    const other = await createTestDatabase();
    try {
      // The schema as it was before the narrow table (0018 and earlier), with a tip holding its push's id.
      await migrateBefore(other.pool, "0019");
      const tipId = randomUUID();
      const checkout = `ws_CO_${randomUUID()}`;
      await insertTipHolding(other.pool, "checkout_request_id", checkout, "pending", tipId);
      await migrate(other.pool, "payment", MIGRATIONS);
      const { rows } = await other.pool.query("SELECT checkout_request_id, tip_id FROM payment.tip_checkout_ids");
      assert.deepEqual(rows, [{ checkout_request_id: checkout, tip_id: tipId }]);
      await assert.rejects(insertTipHolding(other.pool, "checkout_request_id", checkout), { code: "23505" });
    } finally {
      await other.drop();
    }
  });
});
