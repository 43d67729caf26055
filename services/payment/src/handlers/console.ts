// The admin console's view of payments: tips and payouts across all workers
// (filters and keyset paging), one payment's full story (raw callbacks,
// alerts, ledger entry), and a re-query of a stuck attempt.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, decodeTimeIdToken, fieldError, InvalidStateError, keysetPage, NotFoundError, pageSize, type Queryable, withTransaction } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { PaymentMethodKind } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { PaymentHandlerContext } from "./context.js";
import { FRAUD_ACTION, FRAUD_REASON, fraudAlertMessage, PAYOUT_STATUS_CODE, TIP_STATUS_CODE, payoutMessage, toCallback } from "../convert.js";
import { requeryPayout } from "../payouts.js";
import { rulesInForce } from "../fraud.js";
import { requeryTip } from "../tips.js";
import { callbacksOfPayout, callbacksOfTip } from "../stores/callbacks.js";
import { alertsOf } from "../stores/fraud-alerts.js";
import { loadPayout, makePayoutDue, searchPayouts } from "../stores/payouts.js";
import type { CommonSearch } from "../stores/search.js";
import { makeTipDue, searchTips, tipById } from "../stores/tips.js";
import { checkMpesaBalance, getMpesaBalance } from "../mpesa-balance.js";
import { kes } from "../money.js";

const METHOD_CODE: Partial<Record<PaymentMethodKind, string>> = { [PaymentMethodKind.MPESA]: "mpesa", [PaymentMethodKind.CARD]: "card" };

interface CommonFilters {
  from?: Timestamp;
  to?: Timestamp;
  minAmountMinor: bigint;
  maxAmountMinor: bigint;
  resultCode: string;
  workerId: string;
  currency: string;
}

/** The filters both searches share, checked; the status code is the caller's (undefined for any). */
function commonSearch(req: CommonFilters, status: string | null | undefined): CommonSearch {
  if (req.from && req.to && timestampDate(req.to) <= timestampDate(req.from)) throw fieldError("to", "must be after from");
  if (req.maxAmountMinor && req.maxAmountMinor < req.minAmountMinor) throw fieldError("max_amount_minor", "must not be below min_amount_minor");
  // 500 is five shillings or five dollars: a bound means nothing without its currency.
  if ((req.minAmountMinor || req.maxAmountMinor) && !req.currency) throw fieldError("currency", "required with min_amount_minor or max_amount_minor: the currency the bounds are in");
  return {
    from: req.from && timestampDate(req.from),
    to: req.to && timestampDate(req.to),
    minAmountMinor: req.minAmountMinor,
    maxAmountMinor: req.maxAmountMinor,
    resultCode: req.resultCode,
    workerId: req.workerId,
    currency: req.currency,
    status,
  };
}

async function alertsFor(db: Queryable, column: "tip_id" | "payout_id", id: string) {
  return (await alertsOf(db, column, id)).map(fraudAlertMessage);
}

type Impl = ServiceImpl<typeof PaymentAdminService>;

/** The console's reads and searches: fraud rules, tips, payouts, one payment's detail, the M-Pesa balance. */
export function consoleHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    getFraudRules: getFraudRulesHandler(h),
    searchTips: searchTipsHandler(h),
    searchPayouts: searchPayoutsHandler(h),
    getPaymentDetail: getPaymentDetailHandler(h),
    checkMpesaBalance: checkMpesaBalanceHandler(h),
    getMpesaBalance: getMpesaBalanceHandler(h),
    requeryPayment: requeryPaymentHandler(h),
  };
}

function getFraudRulesHandler(h: PaymentHandlerContext): Impl["getFraudRules"] {
  return async () => {
    const { deps } = h;
    const cards = deps.cards ? deps.config().cards?.rules : undefined;
    return {
      rules: rulesInForce(deps.config().fraud, cards).map((r) => ({
        reason: FRAUD_REASON[r.reason],
        action: FRAUD_ACTION[r.action],
        description: r.description,
        limit: r.limit ?? 0,
        windowSeconds: BigInt(r.windowSeconds ?? 0),
        amount: r.amountMinor === undefined ? undefined : kes(r.amountMinor),
        enabled: r.enabled,
        setting: r.setting ?? "",
      })),
    };
  };
}

function searchTipsHandler(h: PaymentHandlerContext): Impl["searchTips"] {
  return async (req) => {
    const { pool, tipOut } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    // An unknown status or method (null) matches nothing, as it always did.
    const search = {
      ...commonSearch(req, req.status ? (TIP_STATUS_CODE[req.status] ?? null) : undefined),
      method: req.method ? (METHOD_CODE[req.method] ?? null) : undefined,
    };
    const rows = await searchTips(pool, search, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.pageAt, r.tipId]);
    return {
      tips: items.map((t) => tipOut(t)),
      page: { nextPageToken },
    };
  };
}

function searchPayoutsHandler(h: PaymentHandlerContext): Impl["searchPayouts"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const search = commonSearch(req, req.status ? (PAYOUT_STATUS_CODE[req.status] ?? null) : undefined);
    const rows = await searchPayouts(pool, search, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.pageAt, r.payoutId]);
    return {
      payouts: items.map(payoutMessage),
      page: { nextPageToken },
    };
  };
}

function getPaymentDetailHandler(h: PaymentHandlerContext): Impl["getPaymentDetail"] {
  return async (req) => {
    const { pool, tipOut } = h;
    if (req.subject.case === "tipId") {
      const tip = await tipById(pool, req.subject.value);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      const callbacks = await callbacksOfTip(pool, tip.tipId, tip.checkoutRequestId, tip.mpesaReceipt);
      return {
        tip: tipOut(tip),
        callbacks: callbacks.map(toCallback),
        alerts: await alertsFor(pool, "tip_id", tip.tipId),
        ledgerEntryId: tip.creditEntryId ?? "",
        ledgerCreditKind: tip.creditKind ?? "",
      };
    }
    const payout = await loadPayout(pool, req.subject.value!);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    const callbacks = await callbacksOfPayout(pool, payout.payoutId);
    return {
      payout: payoutMessage(payout),
      callbacks: callbacks.map(toCallback),
      alerts: await alertsFor(pool, "payout_id", payout.payoutId),
      holdId: payout.holdId ?? "",
      holdState: payout.holdState,
      statusQueries: payout.statusQueries,
    };
  };
}

function checkMpesaBalanceHandler(h: PaymentHandlerContext): Impl["checkMpesaBalance"] {
  return async (_req, ctx) => {
    const { deps } = h;
    return { checkId: await checkMpesaBalance(deps, ctx) };
  };
}

function getMpesaBalanceHandler(h: PaymentHandlerContext): Impl["getMpesaBalance"] {
  return async (req, ctx) => {
    const { deps } = h;
    return getMpesaBalance(deps, ctx, req.checkId);
  };
}

function requeryPaymentHandler(h: PaymentHandlerContext): Impl["requeryPayment"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    if (req.subject.case === "tipId") {
      const tipId = req.subject.value;
      const tip = await tipById(pool, tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      if (tip.status !== "pending") throw new InvalidStateError(`tip_id: the tip is ${tip.status.replace(/_/g, " ")}: nothing to re-query`);
      if (tip.method !== "mpesa") throw new InvalidStateError("tip_id: only M-Pesa tips are re-queried here (card tips follow their provider's webhooks)");
      // Due now; the reconciler leases it (never two queries at once) and settles it exactly as a late callback would.
      await withTransaction(pool, async (tx) => {
        await makeTipDue(tx, tipId);
        await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYMENT_REQUERIED, target: `tip:${tipId}`, userId: tip.workerId ?? undefined });
      });
      await requeryTip(deps, tipId);
      return { tip: tipOut((await tipById(pool, tipId))!) };
    }
    const payoutId = req.subject.value!;
    const payout = await loadPayout(pool, payoutId);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    if (payout.status !== "pending" && payout.status !== "resolving") {
      throw new InvalidStateError(`payout_id: the payout is ${payout.status.replace(/_/g, " ")}: nothing to re-query`);
    }
    // A status query, or the first send of one never sent, under the reconciler's lease: never sent twice.
    await withTransaction(pool, async (tx) => {
      await makePayoutDue(tx, payoutId);
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYMENT_REQUERIED, target: `payout:${payoutId}`, userId: payout.workerId });
    });
    await requeryPayout(deps, payoutId);
    return { payout: payoutMessage((await loadPayout(pool, payoutId))!) };
  };
}
