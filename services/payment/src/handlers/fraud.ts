import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, decodeTimeIdToken, emitEvent, InvalidStateError, keysetPage, NotFoundError, maskPhone, pageSize, type Queryable, requireCaller, requireKenyanMobile, withTransaction } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentMethod } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { ALERT_STATUS, FRAUD_REASON, fraudAlertMessage, tipMessage } from "../convert.js";
import { resultMessage } from "../messages.js";
import type { CardTipRow } from "../cards/convert.js";
import { reviewCardTip } from "../cards/review.js";
import { approvalKey, claimApproval, payApproval } from "../approvals.js";
import { closeMatchBeforeReopen, lockFundingReceipt, rejectedAsSpent, reopenFundingPayment, reverseSpentHold, spentReceiptOf } from "../c2b.js";
import { kes } from "../money.js";
import { blockPhone, unblockPhone } from "../stores/blocked-phones.js";
import { closeTipAlerts, fraudAlerts } from "../stores/fraud-alerts.js";
import { holdPayouts, releasePayouts } from "../stores/payout-settings.js";
import { endHeldTip, tipOf } from "../stores/tips.js";
import type { TipRow } from "../tips.js";
import { approvedSplit, emitTipSucceeded, loadTip, runAfterCredit } from "../tips.js";
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
    const rows = await fraudAlerts(pool, status ?? null, reason ?? null, cursor, size + 1);
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
    if (tip.method === "card") return { tip: tipMessage(tipOf(await reviewCardTip(deps, tip as CardTipRow, req.approve, admin.subject, req.note, record)), locale(ctx)) };
    const ended = req.approve ? await approveHeldTip(h, tip.tip_id, admin.subject, req.note, record) : await rejectHeldTip(h, tip, admin.subject, req.note, record);
    if (!ended) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
    deps.changes.announce(tip.tip_id);
    if (req.approve) runAfterCredit(deps, ended);
    return { tip: tipOut(tipOf(ended), locale(ctx)) };
  };
}

type AuditRecord = (tx: Queryable) => Promise<unknown>;

/**
 * A held M-Pesa tip's approval (approvals.ts): claimed, paid by the wallet outside any transaction, then
 * recorded. Undefined when the tip is no longer held, or another approval recorded it first.
 */
async function approveHeldTip(h: PaymentHandlerContext, tipId: string, admin: string, note: string, record: AuditRecord): Promise<TipRow | undefined> {
  const { deps, pool } = h;
  const claimed = await claimApproval(pool, tipId);
  if (!claimed) return undefined;
  await payApproval(deps, claimed);
  return withTransaction(pool, async (tx) => {
    const t = await endHeldTip(tx, tipId, { approve: true, resultMessage: resultMessage("0"), workerMinor: approvedSplit(claimed.tip).workerMinor });
    if (!t) return undefined;
    await closeTipAlerts(tx, tipId, "approved", admin, note);
    await record(tx);
    await emitTipSucceeded(tx, t);
    return t;
  });
}

/** A held M-Pesa tip's rejection: its approval's key closed first, so that an approval on its way cannot pay. */
async function rejectHeldTip(h: PaymentHandlerContext, tip: TipRow, admin: string, note: string, record: AuditRecord): Promise<TipRow | undefined> {
  const { deps, pool } = h;
  await deps.ledger.closeApproval(approvalKey(tip), { cause: { case: "mpesaReceipt", value: tip.mpesa_receipt ?? tip.credit_key! } });
  // A paybill payment parked in suspense funding it: its match key closed too (an approval that failed part way
  // may have closed it), so that the payment reopened below is matched under a key nothing holds.
  const closedRound = await closeMatchBeforeReopen(deps, tip);
  return withTransaction(pool, async (tx) => {
    await lockFundingReceipt(tx, tip);
    const t = await endHeldTip(tx, tip.tip_id, { approve: false, resultMessage: resultMessage("review_rejected"), workerMinor: approvedSplit(tip).workerMinor });
    if (!t) return undefined;
    await closeTipAlerts(tx, tip.tip_id, "rejected", admin, note);
    await record(tx);
    // A paybill payment parked in suspense funded it: back to support's open list (c2b.ts says why not refunded here).
    // Else its receipt's money spent, read from the row as ended (under its lock): a late callback's receipt counts.
    const spent = await spentReceiptOf(tx, t);
    const reopened = await reopenFundingPayment(tx, t, closedRound);
    // Spent: the hold's suspense money, taken from clearing for a second payment that never came, goes back (c2b.ts).
    if (!reopened && spent) await reverseSpentHold(deps, t);
    const ended = reopened ?? (spent ? await rejectedAsSpent(tx, t, spent) : t);
    await emitEvent(tx, "payment", TipFailedSchema, {
      tipId: ended.tip_id, workerId: ended.worker_id ?? "", qrCodeId: ended.qr_code_id, amount: kes(ended.amount_minor), method: PaymentMethod.MPESA,
      resultCode: ended.result_code, reason: ended.result_message, venueId: ended.venue_id, createdBy: ended.customer_subject,
    }, ended.tip_id);
    return ended;
  });
}

function holdPayoutsHandler(h: PaymentHandlerContext): Impl["holdPayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    await withTransaction(pool, async (tx) => {
      await holdPayouts(tx, req.workerId, req.reason);
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_HELD, target: `worker:${req.workerId}`, userId: req.workerId, detail: req.reason });
    });
    return {};
  };
}

function releasePayoutsHandler(h: PaymentHandlerContext): Impl["releasePayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    await withTransaction(pool, async (tx) => {
      // Releasing what was not held changes nothing, and records nothing.
      if (await releasePayouts(tx, req.workerId)) await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_RELEASED, target: `worker:${req.workerId}`, userId: req.workerId });
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
      await blockPhone(tx, phone, req.reason, admin.subject);
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
      if (await unblockPhone(tx, phone)) await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYER_UNBLOCKED, target: `phone:${maskPhone(phone)}` });
    });
    return {};
  };
}
