// What a withdrawal would go over, from what the screen already has (the balance and the wallet's
// limits with what is left of each): the web app and the phone app refuse it before the device
// key's step-up, as wallet would refuse the payout after it.
import type { WithdrawalLimit } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { MPESA_LIMITS } from "@ttip/runtime/mpesa-limits";

/** `belowPayoutMinimum`: what is left is under the least M-Pesa pays out, so no amount would do ("enter KES 0 or less" helps nobody). */
export type WithdrawalOver =
  | { readonly kind: "balance"; readonly leftMinor: bigint; readonly belowPayoutMinimum: boolean }
  | { readonly kind: "limit"; readonly limit: WithdrawalLimit; readonly leftMinor: bigint; readonly belowPayoutMinimum: boolean };

/** The balance (when known) or the first limit `amountMinor` is more than what is left of, or undefined when none. */
export function withdrawalOver(amountMinor: bigint, availableMinor: bigint | undefined, limits: readonly WithdrawalLimit[]): WithdrawalOver | undefined {
  const below = (leftMinor: bigint) => leftMinor < MPESA_LIMITS.payoutMinMinor;
  if (availableMinor !== undefined && amountMinor > availableMinor) return { kind: "balance", leftMinor: availableMinor, belowPayoutMinimum: below(availableMinor) };
  const limit = limits.find((l) => l.remaining !== undefined && amountMinor > l.remaining.amountMinor);
  if (!limit) return undefined;
  const leftMinor = limit.remaining!.amountMinor;
  return { kind: "limit", limit, leftMinor, belowPayoutMinimum: below(leftMinor) };
}
