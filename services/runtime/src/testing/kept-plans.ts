// The plans a connection keeps for the statements a piece of code sends: a plan test
// runs the code once on a connection that keeps generic plans from the first call
// (as a pooled connection does after five calls), then asks EXPLAIN EXECUTE for each.
import assert from "node:assert/strict";
import type { Pool, Queryable } from "../db.js";

/** One node of EXPLAIN (FORMAT JSON)'s plan: the fields plan tests read. */
export interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

/** A statement sent (whitespace folded, first 40 characters), its kept plan's scans of the tables asked about, and the whole plan. */
export interface KeptPlan {
  statement: string;
  reads: PlanNode[];
  plan: PlanNode;
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

/** A parameter's value as a literal for EXECUTE (EXPLAIN EXECUTE takes no bound parameters). */
function literal(escape: (s: string) => string, value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (Buffer.isBuffer(value)) return `'\\x${value.toString("hex")}'`;
  if (value instanceof Date) return escape(value.toISOString());
  if (Array.isArray(value)) return escape(`{${value.map(arrayElement).join(",")}}`);
  return escape(String(value));
}

function arrayElement(value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  const text = Buffer.isBuffer(value) ? `\\x${value.toString("hex")}` : value instanceof Date ? value.toISOString() : String(value);
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * Runs `code` on a connection of its own that keeps generic plans, and answers, for each statement
 * it sent, the scans of `tables` (by name, without schema) in the plan the connection keeps. An
 * UPDATE's ModifyTable names its table too, and reads it through one of these scans.
 */
export async function keptPlans(pool: Pool, tables: ReadonlySet<string>, code: (db: Queryable) => Promise<unknown>): Promise<KeptPlan[]> {
  const client = await pool.connect();
  const sent: { text: string; values: unknown[] }[] = [];
  const recording = { query: ((text: string, values: unknown[]) => (sent.push({ text, values }), client.query(text, values))) as Queryable["query"] };
  try {
    await client.query("SET plan_cache_mode = force_generic_plan");
    await code(recording);
    const out: KeptPlan[] = [];
    for (const { text, values } of sent) {
      const { rows } = await client.query<{ name: string }>("SELECT name FROM pg_prepared_statements WHERE statement = $1", [text]);
      assert.equal(rows.length, 1, `prepared: ${text.slice(0, 60)}`);
      const args = values.map((v) => literal((s) => client.escapeLiteral(s), v)).join(", ");
      const { rows: plan } = await client.query(`EXPLAIN (FORMAT JSON) EXECUTE "${rows[0].name}"(${args})`);
      const root = (plan[0]["QUERY PLAN"] as { Plan: PlanNode }[])[0].Plan;
      const reads = nodes(root).filter((n) => tables.has(n["Relation Name"] ?? "") && n["Node Type"].endsWith("Scan"));
      out.push({ statement: text.replace(/\s+/g, " ").slice(0, 40), reads, plan: root });
    }
    return out;
  } finally {
    await client.query("RESET plan_cache_mode");
    client.release();
  }
}
