// PostgreSQL's refusals that would come again: the same statement with the same values, sent
// again, is refused the same way. Trying it again only holds what waits behind it.

/** SQLSTATE classes (PostgreSQL appendix A) whose refusal does not pass, by class name for the log. */
const REPEATING_CLASSES: Readonly<Record<string, string>> = {
  "0A": "feature_not_supported",
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
// Not the rest: a lost connection (08), a conflict with another transaction (40), a shortage of
// memory, disk or connections (53), an operator's or a shutdown's cancel (57), a failing disk (58),
// PostgreSQL's own error (XX), and any error that is not PostgreSQL's answer (no SQLSTATE: the
// connection lost on this side, a pool's timeout) may pass: they stay for the caller to try again.

export interface RepeatingRefusal {
  sqlstate: string;
  condition: string;
}

/**
 * The refusal `err` reports, if it is PostgreSQL's answer (a pg DatabaseError, checked by shape:
 * more than one copy of pg may be loaded) with a SQLSTATE in a class that does not pass.
 */
export function repeatingRefusalOf(err: unknown): RepeatingRefusal | undefined {
  if (!(err instanceof Error) || !("severity" in err)) return undefined;
  const sqlstate = (err as { code?: unknown }).code;
  if (typeof sqlstate !== "string" || sqlstate.length !== 5) return undefined;
  const condition = REPEATING_CLASSES[sqlstate.slice(0, 2)];
  return condition ? { sqlstate, condition } : undefined;
}
