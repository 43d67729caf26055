// The CheckoutRequestIDs of STK pushes, stored on their tips in groups: every
// push answered while one group's statement is running goes in the next one,
// so concurrent tips share a statement and a commit (one each when alone: no
// waiting is added). The push's caller still waits for its own row.
import assert from "node:assert/strict";
import type { Queryable } from "@ttip/runtime";
import { TIP_COLUMNS_OF_T, type TipRow } from "./tips.js";

export interface CheckoutIds {
  tipId: string;
  checkoutRequestId: string;
  merchantRequestId: string;
}

/** At most this many tips per statement; a bound on its size. */
const MAX_GROUP = 200;

interface Waiting extends CheckoutIds {
  settle: (row: TipRow | undefined, err?: unknown) => void;
}

interface Groups {
  waiting: Waiting[];
  running: boolean;
}
const groupsByPool = new WeakMap<Queryable, Groups>();

/**
 * Stores the push's ids on its tip unless a callback already recorded another
 * CheckoutRequestID (a callback may overtake the push's answer: it stores its
 * own, and the same one here changes nothing). Answers the row as it is after,
 * undefined when the tip carries another CheckoutRequestID. Rejects when the
 * statement failed for this tip (alone: one tip's failure never fails another's).
 */
export function storeCheckoutIds(pool: Queryable, ids: CheckoutIds): Promise<TipRow | undefined> {
  const groups = groupsByPool.get(pool) ?? { waiting: [], running: false };
  groupsByPool.set(pool, groups);
  const stored = new Promise<TipRow | undefined>((resolve, reject) => {
    groups.waiting.push({ ...ids, settle: (row, err) => (err === undefined ? resolve(row) : reject(err)) });
  });
  if (!groups.running) void runGroups(pool, groups);
  return stored;
}

async function runGroups(pool: Queryable, groups: Groups): Promise<void> {
  groups.running = true;
  try {
    while (groups.waiting.length) {
      const group = groups.waiting.splice(0, MAX_GROUP);
      await storeGroup(pool, group).catch(async (err: unknown) => {
        // One bad row must not fail the others: each alone, then each answers for itself.
        if (group.length === 1) return group[0].settle(undefined, err ?? new Error("storing a CheckoutRequestID failed"));
        await Promise.all(group.map((w) => storeGroup(pool, [w]).catch((e: unknown) => w.settle(undefined, e ?? new Error("storing a CheckoutRequestID failed")))));
      });
    }
  } finally {
    groups.running = false;
  }
}

let groupSql: string | undefined;

async function storeGroup(pool: Queryable, group: Waiting[]): Promise<void> {
  // Sorted: two replicas' groups lock rows in the same order. The arrays go through sub-selects so that
  // a group's size does not change the plan's estimate: given directly, each size was planned anew.
  const sorted = [...group].sort((a, b) => (a.tipId < b.tipId ? -1 : a.tipId > b.tipId ? 1 : 0));
  // The rows are locked first, in the tips' order whichever way the update is planned (a hash join
  // reads the table's order), as a group of STK callbacks locks them: a push's answers and its
  // callbacks come together, and two groups holding each other's tips waited for PostgreSQL's
  // deadlock check (a second) before one failed.
  groupSql ??= `WITH m AS (
       SELECT a.tip_id, a.checkout_request_id, a.merchant_request_id
         FROM unnest((SELECT $1::uuid[])::uuid[], (SELECT $2::text[])::text[], (SELECT $3::text[])::text[]) AS a(tip_id, checkout_request_id, merchant_request_id)),
     locked AS MATERIALIZED (SELECT t.tip_id FROM payment.tips t JOIN m USING (tip_id) ORDER BY t.tip_id FOR UPDATE OF t)
     UPDATE payment.tips t SET checkout_request_id = m.checkout_request_id, merchant_request_id = m.merchant_request_id
       FROM locked l JOIN m USING (tip_id)
      WHERE t.tip_id = l.tip_id AND (t.checkout_request_id IS NULL OR t.checkout_request_id = m.checkout_request_id)
      RETURNING ${TIP_COLUMNS_OF_T}`;
  const { rows } = await pool.query<TipRow>(groupSql, [sorted.map((w) => w.tipId), sorted.map((w) => w.checkoutRequestId), sorted.map((w) => w.merchantRequestId)]);
  assert.ok(rows.length <= group.length, "a group updates at most its own tips");
  const byTip = new Map(rows.map((r) => [r.tip_id, r]));
  for (const w of group) w.settle(byTip.get(w.tipId));
}
