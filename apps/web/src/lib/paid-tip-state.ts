// A paid tip's life after its payment, when it changes what the worker got: the tip's status stays
// "succeeded" through a card refund, a chargeback or an M-Pesa reversal, which take the worker's share back
// out of the balance.
import { CardTipState, MpesaReversalState, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";

/** The catalogue keys of these words, the same in both worker apps; "{amount}" is the amount refunded. */
export type PaidTipStateKey = "cs_refunded" | "cs_partlyRefunded" | "cs_disputed" | "cs_reversed" | "cs_reversalPending";

/** What to say instead of "received", or undefined when that still holds (no refund, a dispute won, a reversal M-Pesa refused). */
export function paidTipStateKey(tip: Pick<Tip, "cardState" | "mpesaReversal" | "refunded" | "amount">): PaidTipStateKey | undefined {
  if (tip.mpesaReversal === MpesaReversalState.PENDING) return "cs_reversalPending";
  if (tip.mpesaReversal === MpesaReversalState.REVERSED) return "cs_refunded";
  switch (tip.cardState) {
    case CardTipState.REFUNDED:
      return (tip.refunded?.amountMinor ?? 0n) < (tip.amount?.amountMinor ?? 0n) ? "cs_partlyRefunded" : "cs_refunded";
    case CardTipState.DISPUTED:
      return "cs_disputed";
    case CardTipState.DISPUTE_LOST:
      return "cs_reversed";
    default:
      return undefined;
  }
}
