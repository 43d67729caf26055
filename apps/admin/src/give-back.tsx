// A paid tip's money (or a declined M-Pesa tip's, waiting in suspense) given back to whoever paid it, after a
// device step-up: an M-Pesa tip is reversed whole by M-Pesa (its result comes later and shows on the tip), a card
// tip refunded of what is left of its charge. Either way the service takes the worker's share (a pool tip's, the
// pool's) back first and refuses when it is gone. A reversal whose result never came is ended by what M-Pesa's
// statement shows, never sent again.
import { useState } from "react";
import { CardTipState, MpesaReversalState, PaymentMethodKind, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { api, stepUp } from "./api";
import { Action, money } from "./ui";

/** Why the tip has no money to give back now, by what the service would refuse; undefined when it has. */
function nothingToGiveBack(tip: Tip): string | undefined {
  if (tip.method === PaymentMethodKind.MPESA) {
    if (tip.mpesaReversal === MpesaReversalState.PENDING) return "its reversal waits for M-Pesa's answer";
    if (tip.mpesaReversal === MpesaReversalState.REVERSED) return "M-Pesa reversed it already";
    return undefined;
  }
  if (tip.cardState === CardTipState.DISPUTED || tip.cardState === CardTipState.DISPUTE_LOST) return "a chargeback decides it";
  return (tip.refunded?.amountMinor ?? 0n) < (tip.charged?.amountMinor ?? 0n) ? undefined : "refunded in full already";
}

/** An M-Pesa tip declined after review: its money waits in suspense, its customer told it will be refunded. */
const declined = (tip: Tip) => tip.method === PaymentMethodKind.MPESA && tip.status === TipStatus.FAILED && tip.resultCode === "review_rejected";

/** Shown for a paid tip (or a declined one); disabled, saying why, once nothing is left to give back (its last outcome stays in view). */
export function GiveBack({ tip, disabledWhy, done }: { tip: Tip; disabledWhy?: string; done: () => void }) {
  if (tip.status !== TipStatus.SUCCEEDED && !declined(tip)) return null;
  const mpesa = tip.method === PaymentMethodKind.MPESA;
  const share = declined(tip) ? "it comes out of suspense, where it waits" : tip.shared ? "the venue pool's share leaves the balance first" : "the worker's share leaves the balance first";
  return (
    <Action
      label={mpesa ? "Reverse on M-Pesa" : "Refund to the card"}
      reason="Reason"
      keyIgnoresReason
      danger
      disabledWhy={disabledWhy ?? nothingToGiveBack(tip)}
      confirm={mpesa
        ? `M-Pesa gives all ${money(tip.received ?? tip.charged)} back to ${tip.customerPhoneMasked}; ${share}.`
        : `What is left of the ${money(tip.charged)} charge goes back to the card; ${share}.`}
      run={async (reason, send) => {
        const proof = await stepUp();
        const r = await send((key) => api(PaymentAdminService).refundTip({ tipId: tip.tipId, idempotencyKey: `give-back-${key}`, reason }, proof));
        return mpesa ? "Sent to M-Pesa; its answer shows here as the reversal's state." : `Refunded to the card (${r.refundId}).`;
      }}
      done={done}
    />
  );
}

/**
 * A reversal waiting for M-Pesa (a tip's, or a refunded suspense payment's): once support is alerted (no answer
 * within the hour), ended by M-Pesa's statement. `heading` false inside a table row.
 */
export function ResolveReversal({ of, state, heading = true, disabledWhy, done }: {
  of: { tipId: string } | { suspenseReceipt: string }; state: MpesaReversalState; heading?: boolean; disabledWhy?: string; done: () => void;
}) {
  const [receipt, setReceipt] = useState("");
  if (state !== MpesaReversalState.PENDING) return null;
  const resolve = async (outcome: { case: "reversalReceipt"; value: string } | { case: "notReversed"; value: true }, note: string) => {
    const proof = await stepUp();
    await api(PaymentAdminService).resolveMpesaReversal({ ...of, outcome, note }, proof);
  };
  return (
    <section aria-label="Resolve reversal">
      {heading && <h2>Reversal in doubt</h2>}
      <p role="note">When M-Pesa has not answered within the hour (support is alerted), check M-Pesa's statement and say what it shows. The reversal is never sent again.</p>
      <label>Reversal receipt <input aria-label="Reversal receipt" size={12} value={receipt} onChange={(e) => setReceipt(e.target.value.toUpperCase())} /></label>{" "}
      <Action label="Reversed on the statement" reason="Note" disabledWhy={disabledWhy} done={done}
        run={(note) => resolve({ case: "reversalReceipt", value: receipt.trim() }, note)} />
      <Action label="Not reversed on the statement" reason="Note" danger disabledWhy={disabledWhy} done={done}
        run={(note) => resolve({ case: "notReversed", value: true }, note)} />
    </section>
  );
}
