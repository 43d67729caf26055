// What a refund, a refund refused or a lost chargeback changes of a paid card tip's figures (and an
// M-Pesa tip's reversal, or its refusal), announced (TipReversed) in the transaction that records it,
// so what counts a tip's success (analytics' earnings, volume and revenue) also counts its money going back.
import { emitEvent, type Queryable } from "@ttip/runtime";
import { PaymentMethod, TipReversalKind, TipReversedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { TipRow } from "../tips.js";
import type { CardColumns } from "./convert.js";

/** What the figures of a reversal are read from: the tip's row with its refunded amounts. */
type ReversedTip = TipRow & Pick<CardColumns, "refunded_minor" | "wallet_currency">;

export { TipReversalKind };

/** One change of what is reversed of a tip. */
export interface Reversal {
  kind: TipReversalKind;
  /** The refund's or the dispute's id. */
  reversalId: string;
  /** Of the charge, what the change reverses: negative for a refund refused. */
  chargedMinor: bigint;
  /** Of the worker's part, what the wallet (or pool) gave back: negative when it got it back. */
  walletMinor: bigint;
}

/**
 * What of the charge the tip row `tip` has reversed: its refunds (refunded_minor, as the transaction
 * has it) and its lost chargebacks. Under the tip's row lock, which every change of either takes.
 */
async function reversedCharge(tx: Queryable, tip: ReversedTip): Promise<bigint> {
  const { rows: [lost] } = await tx.query<{ minor: bigint }>(
    "SELECT COALESCE(sum(amount_minor), 0)::int8 AS minor FROM payment.card_disputes WHERE tip_id = $1 AND status = 'lost'", [tip.tip_id]);
  return tip.refunded_minor + BigInt(lost.minor);
}

/** `part`'s share of what is reversed of the charge, rounded down: all of it once all the charge is. */
function partReversed(part: bigint, reversed: bigint, charged: bigint): bigint {
  if (charged <= 0n || reversed <= 0n) return 0n;
  return (part * (reversed < charged ? reversed : charged)) / charged;
}

/**
 * Announces `r` of `tip` (its row as the transaction left it, the change applied): the tip's amount
 * and fee in proportion, as the difference of what is reversed before and after, so a tip's
 * reversals add up to its share of the charge reversed without a minor unit lost to rounding each.
 * A tip whose success was never announced (held for review, or rejected) counted nothing to take off.
 */
export async function emitTipReversed(tx: Queryable, tip: ReversedTip, r: Reversal): Promise<void> {
  if (tip.status !== "succeeded" || (r.chargedMinor === 0n && r.walletMinor === 0n)) return;
  const after = await reversedCharge(tx, tip);
  const before = after - r.chargedMinor;
  const taken = (part: bigint) => partReversed(part, after, tip.charged_minor) - partReversed(part, before, tip.charged_minor);
  await emitEvent(tx, "payment", TipReversedSchema, {
    tipId: tip.tip_id,
    workerId: tip.worker_id ?? "",
    venueId: tip.venue_id,
    qrCodeId: tip.qr_code_id,
    method: tip.method === "card" ? PaymentMethod.CARD : PaymentMethod.MPESA,
    kind: r.kind,
    reversalId: r.reversalId,
    amount: { currency: tip.currency, amountMinor: taken(tip.amount_minor) },
    fee: { currency: tip.currency, amountMinor: taken(tip.fee_minor) },
    net: { currency: tip.wallet_currency, amountMinor: r.walletMinor },
    createdBy: tip.customer_subject,
  }, tip.tip_id);
}
