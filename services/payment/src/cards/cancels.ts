// Authorisations decided cancelled whose cancel did not reach the provider (a crash or a lost answer after the
// decision committed, and no event redelivered): the reconciliation pass cancels them, so that a refused
// customer's card is not held until the authorisation lapses, days later.
import { clockOf } from "@ttip/runtime";
import type { Deps } from "../tips.js";
import { applyCardPayment, cancelDone, loadCardTip } from "./tips.js";

/** Cancels at most `limit` due authorisations; answers how many it cancelled. */
export async function cancelDueAuthorisations(deps: Deps, limit: number): Promise<number> {
  if (!deps.config().cards || !deps.cards) return 0;
  const { pool, logger } = deps.ctx;
  // Taken by moving their time on (a lease, and the next try's backoff): another replica's pass skips them meanwhile.
  // On the service's clock, as the card tips' pass reads its times.
  const { rows } = await pool.query<{ tip_id: string }>(
    `UPDATE payment.card_cancels_due SET tries = tries + 1, due_at = $2::timestamptz + make_interval(secs => LEAST(600, 30 * 2 ^ LEAST(tries, 5)))
      WHERE tip_id IN (SELECT tip_id FROM payment.card_cancels_due WHERE due_at <= $2 ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
      RETURNING tip_id`,
    [limit, new Date(clockOf(deps.ctx).now())],
  );
  let cancelled = 0;
  for (const { tip_id: tipId } of rows) {
    const tip = await loadCardTip(pool, tipId);
    if (!tip?.provider_payment_id) {
      await cancelDone(pool, tipId);
      continue;
    }
    const provider = deps.cards.provider(tip.card_provider!);
    if (!provider) continue;
    try {
      const payment = await provider.retrieve(tip.provider_payment_id);
      // As for a webhook: an authorisation of an ended or refused tip is cancelled (the same key), a capture credited.
      const result = await applyCardPayment(deps, provider, payment);
      // Not cancelled (the provider's answer in doubt), or still processing: the next try asks again.
      if (result === "pending") continue;
      await cancelDone(pool, tipId);
      if (result === "refused") cancelled++;
    } catch (err) {
      logger.warn({ tipId, err: (err as Error).message }, "card authorisation to cancel not cancelled; next pass retries");
    }
  }
  return cancelled;
}
