// PostgreSQL's refusals of a statement that lost to a concurrent transaction.
// Its transaction was rolled back: the same call, sent again (with the same
// idempotency key), can succeed. They are not bugs, so
// errorInterceptor answers them ABORTED, not INTERNAL.

/** SQLSTATE → condition name (PostgreSQL appendix A), for the log. */
const CONFLICT_SQLSTATES: Readonly<Record<string, string>> = {
  "40001": "serialization_failure",
  "40P01": "deadlock_detected",
  // FOR UPDATE NOWAIT, or a lock_timeout (neither set by the services today).
  "55P03": "lock_not_available",
};
// Not 57014 (query_canceled): no service sets statement_timeout, so here it
// means a statement an operator or a shutdown cancelled, which stays INTERNAL.

export interface DatabaseConflict {
  sqlstate: string;
  condition: string;
}

/**
 * The conflict `err` reports, if it is a pg DatabaseError with one of those
 * SQLSTATEs (checked by shape: more than one copy of pg may be loaded).
 */
export function databaseConflictOf(err: unknown): DatabaseConflict | undefined {
  if (!(err instanceof Error) || !("severity" in err)) return undefined;
  const sqlstate = (err as { code?: unknown }).code;
  if (typeof sqlstate !== "string" || !Object.hasOwn(CONFLICT_SQLSTATES, sqlstate)) return undefined;
  return { sqlstate, condition: CONFLICT_SQLSTATES[sqlstate] };
}
