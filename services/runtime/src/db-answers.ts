// What PostgreSQL's error answers mean for the caller, told by their SQLSTATE (appendix A):
// a conflict with a concurrent transaction (the same call again can succeed), a refusal that
// would come again (trying again only holds what waits behind it), and an answer that ended its
// session (the outcome of what was sent is unknown). pg exposes only the severity PostgreSQL
// translates under lc_messages ("FEHLER", "ERREUR" for ERROR; "SCHWERWIEGEND" for FATAL), not
// the untranslated one (the V field), so a check for "ERROR" or "FATAL" alone misreads every
// answer of a server whose messages are not in English.

/** An error answer PostgreSQL gave, by its SQLSTATE and condition name (for the log). */
export interface DatabaseAnswer {
  sqlstate: string;
  condition: string;
}

/** `err` is PostgreSQL's answer (a pg DatabaseError, checked by shape: more than one copy of pg may be loaded). */
function answeredByDatabase(err: unknown): err is Error & { severity?: unknown; code?: unknown } {
  return err instanceof Error && "severity" in err;
}

/** The SQLSTATE of PostgreSQL's answer `err`, or undefined when it is not one. */
function sqlstateOf(err: unknown): string | undefined {
  if (!answeredByDatabase(err)) return undefined;
  return typeof err.code === "string" && err.code.length === 5 ? err.code : undefined;
}

// ---- Conflicts: the statement lost to a concurrent transaction. Its transaction was rolled
// back: the same call, sent again (with the same idempotency key), can succeed. They are not
// bugs, so errorInterceptor answers them ABORTED, not INTERNAL.

/** SQLSTATE -> condition name. */
const CONFLICT_SQLSTATES: Readonly<Record<string, string>> = {
  "40001": "serialization_failure",
  "40P01": "deadlock_detected",
  // FOR UPDATE NOWAIT, or a lock_timeout (migrations set one; so does payment's admin re-query, which answers it as busy).
  "55P03": "lock_not_available",
};
// Not 57014 (query_canceled): no service sets statement_timeout, so here it
// means a statement an operator or a shutdown cancelled, which stays INTERNAL.

/** The conflict `err` reports, if it is PostgreSQL's answer with one of those SQLSTATEs. */
export function databaseConflictOf(err: unknown): DatabaseAnswer | undefined {
  const sqlstate = sqlstateOf(err);
  if (sqlstate === undefined || !Object.hasOwn(CONFLICT_SQLSTATES, sqlstate)) return undefined;
  return { sqlstate, condition: CONFLICT_SQLSTATES[sqlstate] };
}

// ---- Repeating refusals: the same statement with the same values, sent again, is refused the same way.

/** SQLSTATE classes whose refusal does not pass, by class name for the log. */
const REPEATING_CLASSES: Readonly<Record<string, string>> = {
  "21": "cardinality_violation",
  "22": "data_exception", // a bad value: a NUL in a text, a number out of range, bad input syntax
  "23": "integrity_constraint_violation", // NOT NULL, CHECK, foreign and unique keys
  "2F": "sql_routine_exception",
  "38": "external_routine_exception",
  "39": "external_routine_invocation_exception",
  "42": "syntax_error_or_access_rule_violation", // a column, table or privilege the database does not have
  "44": "with_check_option_violation",
  "54": "program_limit_exceeded", // a statement too large or too complex
  "P0": "plpgsql_error", // a trigger's RAISE
};
// Not the rest: a prepared plan a migration outdated (0A000: its connection is dropped, see below), a lost connection (08), a conflict with another transaction (40), a shortage of
// memory, disk or connections (53), an operator's or a shutdown's cancel (57), a failing disk (58),
// PostgreSQL's own error (XX), and any error that is not PostgreSQL's answer (no SQLSTATE: the
// connection lost on this side, a pool's timeout) may pass: they stay for the caller to try again.

/** The refusal `err` reports, if it is PostgreSQL's answer with a SQLSTATE in a class that does not pass. */
export function repeatingRefusalOf(err: unknown): DatabaseAnswer | undefined {
  const sqlstate = sqlstateOf(err);
  if (sqlstate === undefined) return undefined;
  const condition = REPEATING_CLASSES[sqlstate.slice(0, 2)];
  return condition ? { sqlstate, condition } : undefined;
}

// ---- Answers that end the session.

/**
 * SQLSTATE classes PostgreSQL ends a session with (FATAL or PANIC): connection exceptions, invalid
 * authorization, insufficient resources, operator intervention (a shutdown, a terminated backend,
 * an idle session timeout), system errors and internal errors. Some of their codes also come as a
 * plain ERROR (57014, a cancelled statement; 53200, out of memory): taking those for a session's
 * end costs a new connection, or a look at what the statement left, never a wrong outcome.
 */
const SESSION_ENDING_CLASSES: ReadonlySet<string> = new Set(["08", "28", "53", "57", "58", "XX"]);

/**
 * Codes of other classes PostgreSQL ends a session with: idle_in_transaction_session_timeout, and a
 * database that no longer exists. And one that leaves the session unusable for a statement: "cached
 * plan must not change result type" (0A000, after a migration changed a table a prepared statement
 * reads) comes again on every run of that statement on that connection; on a new one it is
 * prepared afresh.
 */
const SESSION_ENDING_CODES: ReadonlySet<string> = new Set(["25P03", "3D000", "0A000"]);

/** PostgreSQL's error answer `err` ended its session (FATAL or PANIC), or may have: the connection is not to be used again. */
export function endsSession(err: unknown): boolean {
  if (!answeredByDatabase(err)) return false;
  // In English the severity says so; in another language only the SQLSTATE can.
  if (err.severity === "FATAL" || err.severity === "PANIC") return true;
  const code = sqlstateOf(err);
  if (code === undefined) return true;
  return SESSION_ENDING_CLASSES.has(code.slice(0, 2)) || SESSION_ENDING_CODES.has(code);
}

/**
 * PostgreSQL refused the statement with an ERROR and its session goes on: the statement's
 * transaction rolled back, nothing it wrote was kept. Anything else (no answer, a connection
 * lost, a FATAL as the server shuts down) may have come after a commit: the outcome is unknown.
 */
export function refusedStatement(err: unknown): boolean {
  return answeredByDatabase(err) && !endsSession(err);
}
