import { Code, ConnectError } from "@connectrpc/connect";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";

/** M-Pesa refuses amounts below KES 1 and consumer transactions above KES 250,000. */
export const MPESA_MIN_MINOR = 100n;
export const MPESA_MAX_MINOR = 250_000_00n;

/**
 * The whole-shilling KES amount M-Pesa can move, or INVALID_ARGUMENT naming
 * `field` (a fraction of a shilling, another currency, or outside Daraja's limits).
 */
export function mpesaAmount(money: Money | undefined, field: string): bigint {
  if (!money) throw new ConnectError(`${field}: is required`, Code.InvalidArgument);
  if (money.currency !== "KES") throw new ConnectError(`${field}: M-Pesa moves Kenya shillings only (currency KES)`, Code.InvalidArgument);
  if (money.amountMinor % 100n !== 0n) {
    throw new ConnectError(`${field}: M-Pesa moves whole shillings; amount_minor must be a multiple of 100`, Code.InvalidArgument);
  }
  if (money.amountMinor < MPESA_MIN_MINOR) throw new ConnectError(`${field}: at least KES 1`, Code.InvalidArgument);
  if (money.amountMinor > MPESA_MAX_MINOR) throw new ConnectError(`${field}: M-Pesa allows at most KES 250,000 per transaction`, Code.InvalidArgument);
  return money.amountMinor;
}

export function kes(amountMinor: bigint): { currency: string; amountMinor: bigint } {
  return { currency: "KES", amountMinor };
}
