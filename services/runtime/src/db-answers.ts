// Whether PostgreSQL's error answer ended its session, told by its SQLSTATE. pg exposes only the
// severity PostgreSQL translates under lc_messages ("FEHLER", "ERREUR" for ERROR; "SCHWERWIEGEND"
// for FATAL), not the untranslated one (the V field), so a check for "ERROR" or "FATAL" alone
// misreads every answer of a server whose messages are not in English.

/**
 * SQLSTATE classes PostgreSQL ends a session with (FATAL or PANIC): connection exceptions, invalid
 * authorization, insufficient resources, operator intervention (a shutdown, a terminated backend,
 * an idle session timeout), system errors and internal errors. Some of their codes also come as a
 * plain ERROR (57014, a cancelled statement; 53200, out of memory): taking those for a session's
 * end costs a new connection, or a look at what the statement left, never a wrong outcome.
 */
const SESSION_ENDING_CLASSES: ReadonlySet<string> = new Set(["08", "28", "53", "57", "58", "XX"]);

/** Codes of other classes PostgreSQL ends a session with: idle_in_transaction_session_timeout, and a database that no longer exists. */
const SESSION_ENDING_CODES: ReadonlySet<string> = new Set(["25P03", "3D000"]);

/** `err` is PostgreSQL's answer (a pg DatabaseError, checked by shape: more than one copy of pg may be loaded). */
function answeredByDatabase(err: unknown): err is Error & { severity?: unknown; code?: unknown } {
  return err instanceof Error && "severity" in err;
}

/** PostgreSQL's error answer `err` ended its session (FATAL or PANIC), or may have: the connection is not to be used again. */
export function endsSession(err: unknown): boolean {
  if (!answeredByDatabase(err)) return false;
  // In English the severity says so; in another language only the SQLSTATE can.
  if (err.severity === "FATAL" || err.severity === "PANIC") return true;
  const code = err.code;
  if (typeof code !== "string" || code.length !== 5) return true;
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
