import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, decodeTimeIdToken, emitEvent, InvalidStateError, keysetPage, keysetTime, NotFoundError, maskPhone, pageSize, type Queryable, requireCaller, requireKenyanMobile, withTransaction } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentMethod } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { ALERT_STATUS, FRAUD_REASON, fraudAlertMessage, tipMessage, type FraudAlertRow } from "../convert.js";
import { resultMessage } from "../messages.js";
import type { CardTipRow } from "../cards/convert.js";
import { reviewCardTip } from "../cards/review.js";
import { kes } from "../money.js";
import { approvedSplit, emitTipSucceeded, loadTip, runAfterCredit, type TipRow } from "../tips.js";
import { locale, type PaymentHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof PaymentAdminService>;

/** Fraud: alerts and the review of held tips, payout holds, blocked numbers. */
export function fraudHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    listFraudAlerts: listFraudAlertsHandler(h),
    reviewTip: reviewTipHandler(h),
    holdPayouts: holdPayoutsHandler(h),
    releasePayouts: releasePayoutsHandler(h),
    blockPhoneNumber: blockPhoneNumberHandler(h),
    unblockPhoneNumber: unblockPhoneNumberHandler(h),
  };
}

function listFraudAlertsHandler(h: PaymentHandlerContext): Impl["listFraudAlerts"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const status = req.status ? Object.entries(ALERT_STATUS).find(([, v]) => v === req.status)?.[0] : null;
    const reason = req.reason ? Object.entries(FRAUD_REASON).find(([, v]) => v === req.reason)?.[0] : null;
    const { rows } = await pool.query<FraudAlertRow & { page_at: string }>(
      `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.fraud_alerts WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reason = $2)
         AND ($3::timestamptz IS NULL OR (created_at, alert_id) < ($3::timestamptz, $4::uuid))
       ORDER BY created_at DESC, alert_id DESC LIMIT $5`,
      [status ?? null, reason ?? null, cursor?.at ?? null, cursor?.id ?? null, size + 1],
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.alert_id]);
    return {
      alerts: items.map(fraudAlertMessage),
      page: { nextPageToken },
    };
  };
}

function reviewTipHandler(h: PaymentHandlerContext): Impl["reviewTip"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    const admin = requireCaller(ctx);
    const tip = await loadTip(pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    if (tip.status !== "held_for_review") throw new InvalidStateError("tip_id: the tip is not held for review");
    if (!tip.credit_entry_id) throw new InvalidStateError("tip_id: the payment is still being recorded; try again shortly");
    const record = (tx: Queryable) =>
      auditAdminAction(tx, "payment", ctx, {
        action: req.approve ? AuditAction.HELD_TIP_APPROVED : AuditAction.HELD_TIP_REFUSED,
        target: `tip:${tip.tip_id}`, userId: tip.worker_id ?? undefined, detail: req.note,
      });
    if (tip.method === "card") return { tip: tipMessage(await reviewCardTip(deps, tip as CardTipRow, req.approve, admin.subject, req.note, record), locale(ctx)) };
    // Out of what M-Pesa took, which may differ from what was asked (the reason it was held).
    const split = approvedSplit(tip);
    if (req.approve) {
      // Idempotent on its key: a repeated approval posts nothing new.
      await deps.ledger.releaseFromSuspense({
        key: `${tip.credit_key}:approved`, receipt: tip.mpesa_receipt ?? tip.credit_key!,
        recipient: tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id },
        ...split,
      });
    }
    const updated = await withTransaction(pool, async (tx) => {
      const { rows } = await tx.query<TipRow>(
        `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END,
           result_message = $4, worker_receives_minor = CASE WHEN $3 THEN $5 ELSE worker_receives_minor END
          WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
        [tip.tip_id, req.approve ? "succeeded" : "failed", req.approve, resultMessage(req.approve ? "0" : "review_rejected"), split.workerMinor],
      );
      const t = rows[0];
      if (!t) return undefined;
      await tx.query(
        `UPDATE payment.fraud_alerts SET status = $2, reviewed_by = $3, reviewed_at = now(), detail = detail || ' | review: ' || $4
          WHERE tip_id = $1 AND status = 'open'`,
        [tip.tip_id, req.approve ? "approved" : "rejected", admin.subject, req.note],
      );
      await record(tx);
      if (req.approve) await emitTipSucceeded(tx, t);
      else {
        await emitEvent(tx, "payment", TipFailedSchema, {
          tipId: t.tip_id, workerId: t.worker_id ?? "", qrCodeId: t.qr_code_id, amount: kes(t.amount_minor), method: PaymentMethod.MPESA,
          resultCode: t.result_code, reason: t.result_message, venueId: t.venue_id, createdBy: t.customer_subject,
        }, t.tip_id);
      }
      return t;
    });
    if (!updated) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
    deps.changes.emit(tip.tip_id);
    if (req.approve) runAfterCredit(deps, updated);
    return { tip: tipOut(updated, locale(ctx)) };
  };
}

function holdPayoutsHandler(h: PaymentHandlerContext): Impl["holdPayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    await withTransaction(pool, async (tx) => {
      await tx.query(
        `INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, hold_reason) VALUES ($1, true, $2)
         ON CONFLICT (worker_id) DO UPDATE SET payouts_on_hold = true, hold_reason = $2, updated_at = now()`,
        [req.workerId, req.reason],
      );
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_HELD, target: `worker:${req.workerId}`, userId: req.workerId, detail: req.reason });
    });
    return {};
  };
}

function releasePayoutsHandler(h: PaymentHandlerContext): Impl["releasePayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    await withTransaction(pool, async (tx) => {
      const { rowCount } = await tx.query(
        "UPDATE payment.payout_settings SET payouts_on_hold = false, hold_reason = '', updated_at = now() WHERE worker_id = $1 AND payouts_on_hold",
        [req.workerId],
      );
      // Releasing what was not held changes nothing, and records nothing.
      if (rowCount) await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_RELEASED, target: `worker:${req.workerId}`, userId: req.workerId });
    });
    return {};
  };
}

function blockPhoneNumberHandler(h: PaymentHandlerContext): Impl["blockPhoneNumber"] {
  return async (req, ctx) => {
    const { pool } = h;
    const admin = requireCaller(ctx);
    const phone = requireKenyanMobile(req.phone, "phone");
    await withTransaction(pool, async (tx) => {
      await tx.query(
        `INSERT INTO payment.blocked_phones (phone, reason, blocked_by) VALUES ($1, $2, $3)
         ON CONFLICT (phone) DO UPDATE SET reason = $2, blocked_by = $3`,
        [phone, req.reason, admin.subject],
      );
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYER_BLOCKED, target: `phone:${maskPhone(phone)}`, detail: req.reason });
    });
    return {};
  };
}

function unblockPhoneNumberHandler(h: PaymentHandlerContext): Impl["unblockPhoneNumber"] {
  return async (req, ctx) => {
    const { pool } = h;
    const phone = requireKenyanMobile(req.phone, "phone");
    await withTransaction(pool, async (tx) => {
      const { rowCount } = await tx.query("DELETE FROM payment.blocked_phones WHERE phone = $1", [phone]);
      if (rowCount) await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYER_UNBLOCKED, target: `phone:${maskPhone(phone)}` });
    });
    return {};
  };
}
