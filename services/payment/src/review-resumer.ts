// Held tips' reviews left part way: an approval or a rejection claimed (the decision taken) whose wallet calls
// or record did not finish (the process stopped between its steps, or the wallet failed). Until now such a tip
// stayed held until an admin acted again. Each pass finishes a bounded number of claims older than a grace (an
// admin's review still under way finishes its own), oldest first, each exactly as an admin's action again would:
// every wallet call posts once by its key, one record wins.
import { clockOf } from "@ttip/runtime";
import { claimApproval, finishApproval } from "./approvals.js";
import { claimRejection, finishRejection } from "./rejections.js";
import { type ClaimedTip, dueReviewClaims } from "./stores/review-claims.js";
import { type Deps, runAfterCredit, type TipRow } from "./tips.js";

/** How long a claim is left to the review that took it (default): far beyond a review's wallet deadlines. */
export const REVIEW_CLAIM_GRACE_MS = 2 * 60_000;

/** Finishes up to `limit` claims left unfinished; answers how many tips it ended. */
export async function resumeReviewClaims(deps: Deps, limit: number): Promise<number> {
  const now = clockOf(deps.ctx).now();
  const grace = deps.config().reviewClaimGraceMs ?? REVIEW_CLAIM_GRACE_MS;
  const due = await dueReviewClaims(deps.ctx.pool, new Date(now - grace), new Date(now), limit);
  let ended = 0;
  for (const tip of due) {
    try {
      const t = await resumeClaim(deps, tip);
      if (!t) continue;
      ended++;
      deps.changes.announce(t.tip_id);
      if (t.status === "succeeded") runAfterCredit(deps, t);
    } catch (err) {
      // Refused (the wallet's key decided otherwise: the claim given up) or failing again: logged, tried next pass.
      deps.ctx.logger.warn({ tipId: tip.tip_id, err }, "a held tip's review claim could not be finished");
    }
  }
  return ended;
}

/** A rejection claimed goes first: its close of the approval's key decides between the two when both were claimed. */
async function resumeClaim(deps: Deps, tip: ClaimedTip): Promise<TipRow | undefined> {
  if (tip.rejection_claim) {
    const claimed = await claimRejection(deps, tip);
    return claimed && finishRejection(deps, claimed);
  }
  const claimed = await claimApproval(deps, tip.tip_id);
  return claimed && finishApproval(deps, claimed);
}
