// An admin's re-query of one tip or payout waits for its row while a callback or a reconciliation pass holds it
// (their transactions take milliseconds), rather than skipping it as a pass skips a row another holds: skipped, the
// re-query would answer with nothing asked and no lease to tell of. Past a short wait it answers "busy".
import { databaseConflictOf, InvalidStateError, type Queryable } from "@ttip/runtime";

/** How long a re-query waits for a row another transaction holds. */
export const REQUERY_LOCK_WAIT_MS = 3_000;

/** In the re-query's transaction `tx`: its statements wait at most REQUERY_LOCK_WAIT_MS for a lock. */
export async function waitBrieflyForLocks(tx: Queryable): Promise<void> {
  await tx.query(`SET LOCAL lock_timeout = ${REQUERY_LOCK_WAIT_MS}`);
}

/** Runs a re-query; its row held past the wait is FAILED_PRECONDITION naming `field`, to be tried again, nothing changed. */
export async function busyWhenHeld<T>(field: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (databaseConflictOf(err)?.sqlstate !== "55P03") throw err;
    throw new InvalidStateError(`${field}: busy: a callback or a reconciliation pass is changing it at this moment; try again in a few seconds`);
  }
}
