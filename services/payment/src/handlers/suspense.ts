import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, claimIdempotencyKey, decodeTimeIdToken, fieldError, formatMoney, idempotentRequest, keysetPage, mpesaAmount, NotFoundError, optionalTimestamp, pageSize, requireCaller, type Queryable } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { MpesaReversalState } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { payoutMessage, tipMessage, toCallback } from "../convert.js";
import { resolveSuspense, type C2bRow } from "../c2b.js";
import { refundCardTip } from "../cards/aftercare.js";
import { resolveHeldPayout, type StatementOutcome } from "../held-payouts.js";
import { resolveReversalInDoubt, reverseMpesaTip, type ReversalRow } from "../mpesa-reversals.js";
import { kes } from "../money.js";
import { unmatchedCallbacks } from "../stores/callbacks.js";
import { closeSuspenseAlerts } from "../stores/fraud-alerts.js";
import { latestSuspenseReversals, suspensePayments, suspenseRows } from "../stores/suspense.js";
import { tipOf } from "../stores/tips.js";
import { loadTip } from "../tips.js";
import { locale, type PaymentHandlerContext } from "./context.js";
import { refuseOwnAccount } from "../own-account.js";

/** A payment's refund reversal as the contract states it; NONE without one (not refunded, or refunded by hand). */
function reversalState(r: Pick<ReversalRow, "status"> | undefined): MpesaReversalState {
  if (!r) return MpesaReversalState.NONE;
  if (r.status === "reversed") return MpesaReversalState.REVERSED;
  return r.status === "failed" ? MpesaReversalState.FAILED : MpesaReversalState.PENDING;
}

function suspenseMessage(r: C2bRow, reversal: ReversalRow | undefined) {
  return {
    receipt: r.trans_id,
    amount: kes(r.amount_minor),
    accountReference: r.bill_ref_number,
    businessShortCode: r.business_short_code,
    reason: r.reason,
    suggestions: r.suggestions,
    resolution: r.resolution,
    tipId: r.tip_id ?? "",
    receivedAt: timestampFromDate(r.received_at),
    resolvedBy: r.resolved_by,
    resolvedAt: optionalTimestamp(r.resolved_at),
    mpesaReversal: reversalState(reversal),
    mpesaReversalResult: reversal?.result_desc ?? "",
  };
}

/** The messages of these payments, each with its latest refund reversal. */
async function suspenseMessages(db: Queryable, rows: C2bRow[]) {
  const reversals = await latestSuspenseReversals(db, rows.map((r) => r.trans_id));
  return rows.map((r) => suspenseMessage(r, reversals.get(r.trans_id)));
}

type Impl = ServiceImpl<typeof PaymentAdminService>;

/** Money an admin must place: C2B payments in suspense, callbacks that matched nothing, refunds and reversals, payouts held for their amount. */
export function suspenseHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    listSuspensePayments: listSuspensePaymentsHandler(h),
    resolveSuspensePayment: resolveSuspensePaymentHandler(h),
    refundTip: refundTipHandler(h),
    resolveHeldPayout: resolveHeldPayoutHandler(h),
    resolveMpesaReversal: resolveMpesaReversalHandler(h),
    listUnmatchedCallbacks: listUnmatchedCallbacksHandler(h),
  };
}

function listSuspensePaymentsHandler(h: PaymentHandlerContext): Impl["listSuspensePayments"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const rows = await suspensePayments(pool, req.includeResolved, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.callback_id]);
    return {
      payments: await suspenseMessages(pool, items),
      page: { nextPageToken },
    };
  };
}

function resolveSuspensePaymentHandler(h: PaymentHandlerContext): Impl["resolveSuspensePayment"] {
  return async (req, ctx) => {
    const { deps, tipOut } = h;
    const admin = requireCaller(ctx);
    const { row, tip } = await resolveSuspense(deps, {
      receipt: req.receipt,
      matchAccountReference: req.action.case === "matchAccountReference" ? req.action.value : undefined,
      refund: req.action.case === "refund",
      note: req.note,
      admin: admin.subject,
      record: async (tx, refunded) => {
        await auditAdminAction(tx, "payment", ctx, {
          action: refunded ? AuditAction.SUSPENSE_REFUNDED : AuditAction.SUSPENSE_MATCHED,
          target: `receipt:${req.receipt}`,
          detail: refunded ? req.note : `to ${req.action.value}: ${req.note}`,
        });
        await closeSuspenseAlerts(tx, req.receipt, refunded ? "rejected" : "approved", admin.subject, req.note);
      },
    });
    const [payment] = await suspenseMessages(h.pool, [row]);
    return { payment, tip: tip ? tipOut(tipOf(tip), locale(ctx)) : undefined };
  };
}

function refundTipHandler(h: PaymentHandlerContext): Impl["refundTip"] {
  return async (req, ctx) => {
    const { deps } = h;
    const admin = requireCaller(ctx);
    const input = {
      tipId: req.tipId, idempotencyKey: req.idempotencyKey, amount: req.amount, reason: req.reason, requestedBy: admin.subject,
      record: (tx: Queryable, amount: string) => auditAdminAction(tx, "payment", ctx, { action: AuditAction.TIP_REFUNDED, target: `tip:${req.tipId}`, detail: `${amount}: ${req.reason}` }),
    };
    const tip = await loadTip(deps.ctx.pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    if (tip.method === "mpesa") {
      const r = await reverseMpesaTip(deps, tip as Parameters<typeof reverseMpesaTip>[1], input);
      return { tip: tipMessage(tipOf(r.tip), locale(ctx)), refundId: r.reversalId };
    }
    const r = await refundCardTip(deps, input);
    return { tip: tipMessage(tipOf(r.tip), locale(ctx)), refundId: r.refundId };
  };
}

/**
 * What the request says M-Pesa's statement shows; INVALID_ARGUMENT naming the field for an amount M-Pesa cannot
 * have paid or a confirmed difference not in KES. Whether the difference needed confirming is known with the payout.
 */
function statementOutcome(req: Parameters<Impl["resolveHeldPayout"]>[0]): StatementOutcome {
  if (req.outcome.case !== "paid") return { paid: false };
  const { paidAmount, mpesaReceipt, confirmedDifference } = req.outcome.value;
  if (confirmedDifference && confirmedDifference.currency !== "KES") throw fieldError("paid.confirmed_difference", "a difference in KES, the payout's currency");
  return { paid: true, paidMinor: mpesaAmount(paidAmount, "paid.paid_amount"), receipt: mpesaReceipt, confirmedDifferenceMinor: confirmedDifference?.amountMinor };
}

function resolveHeldPayoutHandler(h: PaymentHandlerContext): Impl["resolveHeldPayout"] {
  return async (req, ctx) => {
    const admin = requireCaller(ctx);
    const outcome = statementOutcome(req);
    const said = outcome.paid ? `paid ${formatMoney(outcome.paidMinor, "KES")} (${outcome.receipt})` : "not paid";
    const payout = await resolveHeldPayout(h.deps, {
      payoutId: req.payoutId, outcome, note: req.note, admin: admin.subject,
      claim: async (tx) => (await claimIdempotencyKey(tx, idempotentRequest("payment", ctx, req, admin.subject), req.payoutId)) !== undefined,
      record: (tx, workerId) =>
        auditAdminAction(tx, "payment", ctx, { action: AuditAction.HELD_PAYOUT_RESOLVED, target: `payout:${req.payoutId}`, userId: workerId, detail: `${said}: ${req.note}` }),
    });
    return { payout: payoutMessage(payout) };
  };
}

function resolveMpesaReversalHandler(h: PaymentHandlerContext): Impl["resolveMpesaReversal"] {
  return async (req, ctx) => {
    const admin = requireCaller(ctx);
    if (req.tipId && req.suspenseReceipt) throw fieldError("tip_id", "name the tip or the suspense payment (suspense_receipt), not both");
    if (!req.tipId && !req.suspenseReceipt) throw fieldError("tip_id", "name the tip whose reversal is in doubt (or set suspense_receipt)");
    const outcome = req.outcome.case === "reversalReceipt" ? { reversed: true as const, receipt: req.outcome.value } : { reversed: false as const };
    const said = outcome.reversed ? `reversed (${outcome.receipt})` : "not reversed";
    const [of, target] = req.tipId ? [{ tipId: req.tipId }, `tip:${req.tipId}`] : [{ suspenseReceipt: req.suspenseReceipt }, `receipt:${req.suspenseReceipt}`];
    // "Not reversed" gives the worker's share back to their wallet: not the staff member's own tip to decide.
    if (req.tipId) refuseOwnAccount(admin.subject, (await loadTip(h.pool, req.tipId))?.worker_id, "tip_id");
    await resolveReversalInDoubt(h.deps, {
      of, outcome, note: req.note, admin: admin.subject,
      record: (tx) => auditAdminAction(tx, "payment", ctx, { action: AuditAction.MPESA_REVERSAL_RESOLVED, target, detail: `${said}: ${req.note}` }),
    });
    if (req.tipId) return { tip: tipMessage(tipOf((await loadTip(h.pool, req.tipId))!), locale(ctx)) };
    const [row] = await suspenseRows(h.pool, [req.suspenseReceipt]);
    return { payment: (await suspenseMessages(h.pool, [row]))[0] };
  };
}

function listUnmatchedCallbacksHandler(h: PaymentHandlerContext): Impl["listUnmatchedCallbacks"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const rows = await unmatchedCallbacks(pool, req.includeResolved, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.callback_id]);
    return {
      callbacks: items.map(toCallback),
      page: { nextPageToken },
    };
  };
}
