import { type ServiceImpl } from "@connectrpc/connect";
import { NotFoundError } from "@ttip/runtime";
import type { PaymentInternalService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { reconcileCardBalance } from "../cards/reconcile.js";
import { tipById } from "../stores/tips.js";
import { reconcileAll } from "../reconciliation.js";
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
  return (req) => reconcileAll(h.deps, req.limit);
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
