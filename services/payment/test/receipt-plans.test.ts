// How receipts are marked sent, read from the server's own counts, not timed: on a
// payment.receipts of thousands of rows whose statistics were taken when it held a
// few hundred (a young table, as a bench's or a new deployment's, between two of
// autovacuum's analyses), and with the generic plans a connection keeps, the marks
// read the table by its key only, never whole: those carried by a credit recording
// or a group of CheckoutRequestIDs' statement, with a list or without, and those
// written alone. Before, the marks were an UPDATE in the carrying statement, joined
// with a plan that read payment.receipts whole on every call (an empty list's too).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, mock, test } from "node:test";
import { migrate, type Queryable } from "@ttip/runtime";
import { createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";
import { storeCheckoutIds } from "../src/checkout-ids.js";
import { recordCredits } from "../src/credits.js";
import { markSent } from "../src/receipts.js";
import { loadTip } from "../src/tips.js";

/** payment.receipts' reads in the current transaction (pg_stat_xact_user_tables): by sequential scans, and by index. */
interface ReceiptReads {
  seq_scan: number;
  seq_tup_read: number;
  idx_scan: number;
}

describe("receipts marked sent, on a grown payment.receipts, by the generic plans connections keep", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", fileURLToPath(new URL("../migrations", import.meta.url)));
    // Statistics of a young table (300 receipts), then grown tenfold without a new ANALYZE; nearly all sent.
    await owedReceipts(await addTips(300, "credited"));
    await db.pool.query("ANALYZE payment.tips; ANALYZE payment.receipts");
    await owedReceipts(await addTips(3000, "credited"), true);
  });
  after(async () => {
    await db?.drop();
  });

  /** Succeeded tips: credited already, or decided and not yet credited (a credit recording's). */
  async function addTips(count: number, state: "credited" | "decided"): Promise<string[]> {
    const run = randomUUID();
    const { rows } = await db.pool.query<{ tip_id: string }>(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, credit_entry_id)
       SELECT gen_random_uuid(), $1 || i, 'fp', gen_random_uuid(), 'KES', 1000, 1000, 950, '2547' || lpad(i::text, 8, '0'), 'x', 'succeeded',
              $1 || 'token' || i, now() + interval '1 hour', now() + interval '1 hour', $1 || 'r' || i, $1 || 'r' || i, 'worker',
              CASE WHEN $3 THEN 'e' || i END
         FROM generate_series(1, $2::int) i RETURNING tip_id`,
      [run, count, state === "credited"],
    );
    return rows.map((r) => r.tip_id);
  }

  /** Owes these tips' receipts; `sent`: all but every hundredth marked sent already, as on a live table. */
  async function owedReceipts(tipIds: string[], sent = false): Promise<void> {
    await db.pool.query(
      "INSERT INTO payment.receipts (tip_id, sent_at) SELECT id, CASE WHEN $2 AND n % 100 <> 0 THEN now() END FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)",
      [tipIds, sent],
    );
  }

  async function receiptReads(q: Queryable): Promise<ReceiptReads> {
    const { rows } = await q.query<ReceiptReads>(
      "SELECT seq_scan::int, seq_tup_read::int, idx_scan::int FROM pg_stat_xact_user_tables WHERE relid = 'payment.receipts'::regclass");
    return rows[0];
  }

  const sentOf = async (tipIds: string[]) =>
    (await db.pool.query<{ tip_id: string }>("SELECT t AS tip_id FROM unnest($1::uuid[]) AS t WHERE NOT EXISTS (SELECT 1 FROM payment.receipts r WHERE r.tip_id = t)", [tipIds])).rows
      .map((r) => r.tip_id).sort();

  test("carried by credit recordings and CheckoutRequestIDs, with marks and without, and alone: payment.receipts read by its key only", async () => {
    const [toCredit, creditedAgain] = [await addTips(2, "decided"), await addTips(1, "decided")];
    const pushed = await addTips(2, "decided");
    const marked = await addTips(5, "decided");
    await owedReceipts(marked);
    const client = await db.pool.connect();
    // The marks' own timer held still: each rides the statement the test sends next, however slow the machine.
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      // One transaction: its counts are this connection's alone (pg_stat_xact_user_tables), whatever else the server does.
      await client.query("BEGIN");
      await client.query("SET LOCAL plan_cache_mode = force_generic_plan");
      const record = async (tipId: string, entryId: string) => recordCredits(client, [{ tip: (await loadTip(client, tipId))!, entryId, traceparent: null, autoPayoutCheckAt: new Date() }]);
      const before = await receiptReads(client);
      const sends: Promise<void>[] = [];
      // A credit carrying two marks, one carrying none, one carrying a mark that records nothing (credited already).
      const first = await record(toCredit[0], "entry-0");
      sends.push(markSent(client, marked[0]), markSent(client, marked[1]));
      const carrying = await record(toCredit[1], "entry-1");
      await record(creditedAgain[0], "entry-2");
      sends.push(markSent(client, marked[2]));
      const again = await record(creditedAgain[0], "entry-3");
      // A group of CheckoutRequestIDs carrying a mark, and one carrying none.
      sends.push(markSent(client, marked[3]));
      await storeCheckoutIds(client, { tipId: pushed[0], checkoutRequestId: `ws_CO_${pushed[0]}`, merchantRequestId: "m" });
      await storeCheckoutIds(client, { tipId: pushed[1], checkoutRequestId: `ws_CO_${pushed[1]}`, merchantRequestId: "m" });
      // A mark with no statement to ride: written alone when its timer fires.
      sends.push(markSent(client, marked[4]));
      mock.timers.tick(60_000);
      await Promise.all(sends);
      const after = await receiptReads(client);
      await client.query("COMMIT");
      assert.equal(first.size + carrying.size, 2, "both credits recorded");
      assert.equal(again.size, 0, "a credit recorded already records nothing");
      assert.deepEqual(await sentOf(marked), [...marked].sort(), "every mark written, the one riding a statement that recorded nothing too");
      const read = { seq_scan: after.seq_scan - before.seq_scan, seq_tup_read: after.seq_tup_read - before.seq_tup_read, idx_scan: after.idx_scan - before.idx_scan };
      assert.deepEqual({ seq_scan: read.seq_scan, seq_tup_read: read.seq_tup_read }, { seq_scan: 0, seq_tup_read: 0 }, `payment.receipts read whole: ${JSON.stringify(read)}`);
      assert.ok(read.idx_scan > 0, "read by its key");
    } finally {
      mock.timers.reset();
      await client.query("ROLLBACK").catch(() => undefined);
      client.release();
    }
  });
});

describe("receipts sent deleted (migrations 0032, 0033), on a live payment.receipts with rows", () => {
  test("the receipts marked sent before are deleted, those owed kept, receipts_unsent dropped; a mark then deletes its receipt", async () => {
    const db = await createTestDatabase();
    const dir = fileURLToPath(new URL("../migrations", import.meta.url));
    const before = await mkdtemp(path.join(tmpdir(), "payment-migrations-"));
    try {
      // The schema as it was before: every file up to 0031, and receipts owed and sent in it.
      for (const name of (await readdir(dir)).filter((n) => n < "0032")) await copyFile(path.join(dir, name), path.join(before, name));
      await migrate(db.pool, "payment", before);
      const { rows: tips } = await db.pool.query<{ tip_id: string }>(
        `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, credit_entry_id)
         SELECT gen_random_uuid(), 'k' || i, 'fp', gen_random_uuid(), 'KES', 1000, 1000, 950, '2547' || lpad(i::text, 8, '0'), 'x', 'succeeded',
                'token' || i, now(), now(), 'r' || i, 'r' || i, 'worker', 'e' || i
           FROM generate_series(1, 4) i ORDER BY i RETURNING tip_id`,
      );
      const [owed, sent, laterOwed, laterSent] = tips.map((t) => t.tip_id);
      await db.pool.query("INSERT INTO payment.receipts (tip_id, sent_at) VALUES ($1, NULL), ($2, now()), ($3, NULL), ($4, now())", [owed, sent, laterOwed, laterSent]);
      await migrate(db.pool, "payment", dir);
      const held = async () => (await db.pool.query<{ tip_id: string }>("SELECT tip_id FROM payment.receipts ORDER BY tip_id")).rows.map((r) => r.tip_id);
      assert.deepEqual(await held(), [owed, laterOwed].sort(), "the receipts owed, only");
      const { rows: indexes } = await db.pool.query<{ name: string }>("SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'payment' AND tablename = 'receipts'");
      assert.deepEqual(indexes.map((i) => i.name), ["receipts_pkey"]);
      await markSent(db.pool, laterOwed);
      assert.deepEqual(await held(), [owed], "sent: deleted");
    } finally {
      await rm(before, { recursive: true, force: true });
      await db.drop();
    }
  });
});
