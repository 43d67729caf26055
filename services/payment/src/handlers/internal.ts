import { type ServiceImpl } from "@connectrpc/connect";
import { NotFoundError } from "@ttip/runtime";
import type { PaymentInternalService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { reconcileCardBalance } from "../cards/reconcile.js";
import { reconcileCardTips } from "../cards/tips.js";
import { reconcilePayouts } from "../payouts.js";
import { tipById } from "../stores/tips.js";
import { resumeReviewClaims } from "../review-resumer.js";
import { reconcileTips } from "../tips.js";
import { type PaymentHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof PaymentInternalService>;

/** The platform's own calls: reconciliation and receipts. */
export function internalHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    reconcilePending: reconcilePendingHandler(h),
    reconcileCardBalance: reconcileCardBalanceHandler(h),
    getTipForReceipt: getTipForReceiptHandler(h),
  };
}

function reconcilePendingHandler(h: PaymentHandlerContext): Impl["reconcilePending"] {
  return async (req) => {
    const { deps } = h;
    // Each step runs whatever another failed on (a tip whose recording PostgreSQL refuses on every try would
    // otherwise stop every pass before payouts, card tips and reviews); the pass fails after, with the first error.
    const failures: unknown[] = [];
    const step = <T>(run: () => Promise<T>) => run().catch((err: unknown) => void failures.push(err));
    const counts = await step(() => reconcileTips(deps, req.limit));
    await step(() => reconcilePayouts(deps, req.limit));
    const cards = await step(() => reconcileCardTips(deps, req.limit));
    await step(() => resumeReviewClaims(deps, req.limit));
    if (failures.length) throw failures[0];
    return { queried: counts!.queried + cards!.checked, settled: counts!.settled + cards!.settled, stillPending: counts!.stillPending };
  };
}

function reconcileCardBalanceHandler(h: PaymentHandlerContext): Impl["reconcileCardBalance"] {
  return async (req) => {
    const { deps } = h;
    const c = await reconcileCardBalance(deps, "stripe", req.limit);
    return { matched: c.matched, feesRecorded: c.feesRecorded, unmatched: c.unmatched, payouts: c.payouts };
  };
}

function getTipForReceiptHandler(h: PaymentHandlerContext): Impl["getTipForReceipt"] {
  return async (req) => {
    const { pool, tipOut } = h;
    const tip = await tipById(pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    // Names belong to the auth and qr services; the receipt's sender looks them up.
    return { tip: tipOut(tip), workerDisplayName: "", venueName: "", workerReceived: tip.workerReceives };
  };
}
