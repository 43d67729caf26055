/** An amount in minor units with its ISO 4217 code, as the contracts' Money carries it. */
export interface Money {
  currency: string;
  amountMinor: bigint;
}

/** A KES amount as the contracts' Money (M-Pesa's checks live in the runtime: mpesaAmount). */
export function kes(amountMinor: bigint): Money {
  return { currency: "KES", amountMinor };
}
