// Money as the contracts carry it: int64 minor units and an ISO 4217 code, never a float.
import { create } from "@bufbuild/protobuf";
import { MoneySchema, type Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { fieldError } from "./field-errors.js";
import { CARD_MAX_MINOR } from "./fee-limits.js";
import { MPESA_LIMITS } from "./mpesa-limits.js";

/** An amount in minor units with its ISO 4217 code: the shape of the contracts' Money, for every service. */
export interface MoneyAmount {
  amountMinor: bigint;
  currency: string;
}

/** ISO 4217 minor digits of the currencies the platform handles (RWF and UGX have none). */
export const MINOR_DIGITS: Readonly<Record<string, number>> = Object.freeze({
  KES: 2,
  UGX: 0,
  TZS: 2,
  RWF: 0,
  USD: 2,
  EUR: 2,
  GBP: 2,
});

export const CURRENCIES: readonly string[] = Object.freeze(Object.keys(MINOR_DIGITS));

export function isKnownCurrency(currency: string): boolean {
  return Object.hasOwn(MINOR_DIGITS, currency);
}

/** The currency's minor digits; 2 for one the table does not know (what most currencies have). */
export function minorDigits(currency: string): number {
  return isKnownCurrency(currency) ? MINOR_DIGITS[currency] : 2;
}

/** INVALID_ARGUMENT naming `field` unless the platform handles `currency`. */
export function assertCurrency(currency: string, field: string): void {
  if (!isKnownCurrency(currency)) throw fieldError(field, `unsupported currency ${currency} (supported: ${CURRENCIES.join(", ")})`);
}

function split(minor: bigint, currency: string): { sign: string; whole: bigint; fraction: string } {
  const digits = minorDigits(currency);
  const abs = minor < 0n ? -minor : minor;
  const unit = 10n ** BigInt(digits);
  const fraction = digits === 0 ? "" : (abs % unit).toString().padStart(digits, "0");
  return { sign: minor < 0n ? "-" : "", whole: abs / unit, fraction };
}

/** A plain decimal in the currency's own digits, for machines (CSV, KE-QR): 150050 KES -> "1500.50". */
export function decimalAmount(minor: bigint, currency: string): string {
  const { sign, whole, fraction } = split(minor, currency);
  return fraction ? `${sign}${whole}.${fraction}` : `${sign}${whole}`;
}

/** For people (SMS, e-mail, messages): "KES 1,250", or "KES 1,250.50" when there are cents. */
export function formatMoney(minor: bigint, currency: string): string {
  const { sign, whole, fraction } = split(minor, currency);
  const grouped = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = fraction && /[1-9]/.test(fraction) ? `.${fraction}` : "";
  return `${currency} ${sign}${grouped}${cents}`;
}

/**
 * A provider's decimal amount of a two-digit currency ("100", "100.50", 100, 100.5: Daraja sends shillings as
 * strings or JSON numbers) in minor units, exactly, or undefined. A number is read by its shortest decimal form
 * (what the JSON said), never rounded: 100.499 or 100.004 is refused, not taken as 100.50 or 100.
 */
export function decimalMinor(v: unknown): bigint | undefined {
  const s = typeof v === "number" ? (Number.isFinite(v) ? String(v) : "") : typeof v === "string" ? v.trim() : "";
  const m = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return undefined;
  return BigInt(m[1]) * 100n + BigInt((m[2] ?? "").padEnd(2, "0"));
}

export { MPESA_LIMITS } from "./mpesa-limits.js";

/**
 * The whole-shilling KES amount M-Pesa can move, or INVALID_ARGUMENT naming `field`
 * (missing, another currency, a fraction of a shilling, or outside M-Pesa's limits).
 */
export function mpesaAmount(money: MoneyAmount | undefined, field: string): bigint {
  if (!money) throw fieldError(field, "is required");
  if (money.currency !== "KES") throw fieldError(field, "M-Pesa moves Kenya shillings only (currency KES)");
  if (money.amountMinor % 100n !== 0n) throw fieldError(field, "M-Pesa moves whole shillings; amount_minor must be a multiple of 100");
  if (money.amountMinor < MPESA_LIMITS.minMinor) throw fieldError(field, "at least KES 1");
  if (money.amountMinor > MPESA_LIMITS.perTransactionMinor) throw fieldError(field, "M-Pesa allows at most KES 250,000 per transaction");
  return money.amountMinor;
}


/**
 * A tip amount from outside for the rail: M-Pesa's rules (mpesaAmount), or for a card a known
 * currency, more than zero and at most CARD_MAX_MINOR; else INVALID_ARGUMENT naming `field`.
 */
export function publicTipAmount(money: MoneyAmount | undefined, field: string, rail: "mpesa" | "card"): bigint {
  if (rail === "mpesa") return mpesaAmount(money, field);
  if (!money) throw fieldError(field, "is required");
  assertCurrency(money.currency, `${field}.currency`);
  if (money.amountMinor <= 0n) throw fieldError(field, "must be greater than zero");
  const max = CARD_MAX_MINOR[money.currency];
  if (money.amountMinor > max) throw fieldError(field, `a card tip is at most ${formatMoney(max, money.currency)}`);
  return money.amountMinor;
}

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

/** `value` if it fits the contracts' int64; a RangeError (a bug: inputs are bounded) otherwise. */
export function checkedInt64(value: bigint, what: string): bigint {
  if (value > INT64_MAX || value < INT64_MIN) throw new RangeError(`${what} overflows int64: ${value}`);
  return value;
}

/**
 * a * num / den rounded half away from zero, exactly (BigInt only). The one
 * rounding rule of the ledger: fees, conversions and shares all go through it
 * or through plain floor division where a rule says so.
 */
export function mulDivRound(a: bigint, num: bigint, den: bigint): bigint {
  if (den <= 0n) throw new RangeError("denominator must be positive");
  const product = a * num;
  const negative = product < 0n;
  const abs = negative ? -product : product;
  const q = (abs * 2n + den) / (den * 2n);
  return negative ? -q : q;
}

/** The contracts' Money message; OUT_OF_RANGE when the amount does not fit int64. */
export function money(amountMinor: bigint, currency: string): Money {
  return create(MoneySchema, { amountMinor: checkedInt64(amountMinor, `${currency} amount`), currency });
}
