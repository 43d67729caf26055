// What became of a withdrawal that did not simply go through, in the worker's words: from its result code
// (M-Pesa's B2C codes, or payment's own), never M-Pesa's English text, which says "The balance is
// insufficient" of TTIP's own M-Pesa account and reads as if it were the worker's.
import { PayoutStatus, type Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";

/** The catalogue keys of these words, the same in both worker apps. */
export type PayoutOutcomeKey = "po_limit" | "po_unregistered" | "po_ourSide" | "po_balance" | "po_walletLimit" | "po_nothingSent" | "po_other" | "po_onHold";

/** M-Pesa's limits on the recipient: per transaction, per day, the most an account may hold (Daraja's B2C codes). */
const MPESA_LIMIT_CODES = new Set(["2", "3", "4", "8"]);
/** The number cannot take M-Pesa money: not registered, or no such number. */
const UNREGISTERED_CODES = new Set(["2040", "SFC_IC0003"]);
/** TTIP's side of M-Pesa: its account short or inactive, its initiator refused, M-Pesa busy or failing inside. */
const OUR_SIDE_CODES = new Set(["1", "11", "17", "21", "26", "2001", "8006", "refused"]);
/** Nothing left M-Pesa: support found no payment on the statement, or M-Pesa has no record of it. */
const NOTHING_SENT_CODES = new Set(["not_paid", "2032"]);

/** Words for a payout's outcome, or undefined when its status word says it all. */
export function payoutOutcomeKey(status: PayoutStatus, resultCode: string): PayoutOutcomeKey | undefined {
  if (status === PayoutStatus.ON_HOLD) return "po_onHold";
  if (status !== PayoutStatus.FAILED) return undefined;
  if (resultCode === "insufficient_balance") return "po_balance";
  if (resultCode === "limit") return "po_walletLimit";
  if (MPESA_LIMIT_CODES.has(resultCode)) return "po_limit";
  if (UNREGISTERED_CODES.has(resultCode)) return "po_unregistered";
  // Daraja's own refusals of the request ("400.002.05"...) are TTIP's side too: nothing reached M-Pesa.
  if (OUR_SIDE_CODES.has(resultCode) || /^\d{3}\.\d{3}\./.test(resultCode)) return "po_ourSide";
  if (NOTHING_SENT_CODES.has(resultCode)) return "po_nothingSent";
  return "po_other";
}

const FINAL = new Set([PayoutStatus.SUCCEEDED, PayoutStatus.FAILED]);

/** Whether M-Pesa has answered for good: the screen may offer another withdrawal. */
export const payoutFinal = (p: Payout | undefined): boolean => p !== undefined && FINAL.has(p.status);

