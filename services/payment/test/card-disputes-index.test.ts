// A card tip's disputes are read by its id under the tip's row lock (a refund's start): through an index, not by
// reading every dispute ever recorded (real PostgreSQL's plan).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { migrate } from "@ttip/runtime";
import { createTestDatabase } from "@ttip/runtime/testing";
import { TIP_DISPUTED_SQL } from "../src/cards/aftercare.js";
import { PAYMENT_MIGRATIONS } from "./older-schema.js";

test("a refund's check for a dispute of its tip reads card_disputes by the tip's id, through card_disputes_tip", async () => {
  const db = await createTestDatabase();
  const client = await db.pool.connect();
  try {
    await migrate(db.pool, "payment", PAYMENT_MIGRATIONS);
    await client.query("BEGIN");
    // Whatever the table's size here: what matters is that an index serves the statement at all.
    await client.query("SET LOCAL enable_seqscan = off");
    const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${TIP_DISPUTED_SQL}`, [randomUUID()]);
    const indexes = [...JSON.stringify(rows[0]).matchAll(/"Index Name":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(indexes, ["card_disputes_tip"]);
  } finally {
    await client.query("ROLLBACK");
    client.release();
    await db.drop();
  }
});
