// Money on screen: int64 minor units in the currency the service sent, never a float out. The one
// formatter of every screen (the web app, the admin console and the phone app share this file).
import { MPESA_LIMITS } from "@ttip/runtime/mpesa-limits";

/** An amount as the services send it (ttip.common.v1.Money). */
export interface Amount {
  readonly amountMinor: bigint;
  readonly currency: string;
}

/**
 * ISO 4217 minor-unit exponents other than 2 (every currency not listed has 2). A table, not Intl: the
 * phone app's JavaScript engine may ship without currency data, and a wrong exponent shows a tip 100
 * times too large or small.
 */
const EXPONENTS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

/** Digits after the decimal point in `currency` (ISO 4217); 2 for a code not in the table. */
export function minorExponent(currency: string): number {
  return EXPONENTS[currency] ?? 2;
}

/**
 * "1,050" for whole units, "1,050.50" otherwise, in `currency`'s units (`minor` >= 0); `allDigits`
 * always writes the minor digits ("1,050.00"), as the admin console's ledger figures read.
 */
export function unitsText(minor: bigint, currency: string, allDigits = false): string {
  const exponent = minorExponent(currency);
  const scale = 10n ** BigInt(exponent);
  const whole = (minor / scale).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fraction = minor % scale;
  return `${whole}${exponent && (fraction || allDigits) ? `.${fraction.toString().padStart(exponent, "0")}` : ""}`;
}

/**
 * "KES 1,050" for whole units, "KES 1,050.50" otherwise; "UGX 5,000" (no minor unit), "BHD 1.250";
 * "KES -5" below zero, the code first as in every amount (and as the services write it).
 * `minor` is in `currency`'s minor units: the currency must be the one the amount came with.
 */
export function formatMoney(minor: bigint, currency: string, allDigits = false): string {
  const negative = minor < 0n;
  return `${currency} ${negative ? "-" : ""}${unitsText(negative ? -minor : minor, currency, allDigits)}`;
}

/**
 * An amount the service sent, in its own currency. A missing one reads as zero in `asked`, the currency
 * the screen asked for (a balance, a limit): there is no other currency to show it in.
 */
export function formatAmount(amount: Amount | undefined, asked: string): string {
  return amount ? formatMoney(amount.amountMinor, amount.currency || asked) : formatMoney(0n, asked);
}

/** The currency of the screen's money: KES, the only one a worker's wallet holds today. */
export const WALLET_CURRENCY = "KES";

/** The most M-Pesa moves in one transaction, in whole shillings (runtime's MPESA_LIMITS, what the services check). */
export const MPESA_MAX_UNITS = Number(MPESA_LIMITS.perTransactionMinor / 100n);

/** The least M-Pesa pays out (B2C), in whole shillings, as payment refuses below it (runtime's MPESA_LIMITS). */
export const PAYOUT_MIN_UNITS = Number(MPESA_LIMITS.payoutMinMinor / 100n);

/**
 * Whole units written by a person: digits, or digits grouped in threes by commas ("12,500") or by
 * spaces ("12 500"), one kind throughout. Separators anywhere else are a typo, not a grouping:
 * "1,2,3" is refused rather than read as 123.
 */
const GROUPED_WHOLE = /^(?:\d+|\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+)$/;

/** The most whole digits a typed amount may have (a trillion units: past any tip, payout or fee). */
const MAX_WHOLE_DIGITS = 12;

/**
 * An amount typed by a person in `currency`'s units ("1,250.50", "250", "1 000") as that currency's
 * minor units (ISO 4217 exponent); undefined when it is not a non-negative amount with at most
 * `currency`'s minor digits. The one parser of typed money: every screen reads "1,2,3" the same way (not at all).
 */
export function parseUnits(text: string, currency: string): bigint | undefined {
  const digits = minorExponent(currency);
  const [whole, fraction = "", extra] = text.trim().split(".");
  if (extra !== undefined || !GROUPED_WHOLE.test(whole) || !/^\d*$/.test(fraction) || fraction.length > digits) return undefined;
  if (text.includes(".") && !fraction) return undefined; // "12." is half-typed
  const plain = whole.replace(/[, ]/g, "");
  if (plain.length > MAX_WHOLE_DIGITS) return undefined;
  return BigInt(plain) * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, "0") || "0");
}

/**
 * Whole shillings typed by a person ("250", "1,000") as minor units, or
 * undefined when it is not a whole positive number within `max` units.
 * M-Pesa moves whole shillings only, as the contract says.
 */
export function parseWholeUnits(text: string, max = MPESA_MAX_UNITS): bigint | undefined {
  const minor = text.includes(".") ? undefined : parseUnits(text, WALLET_CURRENCY);
  if (minor === undefined || minor <= 0n || minor > BigInt(max) * 100n) return undefined;
  return minor;
}
