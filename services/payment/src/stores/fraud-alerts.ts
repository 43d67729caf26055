// Fraud alerts: raised by the checks before money moves, closed by an admin's review.
import { InvalidStateError, NotFoundError, type Queryable } from "@ttip/runtime";
import type { FraudAlertRow } from "../convert.js";
import { keysetRows, type Cursor, type PageRow } from "./page.js";

/** What alerts a list keeps (null = any). */
export interface FraudAlertFilter {
  status: string | null;
  reason: string | null;
  action: string | null;
}

/** Up to `limit` alerts matching `filter`, newest first. */
export async function fraudAlerts(db: Queryable, filter: FraudAlertFilter, cursor: Cursor, limit: number): Promise<PageRow<FraudAlertRow>[]> {
  const where = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reason = $2) AND ($3::text IS NULL OR action = $3)";
  return keysetRows<FraudAlertRow>(
    db, { table: "fraud_alerts", time: "created_at", id: "alert_id", where, params: [filter.status, filter.reason, filter.action] },
    cursor, limit,
  );
}

/** The first 50 alerts about one tip or one payout, oldest first. */
export async function alertsOf(db: Queryable, column: "tip_id" | "payout_id", id: string): Promise<FraudAlertRow[]> {
  const { rows } = await db.query<FraudAlertRow>(`SELECT * FROM payment.fraud_alerts WHERE ${column} = $1 ORDER BY created_at LIMIT 50`, [id]);
  return rows;
}

type Decision = "approved" | "rejected";

/**
 * Ends the open alerts `where` picks (its parameters from $4) with a decision or a close, who made it and their note
 * after the detail: the one statement every way an alert ends goes through.
 */
async function endOpenAlerts(tx: Queryable, where: string, params: unknown[], status: Decision | "closed", reviewer: string, note: string): Promise<FraudAlertRow[]> {
  const { rows } = await tx.query<FraudAlertRow>(
    `UPDATE payment.fraud_alerts SET status = $1, reviewed_by = $2, reviewed_at = now(), detail = detail || $3 WHERE status = 'open' AND ${where} RETURNING *`,
    [status, reviewer, ` | ${status === "closed" ? "closed" : "review"}: ${note}`, ...params]);
  return rows;
}

/**
 * Closes the alert that parked a paybill payment in suspense (c2b.ts' unplacedAlert, which names the
 * receipt first) once an admin has matched it (approved) or refunded it (rejected), with their note:
 * left open, it stayed in the Fraud queue and its held count for good, with nothing there to do.
 */
export async function closeSuspenseAlerts(tx: Queryable, receipt: string, decision: Decision | "closed", reviewer: string, note: string): Promise<void> {
  await endOpenAlerts(tx, "reason = 'UNKNOWN_CALLBACK' AND action = 'hold' AND tip_id IS NULL AND starts_with(detail, 'paybill payment ' || $4 || ' ')",
    [receipt], decision, reviewer, note);
}

/** Closes a tip's open alerts with the reviewer's decision and note. */
export async function closeTipAlerts(tx: Queryable, tipId: string, decision: Decision, reviewer: string, note: string): Promise<void> {
  await endOpenAlerts(tx, "tip_id = $4", [tipId], decision, reviewer, note);
}

/** Closes a held payout's open mismatch alerts with the admin's decision and note. */
export async function closePayoutAlerts(tx: Queryable, payoutId: string, decision: Decision, reviewer: string, note: string): Promise<void> {
  await endOpenAlerts(tx, "payout_id = $4 AND reason = 'CALLBACK_MISMATCH'", [payoutId], decision, reviewer, note);
}

/** Whether `reviewer` closed the tip's hold with `decision` (closeTipAlerts). */
export async function closedByReviewer(db: Queryable, tipId: string, decision: Decision, reviewer: string): Promise<boolean> {
  const { rowCount } = await db.query("SELECT 1 FROM payment.fraud_alerts WHERE tip_id = $1 AND action = 'hold' AND status = $2 AND reviewed_by = $3 LIMIT 1",
    [tipId, decision, reviewer]);
  return (rowCount ?? 0) > 0;
}

/**
 * Closes an open alert that holds nothing (a flag, a refusal) with support's note, in `tx`, with its audit record
 * (`record`: once, not when it was closed already). A hold closes with its own decision, so it is refused.
 */
export async function closeAlert(tx: Queryable, alertId: string, reviewer: string, note: string, record: () => Promise<void>): Promise<FraudAlertRow> {
  const { rows: [alert] } = await tx.query<FraudAlertRow>("SELECT * FROM payment.fraud_alerts WHERE alert_id = $1 FOR UPDATE", [alertId]);
  if (!alert) throw new NotFoundError("alert_id: no such alert");
  if (alert.status === "closed") return alert;
  if (alert.action === "hold") {
    throw new InvalidStateError("alert_id: it holds money, so it closes with its decision: review the tip, resolve the payout, or resolve the payment in Suspense");
  }
  if (alert.status !== "open") throw new InvalidStateError(`alert_id: it was decided already (${alert.status}${alert.reviewed_by ? ` by ${alert.reviewed_by}` : ""})`);
  const [closed] = await endOpenAlerts(tx, "alert_id = $4", [alertId], "closed", reviewer, note);
  await record();
  return closed;
}

/** Closes the open alerts about one M-Pesa reversal (in doubt) once it is ended, with what ended it. */
export async function closeReversalAlerts(tx: Queryable, reversalId: string, reviewer: string, note: string): Promise<void> {
  await endOpenAlerts(tx, "action = 'flag' AND starts_with(detail, 'M-Pesa reversal ' || $4 || ' ')", [reversalId], "closed", reviewer, note);
}
