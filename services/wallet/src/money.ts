import { fieldError, minorDigits, mulDivRound } from "@ttip/runtime";

/** An exact decimal string ("129.4500") as integer / 10^scale. */
export function parseDecimal(text: string, field: string): { units: bigint; scale: bigint } {
  const m = /^(\d{1,12})(?:\.(\d{1,12}))?$/.exec(text);
  if (!m) throw fieldError(field, `"${text}" is not a positive decimal like 129.45`);
  const frac = m[2] ?? "";
  const units = BigInt(m[1] + frac);
  if (units === 0n) throw fieldError(field, "must be greater than zero");
  return { units, scale: 10n ** BigInt(frac.length) };
}

/**
 * Converts minor units of one currency to another at `rate` (units of `to`
 * per one unit of `from`), rounding half away from zero to `to`'s minor unit.
 */
export function convertMinor(amountMinor: bigint, from: string, to: string, rate: string): bigint {
  const { units, scale } = parseDecimal(rate, "rate");
  const shift = minorDigits(to) - minorDigits(from);
  const num = units * (shift >= 0 ? 10n ** BigInt(shift) : 1n);
  const den = scale * (shift < 0 ? 10n ** BigInt(-shift) : 1n);
  return mulDivRound(amountMinor, num, den);
}
