import type { MoneyAmount } from "@ttip/runtime";

/** A KES amount as the contracts' Money (M-Pesa's checks live in the runtime: mpesaAmount). */
export function kes(amountMinor: bigint): MoneyAmount {
  return { currency: "KES", amountMinor };
}
