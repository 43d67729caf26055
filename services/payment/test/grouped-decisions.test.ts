// Grouped STK decisions and grouped tip placements across replicas: two
// services' groups over the same callbacks or the same keys at once decide
// each tip once and place one tip per key (real PostgreSQL).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { createPool, migrate, type Pool, type Queryable, systemClock } from "@ttip/runtime";
import { createTestDatabase, eventually, type TestDatabase, testPhone } from "@ttip/runtime/testing";
import type { FeeQuote } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { loadPaymentConfig } from "../src/config.js";
import { storeStkSuccess, type StkSuccessCallback } from "../src/stk-callbacks.js";
import { placement, placeTip, type TipTerms } from "../src/tip-placements.js";
import { storeCheckoutIds } from "../src/checkout-ids.js";
import type { NewTip } from "../src/tips.js";

describe("grouped decisions and placements, two replicas at once", () => {
  let db: TestDatabase;
  /** Two replicas: each its own groups (keyed by the pool it is given), on the one database. */
  let replicas: [Queryable, Queryable];
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", fileURLToPath(new URL("../migrations", import.meta.url)));
    const replica = (): Queryable => ({ query: ((...args: Parameters<Queryable["query"]>) => db.pool.query(...args)) as Queryable["query"] });
    replicas = [replica(), replica()];
  });
  after(async () => {
    await db?.drop();
  });

  async function pendingTips(count: number): Promise<{ tipId: string; token: string; phone: string; charged: bigint }[]> {
    const run = randomUUID();
    const { rows } = await db.pool.query<{ tip_id: string; callback_token: string; phone: string; charged_minor: bigint }>(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, checkout_request_id)
       SELECT id, $1 || i, 'fp', gen_random_uuid(), 'KES', 10000 * i, 10000 * i, 9500 * i, '2547' || lpad(i::text, 8, '0'), 'x', 'pending',
              $1 || 'token' || i, now() + interval '1 hour', now() + interval '1 hour', 'ws_CO_' || id
         FROM unnest($2::uuid[]) WITH ORDINALITY AS g(id, i) ORDER BY i RETURNING tip_id, callback_token, phone, charged_minor`,
      [run, Array.from({ length: count }, () => randomUUID())],
    );
    return rows.map((r) => ({ tipId: r.tip_id, token: r.callback_token, phone: r.phone, charged: r.charged_minor }));
  }
  const success = (t: { tipId: string; token: string; phone: string; charged: bigint }, receipt: string): StkSuccessCallback => ({
    raw: { callbackId: randomUUID(), source: "mpesa_stk", path: "/daraja/stk/[token]", remoteAddress: "127.0.0.1", body: Buffer.from(`{"receipt":"${receipt}"}`) },
    token: t.token,
    success: { source: "callback", checkoutRequestId: `ws_CO_${t.tipId}`, merchantRequestId: "m", resultCode: "0", resultDesc: "ok", receipt, amountMinor: t.charged, phone: t.phone },
  });

  test("a callback delivered to two replicas at once (and twice to one) decides its tip once; every copy is stored", async () => {
    const tips = await pendingTips(40);
    const receipts = tips.map(() => `R${randomUUID().replace(/-/g, "").slice(0, 9).toUpperCase()}`);
    const copies = tips.map((t, i) => [success(t, receipts[i]), success(t, receipts[i]), success(t, receipts[i])]);
    // Replica 0 in the tips' order, replica 1 backwards; every fourth tip's callback twice on replica 1.
    const calls = [
      ...copies.map((c) => storeStkSuccess(replicas[0], c[0])),
      ...copies.toReversed().flatMap((c, j) => [storeStkSuccess(replicas[1], c[1]), ...((copies.length - 1 - j) % 4 === 0 ? [storeStkSuccess(replicas[1], c[2])] : [])]),
    ];
    const answers = await Promise.allSettled(calls);
    assert.deepEqual(answers.filter((a) => a.status === "rejected"), [], "no callback fails");
    const decided = answers.flatMap((a) => (a.status === "fulfilled" && a.value ? [a.value.tip_id] : []));
    assert.deepEqual(decided.toSorted(), tips.map((t) => t.tipId).toSorted(), "each tip decided by exactly one callback");
    const { rows } = await db.pool.query<{ tip_id: string; status: string; mpesa_receipt: string; credited: number; stored: number }>(
      `SELECT t.tip_id, t.status, t.mpesa_receipt, count(c.*) FILTER (WHERE c.outcome = 'credited')::int AS credited, count(c.*)::int AS stored
         FROM payment.tips t LEFT JOIN payment.callbacks c ON c.raw_body = convert_to('{"receipt":"' || t.mpesa_receipt || '"}', 'UTF8')
        WHERE t.tip_id = ANY($1::uuid[]) GROUP BY t.tip_id, t.status, t.mpesa_receipt`,
      [tips.map((t) => t.tipId)],
    );
    assert.equal(rows.length, tips.length);
    for (const [i, t] of tips.entries()) {
      const row = rows.find((r) => r.tip_id === t.tipId)!;
      assert.deepEqual([row.status, row.mpesa_receipt, row.credited, row.stored], ["succeeded", receipts[i], 1, i % 4 === 0 ? 3 : 2], `tip ${i}`);
    }
  });

  const config = { ...loadPaymentConfig({}), fraud: { phonePerWindow: 1000, workerPerWindow: 1000, windowMs: 600_000, outlierMinor: 10n ** 9n, pinFailures: 3 } };
  /** A CreateTip's placement of a KES 100 tip (KES 95 to the worker). */
  const newTip = (idempotencyKey: string, over: Partial<NewTip> = {}, limits = config) => {
    const t: NewTip = { idempotencyKey, workerId: randomUUID(), amountMinor: 10_000n, phone: testPhone(), customerCoversFee: false, rating: 0, message: "", customerEmail: "", ...over };
    const quote = { workerReceives: { currency: "KES", amountMinor: 9_500n }, feeScheduleVersion: 1 } as FeeQuote;
    const terms: TipTerms = { tipId: randomUUID(), fp: `fp-${idempotencyKey}`, charged: 10_000n, quote, phoneMasked: "2547****0000", config: limits, clock: systemClock };
    return placement(t, terms);
  };
  const tipsOf = async (ps: { terms: TipTerms }[]) =>
    (await db.pool.query<{ tip_id: string }>("SELECT tip_id FROM payment.tips WHERE tip_id = ANY($1::uuid[])", [ps.map((p) => p.terms.tipId)])).rows.map((r) => r.tip_id).toSorted();

  test("two tips to one worker from two numbers placed together: the second counts the first (the worker's limit holds it)", async () => {
    const limited = { ...config, fraud: { ...config.fraud, workerPerWindow: 1 } };
    const workerId = randomUUID();
    const [first, second, elsewhere] = [newTip(`key-${randomUUID()}`, { workerId }, limited), newTip(`key-${randomUUID()}`, { workerId }, limited), newTip(`key-${randomUUID()}`, {}, limited)];
    const [a, b, c] = await Promise.all([first, second, elsewhere].map((p) => placeTip(replicas[0], p, false)));
    assert.equal(a.row?.tip_id, first.terms.tipId);
    assert.equal(c.row?.tip_id, elsewhere.terms.tipId);
    assert.equal(b.row, undefined, "not placed without its hold accepted");
    assert.deepEqual(b.check.hits.map((h) => h.reason), ["VELOCITY_WORKER"]);
    assert.deepEqual(await tipsOf([first, second, elsewhere]), [first, elsewhere].map((p) => p.terms.tipId).toSorted());
  });

  test("a tip its statement cannot store fails alone: the others placed with it are placed, each with its own row", async () => {
    const tips = Array.from({ length: 5 }, () => newTip(`key-${randomUUID()}`));
    // A message PostgreSQL cannot store (CreateTip's validation refuses it first; here it stands for any one tip's failure).
    const bad = newTip(`key-${randomUUID()}`, { message: "nul \u0000 here" });
    const answers = await Promise.allSettled([tips[0], tips[1], bad, ...tips.slice(2)].map((p) => placeTip(replicas[1], p, false)));
    assert.deepEqual(answers.map((a) => a.status), ["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
    const placed = answers.flatMap((a) => (a.status === "fulfilled" ? [a.value.row?.tip_id] : []));
    assert.deepEqual(placed, tips.map((p) => p.terms.tipId));
    assert.deepEqual(await tipsOf([...tips, bad]), tips.map((p) => p.terms.tipId).toSorted());
  });

  test("a group of STK successes and a group of CheckoutRequestIDs over the same tips at once do not deadlock", async () => {
    // Planned as on a production-sized table: each tip found by its index, one after the other.
    const url = new URL(db.url);
    url.searchParams.set("options", "-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_bitmapscan=off");
    const big: Pool = createPool(url.toString(), { max: 10 });
    let statements = 0;
    const counted: Queryable = { query: ((...args: Parameters<Queryable["query"]>) => (statements++, big.query(...args))) as Queryable["query"] };
    const blocker = await db.pool.connect();
    try {
      const [other, ...rest] = await pendingTips(4);
      const tips = rest.toSorted((a, b) => (a.tipId < b.tipId ? -1 : 1));
      await db.pool.query("UPDATE payment.tips SET checkout_request_id = NULL WHERE tip_id = ANY($1::uuid[])", [tips.map((t) => t.tipId)]);
      // Receipts in the reverse of the tips' order: the callbacks' group meets the tips backwards.
      const tag = randomUUID().slice(0, 6).toUpperCase();
      const callbacks = tips.map((t, i) => success(t, `R${tag}${3 - i}`));
      // The middle tip locked a moment (a reconciliation's lease), so that both groups are under way at once: the push's answers
      // hold the first tip; the callbacks' group, were it to lock in the receipts' order, would hold the last.
      await blocker.query("BEGIN");
      await blocker.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tips[1].tipId]);
      const started = Date.now();
      // Another push's ids too: answered in one turn, the four go together in one statement.
      const ids = Promise.allSettled([other, ...tips].map((t) => storeCheckoutIds(counted, { tipId: t.tipId, checkoutRequestId: `ws_CO_${t.tipId}`, merchantRequestId: "m" })));
      const decided = Promise.allSettled(callbacks.map((c) => storeStkSuccess(counted, c)));
      await eventually("both groups wait on a row lock", async () => (await db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n >= 2);
      await blocker.query("COMMIT");
      const [idAnswers, decideAnswers] = await Promise.all([ids, decided]);
      const took = Date.now() - started;
      assert.deepEqual([...idAnswers, ...decideAnswers].map((a) => a.status), Array(7).fill("fulfilled"));
      assert.deepEqual((await Promise.all(tips.map((t) => db.pool.query("SELECT status FROM payment.tips WHERE tip_id = $1", [t.tipId])))).map((r) => r.rows[0].status), ["succeeded", "succeeded", "succeeded"]);
      assert.equal(statements, 2, `one statement per group, none retried after a deadlock (${statements} statements, ${took} ms)`);
    } finally {
      blocker.release();
      await big.end();
    }
  });

  test("the same keys placed by two replicas at once: one tip and one tip_created per key, and no call answers another tip than the key's", async () => {
    const keys = Array.from({ length: 30 }, () => `key-${randomUUID()}`);
    const placements = keys.map((k) => [newTip(k), newTip(k)]);
    const answers = await Promise.allSettled([
      ...placements.map((p) => placeTip(replicas[0], p[0], false)),
      ...placements.toReversed().map((p) => placeTip(replicas[1], p[1], false)),
    ]);
    assert.deepEqual(answers.filter((a) => a.status === "rejected"), [], "no placement fails");
    const { rows } = await db.pool.query<{ idempotency_key: string; tip_id: string }>("SELECT idempotency_key, tip_id FROM payment.tips WHERE idempotency_key = ANY($1)", [keys]);
    assert.equal(rows.length, keys.length);
    const byKey = new Map(rows.map((r) => [r.idempotency_key, r.tip_id]));
    const results = answers.map((a) => (a.status === "fulfilled" ? a.value : undefined));
    const placed = [...placements.map((p) => p[0]), ...placements.toReversed().map((p) => p[1])];
    for (const [i, r] of results.entries()) {
      if (r?.row) assert.equal(r.row.tip_id, byKey.get(placed[i].t.idempotencyKey), "the key's tip");
      assert.deepEqual(r?.check.hits, []);
    }
    const eventIds = placements.flat().map((p) => p.values[20]);
    const { rows: created } = await db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE event_id = ANY($1::uuid[])", [eventIds]);
    assert.equal(created[0].n, keys.length, "one tip_created per tip");
  });
});
