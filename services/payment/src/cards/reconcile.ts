// Balance reconciliation: the provider's balance transactions (charges,
// refunds, dispute adjustments, payouts) matched against what TTIP recorded,
// with the provider's fees posted to the ledger once each. What still matches
// nothing of ours once its grace is over (our record may come later than the
// provider's transaction) is kept (card_balance_transactions, matched = false)
// and raised for an admin.
import { clockOf, withTransaction } from "@ttip/runtime";
import { recordAlert } from "../fraud.js";
import type { Deps } from "../tips.js";
import { UNMATCHED_GRACE_MS } from "./config.js";
import type { BalanceTransaction, CardProviderName } from "./provider.js";

export interface BalanceCounts {
  matched: number;
  feesRecorded: number;
  unmatched: number;
  payouts: number;
}

/** Which of our records a balance transaction belongs to, by its source id. */
async function match(deps: Deps, t: BalanceTransaction): Promise<boolean> {
  const { pool } = deps.ctx;
  const one = async (sql: string) => ((await pool.query(sql, [t.sourceId])).rowCount ?? 0) > 0;
  if (t.type === "charge" || t.type === "payment") return one("SELECT 1 FROM payment.tips WHERE provider_charge_id = $1");
  if (t.type === "refund" || t.type === "payment_refund" || t.type === "refund_failure") return one("SELECT 1 FROM payment.card_refunds WHERE provider_refund_id = $1");
  if (t.type === "adjustment") return one("SELECT 1 FROM payment.card_disputes WHERE dispute_id = $1");
  // A payout moves our own balance to our bank: ours by definition; counted, compared by total below.
  return t.type === "payout";
}

export async function reconcileCardBalance(deps: Deps, providerName: CardProviderName, limit: number): Promise<BalanceCounts> {
  const counts: BalanceCounts = { matched: 0, feesRecorded: 0, unmatched: 0, payouts: 0 };
  const provider = deps.cards?.provider(providerName);
  if (!provider?.balanceTransactions) return counts;
  const { pool, logger } = deps.ctx;
  const graceMs = deps.config().cards!.unmatchedGraceMs ?? UNMATCHED_GRACE_MS;
  let seen = 0;
  let waiting = false;
  while (seen < limit && !waiting) {
    const cursor = (await pool.query<{ last_txn_id: string }>("SELECT last_txn_id FROM payment.card_reconcile_cursor WHERE provider = $1", [providerName])).rows[0]?.last_txn_id;
    const page = await provider.balanceTransactions(cursor, Math.min(100, limit - seen));
    if (!page.length) break;
    for (const t of page) {
      const ours = await match(deps, t);
      // Ours, perhaps, not recorded yet: the pass stops before it (the cursor too), and the next looks again.
      if (!ours && clockOf(deps.ctx).now() - t.created.getTime() < graceMs) {
        logger.info({ provider: providerName, txnId: t.id, type: t.type, sourceId: t.sourceId }, "balance transaction matches nothing yet; looked at again next pass");
        waiting = true;
        break;
      }
      const feeKey = t.feeMinor !== 0n && ours ? `${providerName}-fee:${t.id}` : null;
      // The fee first (idempotent on its key), then the row: a crash in between posts nothing twice.
      if (feeKey) await deps.cards!.ledger.providerFee(feeKey, providerName, t.currency, t.feeMinor, `${t.type} ${t.sourceId}`);
      const inserted = await withTransaction(pool, async (tx) => {
        const { rowCount } = await tx.query(
          `INSERT INTO payment.card_balance_transactions (provider, txn_id, type, source_id, currency, amount_minor, fee_minor, net_minor, matched, fee_entry_key, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
          [providerName, t.id, t.type, t.sourceId, t.currency, t.amountMinor, t.feeMinor, t.netMinor, ours, feeKey, t.created],
        );
        if (rowCount && !ours) {
          await recordAlert(tx, { reason: "UNKNOWN_CALLBACK", action: "flag",
            detail: `${providerName} balance transaction ${t.id} (${t.type} ${t.sourceId}, ${t.currency} ${t.amountMinor}) matches nothing TTIP recorded` });
        }
        await tx.query(
          `INSERT INTO payment.card_reconcile_cursor (provider, last_txn_id) VALUES ($1, $2)
           ON CONFLICT (provider) DO UPDATE SET last_txn_id = $2, updated_at = now()`,
          [providerName, t.id],
        );
        return (rowCount ?? 0) > 0;
      });
      if (!inserted) continue;
      if (t.type === "payout") counts.payouts++;
      else if (ours) counts.matched++;
      else counts.unmatched++;
      if (feeKey) counts.feesRecorded++;
    }
    seen += page.length;
    if (page.length < 100) break;
  }
  return counts;
}
