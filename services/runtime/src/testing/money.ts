import type { MoneyAmount } from "../money.js";

/** Kenya shillings as the contracts' Money: `KES(100)` is 10,000 cents (KES has two minor digits). */
export function KES(shillings: number): MoneyAmount {
  if (!Number.isFinite(shillings)) throw new Error(`KES(${shillings}): not an amount`);
  return { currency: "KES", amountMinor: BigInt(Math.round(shillings * 100)) };
}

/** Kenya shillings given in cents, as the contracts carry them. */
export function kesMinor(amountMinor: bigint): MoneyAmount {
  return { currency: "KES", amountMinor };
}
