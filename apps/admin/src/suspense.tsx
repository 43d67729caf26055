// Suspense: paybill payments that could not be credited as they came; an
// admin or finance matches one to a worker's code or refunds it (M-Pesa
// reverses it to its payer), with a reason (the audit trail), after a device
// step-up. A refund whose reversal M-Pesa refused, or left in doubt, stays here.
import { useEffect, useState } from "react";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { MpesaReversalState, type SuspensePayment } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { MPESA_LIMITS } from "@ttip/runtime/mpesa-limits";
import { api, errorText, hasRole, MONEY_ROLES, stepUp, type Session } from "./api";
import { ResolveReversal } from "./give-back";
import { MoreButton, usePages, type Page } from "./paging";
import { Action, money, when } from "./ui";

/** What became of a refund on M-Pesa, in words; empty for a payment not refunded, or refunded by hand. */
function reversalWords(p: SuspensePayment): string {
  switch (p.mpesaReversal) {
    case MpesaReversalState.PENDING: return "reversal waiting for M-Pesa";
    case MpesaReversalState.REVERSED: return "reversed to the payer";
    case MpesaReversalState.FAILED: return `reversal not made (${p.mpesaReversalResult}); the money is in suspense again`;
    default: return "";
  }
}

/** Why a payment cannot be matched (M-Pesa cannot have moved its amount) and what support does instead; undefined when it can. */
function unmatchable(p: SuspensePayment): string | undefined {
  if (p.amount?.currency !== "KES") return undefined;
  // M-Pesa's least and most a customer can pay in one transaction, as the server checks a match.
  if (p.amount.amountMinor > MPESA_LIMITS.perTransactionMinor) return "over M-Pesa's cap: check with Safaricom, refund";
  return p.amount.amountMinor < MPESA_LIMITS.minMinor ? "below KES 1, no money: refund to close" : undefined;
}

/** Whether M-Pesa can reverse the payment: money it can have moved, in whole shillings (a refund of any other is closed by hand). */
const reversible = (p: SuspensePayment) => !unmatchable(p) && p.amount?.currency === "KES" && p.amount.amountMinor % 100n === 0n;

const codeInputId = (receipt: string) => `suspense-code-${receipt}`;

/** Why Match cannot be sent for this code box (it is empty), with the focus put on it; undefined when it can. */
function missingCode(receipt: string, code: string): string | undefined {
  if (code) return undefined;
  document.getElementById(codeInputId(receipt))?.focus();
  return "Worker code: type the code this payment was meant for (or Refund it). Nothing was sent.";
}

export function Suspense({ session }: { session: Session }) {
  // Newest first, a page at a time: the oldest open payments (waiting longest) are reached with More.
  const pages = usePages<SuspensePayment>();
  const payments = pages.rows;
  const [all, setAll] = useState(false);
  const [codes, setCodes] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const payment = api(PaymentAdminService);
  const noMoney = hasRole(session, ...MONEY_ROLES) ? undefined : "needs the finance or admin role";
  const fetchPage = async (pageToken: string): Promise<Page<SuspensePayment>> => {
    const r = await payment.listSuspensePayments({ includeResolved: all, page: { pageSize: 50, pageToken } });
    return { rows: r.payments, next: r.page?.nextPageToken ?? "" };
  };
  const load = async (more = false) => {
    setError("");
    try {
      await (more ? pages.more() : pages.first(fetchPage));
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [all]);
  const refund = async (p: SuspensePayment, note: string) =>
    void (await payment.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note }, await stepUp()));
  // What the row's box holds, as sent: the server's guess only when it has one alone. Of several codes one slip away
  // the first filled the box, and a Match with a reason credited a worker no one chose.
  const codeOf = (p: SuspensePayment) => (codes[p.receipt] ?? (p.suggestions.length === 1 ? p.suggestions[0] : "")).trim();
  return (
    <div>
      <label className="check"><input type="checkbox" checked={all} onChange={(e) => setAll(e.target.checked)} /> include resolved</label>
      {error && <p role="alert" className="error">{error}</p>}
      {/* Resolve and State first, as the Fraud queue's Review: on a phone they are where the row starts, not past the long Why column. */}
      <table>
        <thead><tr><th>Resolve</th><th>State</th><th>Received</th><th>Receipt</th><th>Amount</th><th>Typed reference</th><th>Why</th></tr></thead>
        <tbody>
          {payments.map((p) => (
            <tr key={p.receipt} data-receipt={p.receipt}>
              <td>
                {p.resolution === "open" && (
                  <>
                    {unmatchable(p) ? <span>{unmatchable(p)}</span> : <>
                      <input id={codeInputId(p.receipt)} aria-label={`Code for ${p.receipt}`} placeholder={p.suggestions.length > 1 ? "which code?" : "worker code"} size={8} value={codeOf(p)} onChange={(e) => setCodes({ ...codes, [p.receipt]: e.target.value })} />
                      <Action label="Match" reason="Reason" disabledWhy={noMoney} done={() => void load()} precheck={() => missingCode(p.receipt, codeOf(p))}
                        run={async (note) => void (await payment.resolveSuspensePayment({ receipt: p.receipt, action: { case: "matchAccountReference", value: codeOf(p) }, note }, await stepUp()))} />
                    </>}
                    <Action label="Refund" reason="Reason" danger disabledWhy={noMoney} done={() => void load()} run={(note) => refund(p, note)} />
                  </>
                )}
                {p.resolution === "refund" && p.mpesaReversal === MpesaReversalState.FAILED && (
                  <Action label="Refund again" reason="Reason" danger disabledWhy={noMoney} done={() => void load()} run={(note) => refund(p, note)} />
                )}
                {/* Refunded before refunds were reversed here: its money still shows in suspense. */}
                {p.resolution === "refund" && p.mpesaReversal === MpesaReversalState.NONE && reversible(p) && (
                  <Action label="Reverse on M-Pesa" reason="Reason" danger disabledWhy={noMoney} done={() => void load()} run={(note) => refund(p, note)}
                    confirm={`Check M-Pesa's statement first: refunded any other way (a B2C, cash), its payer would be paid twice. M-Pesa gives ${money(p.amount)} back to its payer, or answers that it was reversed already (on the portal); either way the money leaves suspense.`} />
                )}
                {p.resolution === "refund" && (
                  <ResolveReversal of={{ suspenseReceipt: p.receipt }} state={p.mpesaReversal} heading={false} disabledWhy={noMoney} done={() => void load()} />
                )}
              </td>
              <td data-testid="state">{p.resolution}{p.tipId ? ` → tip ${p.tipId}` : ""}{reversalWords(p) && `: ${reversalWords(p)}`}</td>
              <td>{when(p.receivedAt)}</td>
              <td><code>{p.receipt}</code></td>
              <td>{money(p.amount)}</td>
              <td>{p.accountReference}</td>
              {/* The reason names the codes one slip away already; one alone fills the code box. */}
              <td data-testid="why">{p.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!payments.length && !error && <p className="muted">Nothing in suspense.</p>}
      <MoreButton pages={pages} onClick={() => void load(true)} />
    </div>
  );
}
