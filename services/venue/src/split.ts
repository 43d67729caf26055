// How a period's takings are cut into shares. Pure functions over integers:
// the property test drives them with random rosters, and the service posts
// exactly what they return.

export { REMAINDER_RULE } from "./rounding-rule.js";

export interface Cut {
  amounts: bigint[];
  /** Minor units each member got from the left-over units (0 or one unit). */
  fromRemainder: bigint[];
  unit: bigint;
}

/**
 * Largest-remainder split of `amount` by `weights` (in the order given,
 * which breaks the last ties: callers order members by joining date).
 * Whole shillings when `amount` is a whole number of `wholeUnit`.
 */
export function cutByWeights(amount: bigint, weights: bigint[], wholeUnit = 100n): Cut {
  if (amount < 0n) throw new RangeError("amount must not be negative");
  if (weights.some((w) => w < 0n)) throw new RangeError("weights must not be negative");
  const total = weights.reduce((s, w) => s + w, 0n);
  if (total === 0n) throw new RangeError("at least one weight must be positive");
  const unit = wholeUnit > 0n && amount % wholeUnit === 0n ? wholeUnit : 1n;
  const units = amount / unit;
  const base = weights.map((w) => (units * w) / total);
  const lost = weights.map((w) => (units * w) % total);
  let left = units - base.reduce((s, b) => s + b, 0n);
  // Invariant of floor division: fewer left-over units than members with weight.
  if (left < 0n || left >= BigInt(weights.filter((w) => w > 0n).length || 1)) throw new Error(`remainder ${left} out of range`);
  const order = weights
    .map((w, i) => i)
    .filter((i) => weights[i] > 0n)
    .sort((a, b) => (lost[a] !== lost[b] ? (lost[b] > lost[a] ? 1 : -1) : weights[a] !== weights[b] ? (weights[b] > weights[a] ? 1 : -1) : a - b));
  const extra = weights.map(() => 0n);
  for (const i of order) {
    if (left === 0n) break;
    extra[i] = 1n;
    left--;
  }
  return { amounts: base.map((b, i) => (b + extra[i]) * unit), fromRemainder: extra.map((e) => e * unit), unit };
}
