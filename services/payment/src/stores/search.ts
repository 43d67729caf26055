// What the reads of tips and payouts share: the console's filters built into numbered parameters,
// and keyset pages, newest first.
import type { Queryable } from "@ttip/runtime";
import { keysetRows, type Cursor, type PageRow } from "./page.js";

/** Filters both searches share; empty ones match all. The caller has checked that the ranges make sense. */
export interface CommonSearch {
  from?: Date;
  to?: Date;
  minAmountMinor: bigint;
  maxAmountMinor: bigint;
  resultCode: string;
  workerId: string;
  /** ISO 4217; empty for every currency. */
  currency: string;
  /** The row's status code; undefined for any (null matches none). */
  status?: string | null;
}

/** WHERE clauses with numbered parameters, built one filter at a time. */
export class Filters {
  readonly params: unknown[] = [];
  private readonly clauses: string[] = [];
  add(sql: string, ...values: unknown[]): void {
    let i = this.params.length;
    this.params.push(...values);
    this.clauses.push(sql.replace(/\?/g, () => `$${++i}`));
  }
  /** Every filter, joined; "true" when there is none. */
  conditions(): string {
    return this.clauses.length ? this.clauses.join(" AND ") : "true";
  }
}

export function commonFilters(s: CommonSearch): Filters {
  const f = new Filters();
  if (s.from) f.add("created_at >= ?", s.from);
  if (s.to) f.add("created_at < ?", s.to);
  if (s.minAmountMinor) f.add("amount_minor >= ?", s.minAmountMinor.toString());
  if (s.maxAmountMinor) f.add("amount_minor <= ?", s.maxAmountMinor.toString());
  if (s.resultCode) f.add("result_code = ?", s.resultCode);
  if (s.workerId) f.add("worker_id = ?::uuid", s.workerId);
  if (s.currency) f.add("currency = ?", s.currency);
  if (s.status !== undefined) f.add("status = ?", s.status);
  return f;
}

/** Up to `limit` rows of the table that pass the filters and lie past the cursor, newest first. */
export async function searchPage<R extends object>(
  db: Queryable,
  table: "tips" | "payouts",
  idColumn: "tip_id" | "payout_id",
  f: Filters,
  cursor: Cursor,
  limit: number,
): Promise<PageRow<R>[]> {
  return keysetRows<R>(db, { table, time: "created_at", id: idColumn, where: f.conditions(), params: f.params }, cursor, limit);
}

/** Up to `limit` of one worker's rows of the table, filtered by status code (null = any), past the cursor, newest first. */
export async function workerPage<R extends object>(
  db: Queryable,
  table: "tips" | "payouts",
  idColumn: "tip_id" | "payout_id",
  workerId: string,
  status: string | null | undefined,
  cursor: Cursor,
  limit: number,
): Promise<PageRow<R>[]> {
  return keysetRows<R>(db, { table, time: "created_at", id: idColumn, where: "worker_id = $1 AND ($2::text IS NULL OR status = $2)", params: [workerId, status] }, cursor, limit);
}
