// What a withdrawal would go over, from what the screen already has (the balance and the wallet's
// limits with what is left of each): the web app and the phone app refuse it before the device
// key's step-up, as wallet would refuse the payout after it.
import type { WithdrawalLimit } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { MPESA_LIMITS } from "@ttip/runtime/mpesa-limits";
import type { WriteKey } from "./write-key";

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

/**
 * A withdrawal of the same amount sent and unanswered (its intent `amount|phone`), with the number left blank where
 * this one has it typed, or the other way round; undefined when there is none. Blank is the payout number, which the
 * apps do not know: this may be that payout asked again, which under its own key is a second one (and under the
 * other's key, a payout to another number answered for it), so the worker is asked first.
 */
export function unansweredLikeIt(keys: WriteKey, amountMinor: bigint, phone: string): { intent: string; key: string } | undefined {
  if (keys.sentUnanswered(`${amountMinor}|${phone}`)) return undefined;
  const blank = `${amountMinor}|`;
  const found = keys.unansweredWrites().find(([intent]) => (phone ? intent === blank : intent.startsWith(blank)));
  return found && { intent: found[0], key: found[1] };
}
