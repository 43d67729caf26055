// A payout held because M-Pesa reported it paid in another amount than its own: support checks M-Pesa's
// statement and says what was paid (the amount and its receipt) or that nothing was, after a device step-up.
// The service settles or releases the worker's hold; it never sends the payout again. The difference from the
// payout's amount (more: the platform's fees account bears it; less: back to the worker) is shown as the amount is typed; over the limit the
// service takes it only confirmed, so a typo (9600 for 96) is caught here before it is sent.
import { useState } from "react";
import { HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR } from "@ttip/runtime/mpesa-limits";
import type { Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { parseWholeUnits } from "../../web/src/lib/money";
import { api, stepUp } from "./api";
import { Action, money } from "./ui";

/** The most a paid amount may be typed as: M-Pesa sends less in one payment. */
const MAX_PAID_UNITS = 999_999;

/**
 * Whole shillings as typed ("96", "1,200") in minor units, or an error naming the field: M-Pesa moves whole
 * shillings. The apps' one strict parser: "9,6" is a typo to correct, not KES 96.
 */
function paidMinor(typed: string): bigint {
  const minor = parseWholeUnits(typed, MAX_PAID_UNITS);
  if (minor === undefined) throw new Error("Paid amount: whole shillings M-Pesa sent, e.g. 96.");
  return minor;
}

/** The typed paid amount minus the payout's, or undefined while the amount is not whole shillings. */
function differenceOf(typed: string, payout: Payout): bigint | undefined {
  try {
    return paidMinor(typed) - (payout.amount?.amountMinor ?? 0n);
  } catch {
    return undefined;
  }
}

const overLimit = (d: bigint) => (d < 0n ? -d : d) > HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR;
const kes = (amountMinor: bigint) => money({ currency: "KES", amountMinor });

/** The difference shown as it is typed; over the limit, a box that confirms that very figure (another amount unticks it). */
function Difference({ difference, confirmed, confirm }: { difference: bigint | undefined; confirmed: boolean; confirm: (on: boolean) => void }) {
  if (difference === undefined || difference === 0n) return null;
  const words = difference > 0n ? "more than the payout: the platform's fees account bears it" : "less than the payout: it goes back to the worker's wallet";
  return (
    <p data-testid="paid-difference">
      Difference: {kes(difference)}, {words}.
      {overLimit(difference) && (
        <label> <input type="checkbox" checked={confirmed} onChange={(e) => confirm(e.target.checked)} /> I checked the statement: the difference is {kes(difference)}</label>
      )}
    </p>
  );
}

export function ResolveHeldPayout({ payout, disabledWhy, done }: { payout: Payout; disabledWhy?: string; done: () => void }) {
  const [amount, setAmount] = useState(String((payout.amount?.amountMinor ?? 0n) / 100n));
  const [receipt, setReceipt] = useState(payout.mpesaReceipt);
  /** The difference the admin ticked the box for; confirmed only while it is still the one typed. */
  const [confirmedFor, setConfirmedFor] = useState<bigint>();
  const difference = differenceOf(amount, payout);
  const confirmed = difference !== undefined && confirmedFor === difference;
  const payment = api(PaymentAdminService);
  return (
    <section aria-label="Resolve held payout">
      <h2>Resolve</h2>
      <p role="note">Held: {payout.resultMessage}. Check M-Pesa's statement, then say what it shows. The payout is never sent again.</p>
      <label>Paid (KES) <input aria-label="Paid amount (KES)" inputMode="numeric" size={8} value={amount} onChange={(e) => setAmount(e.target.value)} /></label>{" "}
      <label>Receipt <input aria-label="M-Pesa receipt" size={12} value={receipt} onChange={(e) => setReceipt(e.target.value.toUpperCase())} /></label>{" "}
      <Difference difference={difference} confirmed={confirmed} confirm={(on) => setConfirmedFor(on ? difference : undefined)} />
      <Action label="Resolve as paid" reason="Note" disabledWhy={disabledWhy} done={done} intent={JSON.stringify([String(parseWholeUnits(amount, MAX_PAID_UNITS) ?? amount.trim()), receipt.trim()])}
        run={async (note, send) => {
          const paidAmount = { currency: "KES", amountMinor: paidMinor(amount) };
          const over = difference !== undefined && overLimit(difference);
          if (over && !confirmed) throw new Error(`Paid amount: ${kes(difference)} from the payout; check it, and tick the box if M-Pesa's statement shows it.`);
          const confirmedDifference = over ? { currency: "KES", amountMinor: difference } : undefined;
          const paid = { paidAmount, mpesaReceipt: receipt.trim(), confirmedDifference };
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
