// The admin console's view of payments: tips and payouts across all workers
// (filters and keyset paging), one payment's full story (raw callbacks,
// alerts, ledger entry), and a re-query of a stuck attempt.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, clockOf, decodeTimeIdToken, fieldError, InvalidStateError, keysetPage, NotFoundError, pageSize, type Pool, type Queryable, withTransaction } from "@ttip/runtime";
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
import { loadPayout, makePayoutDue, openPayoutLeasedUntil, searchPayouts } from "../stores/payouts.js";
import type { CommonSearch } from "../stores/search.js";
import { makeTipDue, pendingTipLeasedUntil, reversalEntryKeys, searchTips, tipById } from "../stores/tips.js";
import { checkMpesaBalance, getMpesaBalance } from "../mpesa-balance.js";
import { paidDifferenceKey } from "../ledger.js";
import { kes } from "../money.js";
import { busyWhenHeld, waitBrieflyForLocks } from "../requery-lock.js";

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
        reversalEntryKeys: await reversalEntryKeys(pool, tip.tipId),
      };
    }
    const payout = await loadPayout(pool, req.subject.value!);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    const callbacks = await callbacksOfPayout(pool, payout.payoutId);
    return {
      payout: payoutMessage(payout),
      callbacks: callbacks.map(toCallback),
      alerts: await alertsFor(pool, "payout_id", payout.payoutId),
      ledgerEntryId: payout.settleEntryId ?? "",
      reversalEntryKeys: payout.paidMinor !== null && payout.paidMinor !== payout.amount.amountMinor ? [paidDifferenceKey(payout.payoutId)] : [],
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
      await requeryOpen(pool, ctx, {
        field: "tip_id", target: `tip:${tipId}`, userId: tip.workerId ?? undefined,
        makeDue: (tx) => makeTipDue(tx, tipId, new Date(clockOf(deps.ctx).now())), ask: () => requeryTip(deps, tipId), leasedUntil: () => pendingTipLeasedUntil(pool, tipId),
      });
      return { tip: tipOut((await tipById(pool, tipId))!) };
    }
    const payoutId = req.subject.value!;
    const payout = await loadPayout(pool, payoutId);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    if (payout.status !== "pending" && payout.status !== "resolving") {
      throw new InvalidStateError(`payout_id: the payout is ${payout.status.replace(/_/g, " ")}: nothing to re-query`);
    }
    // A status query, or the first send of one never sent, under the reconciler's lease: never sent twice.
    await requeryOpen(pool, ctx, {
      field: "payout_id", target: `payout:${payoutId}`, userId: payout.workerId,
      makeDue: (tx) => makePayoutDue(tx, payoutId, new Date(clockOf(deps.ctx).now())), ask: () => requeryPayout(deps, payoutId), leasedUntil: () => openPayoutLeasedUntil(pool, payoutId),
    });
    return { payout: payoutMessage((await loadPayout(pool, payoutId))!) };
  };
}

/** One open tip or payout an admin re-queries: how to make it due, ask about it, and read a pass's lease on it. */
interface OpenPayment {
  field: "tip_id" | "payout_id";
  target: string;
  userId?: string;
  makeDue(tx: Queryable): Promise<void>;
  /** False when nothing was asked: it was not due, or another pass holds it. */
  ask(): Promise<boolean>;
  leasedUntil(): Promise<Date | undefined>;
}

/**
 * Made due and the re-query audited in one transaction, then asked about under a pass's lease. Another pass holding
 * it (asking the provider now) is refused saying until when, rather than answered with the row as if it was asked;
 * a row another transaction holds past a short wait (requery-lock.ts) is refused as busy.
 */
async function requeryOpen(pool: Pool, ctx: Pick<HandlerContext, "requestHeader">, p: OpenPayment): Promise<void> {
  const asked = await busyWhenHeld(p.field, async () => {
    await withTransaction(pool, async (tx) => {
      await waitBrieflyForLocks(tx);
      await p.makeDue(tx);
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYMENT_REQUERIED, target: p.target, userId: p.userId });
    });
    return p.ask();
  });
  if (asked) return;
  const until = await p.leasedUntil();
  if (!until) return;
  const ends = until.toISOString();
  throw new InvalidStateError(`${p.field}: another reconciliation pass is asking about it now (its lease ends at ${ends}); its answer settles it: ask again after then if it is still open`, { lease_until: ends });
}
