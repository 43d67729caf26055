// A paid card tip's life after its payment, when it changes what the worker got: the tip's status stays
// "succeeded" through a refund or a chargeback, which take the worker's share back out of the balance.
import { CardTipState, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";

/** The catalogue keys of these words, the same in both worker apps; "{amount}" is the amount refunded. */
export type CardStateKey = "cs_refunded" | "cs_partlyRefunded" | "cs_disputed" | "cs_reversed";

/** What to say instead of "received", or undefined when that still holds (no refund, a dispute won). */
export function cardStateKey(tip: Pick<Tip, "cardState" | "refunded" | "amount">): CardStateKey | undefined {
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
