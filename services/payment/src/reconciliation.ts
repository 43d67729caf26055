// One reconciliation pass: the one the service runs on its interval and the one ReconcilePending asks for.
import { resumeUnfinishedRefunds } from "./cards/aftercare.js";
import { replayStoredStkCallbacks } from "./callbacks.js";
import { cancelDueAuthorisations } from "./cards/cancels.js";
import { reconcileCardTips } from "./cards/tips.js";
import { followUpReversals } from "./mpesa-reversals.js";
import { reconcilePayouts, startDueAutoPayouts } from "./payouts.js";
import { resumeReviewClaims } from "./review-resumer.js";
import { reconcileTips, type Deps, type ReconcileCounts } from "./tips.js";

/**
 * M-Pesa tips (queries, credits, paybill confirmations, receipts), STK callbacks stored and never decided, payouts, card tips, card authorisations left to
 * cancel, card refunds left debited, M-Pesa reversals left unsent or unanswered, review claims left by a stopped process, then automatic payouts that are due (a new payout
 * number's cooling-off held them back, or an open payout deferred them). Each step runs whatever another failed on (a tip whose recording PostgreSQL refuses on every try
 * would otherwise stop every pass before payouts, card tips and reviews); the pass fails after, with the first error.
 */
export async function reconcileAll(deps: Deps, limit: number): Promise<ReconcileCounts> {
  const failures: unknown[] = [];
  const step = <T>(run: () => Promise<T>) => run().catch((err: unknown) => void failures.push(err));
  const counts = await step(() => reconcileTips(deps, limit));
  await step(() => replayStoredStkCallbacks(deps, limit));
  await step(() => reconcilePayouts(deps, limit));
  const cards = await step(() => reconcileCardTips(deps, limit));
  await step(() => cancelDueAuthorisations(deps, limit));
  await step(() => resumeUnfinishedRefunds(deps, limit));
  await step(() => followUpReversals(deps, limit));
  await step(() => resumeReviewClaims(deps, limit));
  await step(() => startDueAutoPayouts(deps, limit));
  if (failures.length) throw failures[0];
  return { queried: counts!.queried + cards!.checked, settled: counts!.settled + cards!.settled, stillPending: counts!.stillPending };
}
