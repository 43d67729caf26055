/** A KES amount as the contracts' Money (M-Pesa's checks live in the runtime: mpesaAmount). */
export function kes(amountMinor: bigint): { currency: string; amountMinor: bigint } {
  return { currency: "KES", amountMinor };
}
