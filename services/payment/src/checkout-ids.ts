// The CheckoutRequestIDs of STK pushes, stored on their tips in groups: every
// push answered while one group's statement is running goes in the next one,
// so concurrent tips share a statement and a commit (one each when alone: no
// waiting is added beyond the current turn of the event loop). The push's
// caller still waits for its own row.
import assert from "node:assert/strict";
import { GroupCommit, groupCommitPer, sortedByKey, type Queryable } from "@ttip/runtime";
import { carryingSentMarks, sentMarksCondition } from "./receipts.js";
import { TIP_COLUMNS_OF_T, type TipRow } from "./tips.js";

export interface CheckoutIds {
  tipId: string;
  checkoutRequestId: string;
  merchantRequestId: string;
}

/** At most this many tips per statement; a bound on its size. */
const MAX_GROUP = 200;

/** A tip's row as stored (undefined: it carries another CheckoutRequestID), or why its statement failed. */
type Outcome = { row: TipRow | undefined } | { err: unknown };

// Unbounded waiting, as before grouping: each push waiting holds a CreateTip, which the gateway bounds.
const groups = groupCommitPer((pool: Queryable) => new GroupCommit<CheckoutIds, Outcome>(MAX_GROUP, (group) => storeEach(pool, group)));

/**
 * Stores the push's ids on its tip unless a callback already recorded another
 * CheckoutRequestID (a callback may overtake the push's answer: it stores its
 * own, and the same one here changes nothing). Answers the row as it is after,
 * undefined when the tip carries another CheckoutRequestID. Rejects when the
 * statement failed for this tip (alone: one tip's failure never fails another's).
 */
export async function storeCheckoutIds(pool: Queryable, ids: CheckoutIds): Promise<TipRow | undefined> {
  const out = await groups(pool).add(ids);
  if ("err" in out) throw out.err ?? new Error("storing a CheckoutRequestID failed");
  return out.row;
}

/** A group in one statement; when it fails, each tip alone, so that one bad row fails by itself. */
async function storeEach(pool: Queryable, group: CheckoutIds[]): Promise<Outcome[]> {
  try {
    const rows = await storeGroup(pool, group);
    return group.map((ids) => ({ row: rows.get(ids.tipId) }));
  } catch (err) {
    if (group.length === 1) return [{ err }];
    return Promise.all(group.map((ids) => storeGroup(pool, [ids]).then((rows) => ({ row: rows.get(ids.tipId) }), (e: unknown) => ({ err: e }))));
  }
}

let groupSql: string | undefined;

/** The group's rows after the statement, by tip. */
async function storeGroup(pool: Queryable, group: CheckoutIds[]): Promise<Map<string, TipRow>> {
  // Sorted: two replicas' groups lock rows in the same order. The arrays go through sub-selects so that
  // a group's size does not change the plan's estimate: given directly, each size was planned anew.
  const sorted = sortedByKey(group, (ids) => ids.tipId);
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
      WHERE t.tip_id = l.tip_id AND (t.checkout_request_id IS NULL OR t.checkout_request_id = m.checkout_request_id) AND ${sentMarksCondition("$4")}
      RETURNING ${TIP_COLUMNS_OF_T}`;
  // Receipts of earlier tips sent since are marked so by this statement too (written anyway: no commit of their own).
  const { rows } = await carryingSentMarks(pool, (sentTipIds) =>
    pool.query<TipRow>(groupSql!, [sorted.map((w) => w.tipId), sorted.map((w) => w.checkoutRequestId), sorted.map((w) => w.merchantRequestId), sentTipIds]));
  assert.ok(rows.length <= group.length, "a group updates at most its own tips");
  return new Map(rows.map((r) => [r.tip_id, r]));
}
