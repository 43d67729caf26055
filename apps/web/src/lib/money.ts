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

/**
 * Whole shillings typed by a person ("250", "1,000") as minor units, or
 * undefined when it is not a whole positive number within `max` units.
 * M-Pesa moves whole shillings only, as the contract says.
 */
export function parseWholeUnits(text: string, max = MPESA_MAX_UNITS): bigint | undefined {
  const t = text.replace(/[\s,]/g, "");
  if (!/^[0-9]{1,7}$/.test(t)) return undefined;
  const units = BigInt(t);
  if (units <= 0n || units > BigInt(max)) return undefined;
  return units * 100n;
}
