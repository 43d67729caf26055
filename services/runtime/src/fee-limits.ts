/**
 * The highest card fee a fee schedule may set, in basis points. Card processors charge a few percent: more than a
 * fifth is a typo. It also bounds the charge a customer who covers the fee pays (quoteTip): at 10000, a fee of the
 * whole charge, no charge covers a tip. A file without imports (package export "@ttip/runtime/fee-limits"), so the
 * admin console checks what wallet checks.
 */
export const CARD_FEE_BPS_MAX = 2_000;
