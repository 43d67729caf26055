// A failed test in one line, for the end of the runner's output: CI keeps that end, where the
// spec reporter's failing list (with each error) may not reach.
import path from "node:path";

/** What the runner's test:fail event says of a test (or a suite whose hook threw). */
export interface FailedTest {
  name: string;
  file?: string;
  details: { error?: unknown };
}

/** `file: name: ` and the error's first three non-empty lines, at most 300 characters of them. */
export function failureLine(t: FailedTest, root: string): string {
  const error = t.details.error as (Error & { cause?: unknown }) | undefined;
  // The runner wraps what a test threw (its cause); a cancelled test's own error says why it stopped.
  const cause = error?.cause ?? error;
  const lines = (cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)).split("\n").filter((l) => l.trim());
  return `${t.file ? path.relative(root, t.file) : "?"}: ${t.name}: ${lines.slice(0, 3).join(" | ").slice(0, 300)}`;
}
