// An admin's re-query of one tip or payout waits for its row while a callback or a reconciliation pass holds it
// (their transactions take milliseconds), rather than skipping it as a pass skips a row another holds: skipped, the
// re-query would answer with nothing asked and no lease to tell of. Past a short wait it answers "busy". And when
// M-Pesa could not be asked, the re-query says so rather than answering as if it had been.
import { databaseConflictOf, DependencyUnavailableError, InvalidStateError, type Queryable } from "@ttip/runtime";
import { DarajaError } from "./daraja/client.js";

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

/**
 * The error an admin's re-query answers when its query to M-Pesa failed (`err`, from the step that asked): M-Pesa's
 * refusal is FAILED_PRECONDITION saying what it said, no answer UNAVAILABLE; either way nothing was learnt, and the
 * reconciliation pass asks again later. Anything else is rethrown as it is (our own failure).
 */
export function requeryFailure(field: string, query: string, err: unknown): Error {
  if (!(err instanceof DarajaError)) return err instanceof Error ? err : new Error(String(err));
  const retry = "nothing was learnt; the reconciliation pass asks again later";
  if (err.kind === "rejected") return new InvalidStateError(`${field}: M-Pesa refused the ${query}: ${err.message}; ${retry}`);
  return new DependencyUnavailableError(`${field}: M-Pesa did not answer the ${query} (${err.message}); ${retry}, or try again in a minute`);
}
