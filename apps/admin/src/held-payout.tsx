// A payout held because M-Pesa reported it paid in another amount than its own: support checks M-Pesa's
// statement and says what was paid (the amount and its receipt) or that nothing was, after a device step-up.
// The service settles or releases the worker's hold; it never sends the payout again.
import { useState } from "react";
import type { Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { api, stepUp } from "./api";
import { Action } from "./ui";

/** Whole shillings as typed ("96") in minor units, or an error naming the field: M-Pesa moves whole shillings. */
function paidMinor(typed: string): bigint {
  const t = typed.trim().replace(/,/g, "");
  if (!/^\d{1,6}$/.test(t) || t === "0") throw new Error("Paid amount: whole shillings M-Pesa sent, e.g. 96.");
  return BigInt(t) * 100n;
}

export function ResolveHeldPayout({ payout, disabledWhy, done }: { payout: Payout; disabledWhy?: string; done: () => void }) {
  const [amount, setAmount] = useState(String((payout.amount?.amountMinor ?? 0n) / 100n));
  const [receipt, setReceipt] = useState(payout.mpesaReceipt);
  const payment = api(PaymentAdminService);
  return (
    <section aria-label="Resolve held payout">
      <h2>Resolve</h2>
      <p role="note">Held: {payout.resultMessage}. Check M-Pesa's statement, then say what it shows. The payout is never sent again.</p>
      <label>Paid (KES) <input aria-label="Paid amount (KES)" inputMode="numeric" size={8} value={amount} onChange={(e) => setAmount(e.target.value)} /></label>{" "}
      <label>Receipt <input aria-label="M-Pesa receipt" size={12} value={receipt} onChange={(e) => setReceipt(e.target.value.toUpperCase())} /></label>{" "}
      <Action label="Resolve as paid" reason="Note" disabledWhy={disabledWhy} done={done}
        run={async (note, send) => {
          const paid = { paidAmount: { currency: "KES", amountMinor: paidMinor(amount) }, mpesaReceipt: receipt.trim() };
          const proof = await stepUp();
          await send((key) => payment.resolveHeldPayout({ payoutId: payout.payoutId, idempotencyKey: key, outcome: { case: "paid", value: paid }, note }, proof));
        }} />
      <Action label="Resolve as not paid" reason="Note" danger disabledWhy={disabledWhy} done={done}
        run={async (note, send) => {
          const proof = await stepUp();
          await send((key) => payment.resolveHeldPayout({ payoutId: payout.payoutId, idempotencyKey: key, outcome: { case: "notPaid", value: true }, note }, proof));
        }} />
    </section>
  );
}
