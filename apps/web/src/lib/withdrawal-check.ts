// What a withdrawal would go over, from what the screen already has (the balance and the wallet's
// limits with what is left of each): the web app and the phone app refuse it before the device
// key's step-up, as wallet would refuse the payout after it.
import type { WithdrawalLimit } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";

export type WithdrawalOver =
  | { readonly kind: "balance"; readonly leftMinor: bigint }
  | { readonly kind: "limit"; readonly limit: WithdrawalLimit; readonly leftMinor: bigint };

/** The balance (when known) or the first limit `amountMinor` is more than what is left of, or undefined when none. */
export function withdrawalOver(amountMinor: bigint, availableMinor: bigint | undefined, limits: readonly WithdrawalLimit[]): WithdrawalOver | undefined {
  if (availableMinor !== undefined && amountMinor > availableMinor) return { kind: "balance", leftMinor: availableMinor };
  const limit = limits.find((l) => l.remaining !== undefined && amountMinor > l.remaining.amountMinor);
  return limit ? { kind: "limit", limit, leftMinor: limit.remaining!.amountMinor } : undefined;
}
