// The bounds of fee schedules and of the tips they price. A file without imports (package export
// "@ttip/runtime/fee-limits"), so the admin console checks what wallet checks.

/**
 * The highest card fee a fee schedule may set, in basis points. Card processors charge a few percent: more than a
 * fifth is a typo. It also bounds the charge a customer who covers the fee pays (quoteTip): at 10000, a fee of the
 * whole charge, no charge covers a tip.
 */
export const CARD_FEE_BPS_MAX = 2_000;
/**
 * The largest card tip a public request may carry, per currency (about USD 2,000): a tip, not a
 * transfer. Bounding every public amount keeps fee arithmetic far from int64's edge.
 */
export const CARD_MAX_MINOR: Readonly<Record<string, bigint>> = Object.freeze({
  KES: 250_000_00n,
  UGX: 7_500_000n,
  TZS: 5_000_000_00n,
  RWF: 2_500_000n,
  USD: 2_000_00n,
  EUR: 2_000_00n,
  GBP: 2_000_00n,
});

/**
 * The largest amount a fee schedule may name in `currency` (a platform fee's floor or cap, a card's fixed part, a
 * B2C band's charge): the largest tip of that currency. A fee above any tip is a typo (a cap above it caps
 * nothing), and it keeps the quote's arithmetic far from int64's edge. Undefined for a
 * currency the platform does not handle.
 */
export function feeAmountMaxMinor(currency: string): bigint | undefined {
  return Object.hasOwn(CARD_MAX_MINOR, currency) ? CARD_MAX_MINOR[currency] : undefined;
}
