// Withdrawal limits per KYC tier and currency; holds read them when money leaves a wallet.
import type { Queryable } from "@ttip/runtime";

export interface TierLimits {
  tier: number;
  currency: string;
  perTransactionMinor: bigint;
  dailyMinor: bigint;
  monthlyMinor: bigint;
}

/** Sets a tier's limits in one currency, replacing what was there. */
export async function putTierLimits(db: Queryable, l: TierLimits): Promise<void> {
  await db.query(
    `INSERT INTO wallet.tier_limits (tier, currency, per_transaction_minor, daily_minor, monthly_minor) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (tier, currency) DO UPDATE SET per_transaction_minor = $3, daily_minor = $4, monthly_minor = $5, updated_at = now()`,
    [l.tier, l.currency, l.perTransactionMinor, l.dailyMinor, l.monthlyMinor],
  );
}
