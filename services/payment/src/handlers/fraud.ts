import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, claimIdempotencyKey, clockOf, decodeTimeIdToken, idempotentRequest, InvalidStateError, keysetPage, NotFoundError, maskPhone, pageSize, type Queryable, requireCaller, requireKenyanMobile, withTransaction } from "@ttip/runtime";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { ALERT_STATUS, FRAUD_ACTION, FRAUD_REASON, fraudAlertMessage, tipMessage } from "../convert.js";
import type { CardTipRow } from "../cards/convert.js";
import { reviewCardTip } from "../cards/review.js";
import { claimApproval, finishApproval, settleOlderApproval } from "../approvals.js";
import { postFundingSuspense } from "../c2b.js";
import { claimRejection, finishRejection } from "../rejections.js";
import { blockPhone, unblockPhone } from "../stores/blocked-phones.js";
import { closeAlert, closedByReviewer, fraudAlerts } from "../stores/fraud-alerts.js";
import { holdPayouts, payoutHoldOf, releasePayouts } from "../stores/payout-settings.js";
import type { Reviewer } from "../stores/review-claims.js";
import { tipOf } from "../stores/tips.js";
import type { TipRow } from "../tips.js";
import { loadTip, runAfterCredit } from "../tips.js";
import { locale, type PaymentHandlerContext } from "./context.js";
import { refuseOwnAccount } from "../own-account.js";

type Impl = ServiceImpl<typeof PaymentAdminService>;

/** Fraud: alerts and the review of held tips, payout holds, blocked numbers. */
export function fraudHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    listFraudAlerts: listFraudAlertsHandler(h),
    closeFraudAlert: closeFraudAlertHandler(h),
    reviewTip: reviewTipHandler(h),
    holdPayouts: holdPayoutsHandler(h),
    releasePayouts: releasePayoutsHandler(h),
    getPayoutHold: getPayoutHoldHandler(h),
    blockPhoneNumber: blockPhoneNumberHandler(h),
    unblockPhoneNumber: unblockPhoneNumberHandler(h),
  };
}

function listFraudAlertsHandler(h: PaymentHandlerContext): Impl["listFraudAlerts"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const named = <T>(names: Record<string, T>, value: T) => (value ? Object.entries(names).find(([, v]) => v === value)?.[0] ?? null : null);
    const filter = { status: named(ALERT_STATUS, req.status), reason: named(FRAUD_REASON, req.reason), action: named(FRAUD_ACTION, req.action) };
    const rows = await fraudAlerts(pool, filter, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.alert_id]);
    return {
      alerts: items.map(fraudAlertMessage),
      page: { nextPageToken },
    };
  };
}

function closeFraudAlertHandler(h: PaymentHandlerContext): Impl["closeFraudAlert"] {
  return async (req, ctx) => {
    const reviewer = requireCaller(ctx);
    const alert = await withTransaction(h.pool, (tx) => closeAlert(tx, req.alertId, reviewer.subject, req.note, () =>
      auditAdminAction(tx, "payment", ctx, { action: AuditAction.FRAUD_ALERT_CLOSED, target: `alert:${req.alertId}`, detail: req.note })));
    return { alert: fraudAlertMessage(alert) };
  };
}

function reviewTipHandler(h: PaymentHandlerContext): Impl["reviewTip"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    const admin = requireCaller(ctx);
    const tip = await loadTip(pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    if (tip.status !== "held_for_review") {
      // The same admin's same decision, asked again after its answer was lost, answers the tip as that review left it.
      if (await closedByReviewer(pool, tip.tip_id, req.approve ? "approved" : "rejected", admin.subject)) return { tip: tipOut(tipOf(tip), locale(ctx)) };
      throw new InvalidStateError("tip_id: the tip is not held for review");
    }
    if (!tip.credit_entry_id) throw new InvalidStateError("tip_id: the payment is still being recorded; try again shortly");
    if (req.approve) refuseOwnAccount(admin.subject, tip.worker_id, "tip_id");
    const record = (tx: Queryable) =>
      auditAdminAction(tx, "payment", ctx, {
        action: req.approve ? AuditAction.HELD_TIP_APPROVED : AuditAction.HELD_TIP_REFUSED,
        target: `tip:${tip.tip_id}`, userId: tip.worker_id ?? undefined, detail: req.note,
      });
    if (tip.method === "card") return { tip: tipMessage(tipOf(await reviewCardTip(deps, tip as CardTipRow, req.approve, admin.subject, req.note, record)), locale(ctx)) };
    const by = { admin: admin.subject, note: req.note, record };
    const ended = req.approve ? await approveHeldTip(h, tip, by) : await rejectHeldTip(h, tip, by);
    if (!ended) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
    deps.changes.announce(tip.tip_id);
    if (req.approve) runAfterCredit(deps, ended);
    return { tip: tipOut(tipOf(ended), locale(ctx)) };
  };
}

/**
 * A held M-Pesa tip's approval (approvals.ts): the parked payment funding it moved into suspense first if its
 * parking could not (postFundingSuspense), claimed, paid by the wallet outside any transaction, then recorded.
 * Undefined when the tip is no longer held, or another approval recorded it first.
 */
async function approveHeldTip(h: PaymentHandlerContext, tip: TipRow, by: Reviewer): Promise<TipRow | undefined> {
  await postFundingSuspense(h.deps, tip);
  const claimed = await claimApproval(h.deps, tip.tip_id, by).catch((refusal: unknown) => settleOlderApproval(h.deps, tip.tip_id, by, refusal));
  return claimed && finishApproval(h.deps, claimed);
}

/** A held M-Pesa tip's rejection (rejections.ts): claimed, its wallet calls outside any transaction, then recorded. */
async function rejectHeldTip(h: PaymentHandlerContext, tip: TipRow, by: Reviewer): Promise<TipRow | undefined> {
  const claimed = await claimRejection(h.deps, tip, by);
  return claimed && finishRejection(h.deps, claimed);
}

function holdPayoutsHandler(h: PaymentHandlerContext): Impl["holdPayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    const admin = requireCaller(ctx);
    await withTransaction(pool, async (tx) => {
      // A retry whose first answer was lost gets that answer, not the refusal below.
      if (await claimIdempotencyKey(tx, idempotentRequest("payment", ctx, req, admin.subject), req.workerId)) return;
      // A second hold would replace the first's reason and author unseen: refused, nothing recorded.
      if (!(await holdPayouts(tx, req.workerId, req.reason, admin.subject))) throw new InvalidStateError("worker_id: the worker's payouts are on hold already");
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_HELD, target: `worker:${req.workerId}`, userId: req.workerId, detail: req.reason });
    });
    return {};
  };
}

function releasePayoutsHandler(h: PaymentHandlerContext): Impl["releasePayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    const admin = requireCaller(ctx);
    await withTransaction(pool, async (tx) => {
      if (await claimIdempotencyKey(tx, idempotentRequest("payment", ctx, req, admin.subject), req.workerId)) return;
      refuseOwnAccount(admin.subject, req.workerId, "worker_id");
      const released = await releasePayouts(tx, req.workerId, new Date(clockOf(h.deps.ctx).now()));
      if (released === "not_held") throw new InvalidStateError("worker_id: the worker's payouts are not on hold");
      if (released === "blocked") throw new InvalidStateError("worker_id: the worker's account is blocked: unblock it first, then release its payouts");
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYOUTS_RELEASED, target: `worker:${req.workerId}`, userId: req.workerId, detail: req.note });
    });
    return {};
  };
}

function getPayoutHoldHandler(h: PaymentHandlerContext): Impl["getPayoutHold"] {
  return async (req) => {
    const hold = await payoutHoldOf(h.pool, req.workerId);
    if (!hold) return {};
    return { hold: { heldAt: hold.held_at ? timestampFromDate(hold.held_at) : undefined, heldByUserId: hold.held_by ?? "", reason: hold.hold_reason } };
  };
}

function blockPhoneNumberHandler(h: PaymentHandlerContext): Impl["blockPhoneNumber"] {
  return async (req, ctx) => {
    const { pool } = h;
    const admin = requireCaller(ctx);
    const phone = requireKenyanMobile(req.phone, "phone");
    await withTransaction(pool, async (tx) => {
      // A retry after a lost answer changes nothing, and is not audited again (as an unblock of no block is not).
      if (!(await blockPhone(tx, phone, req.reason, admin.subject))) return;
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
