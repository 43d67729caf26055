// What the reads of tips and payouts share: the console's filters built into numbered parameters,
// and keyset pages, newest first.
import { keysetTime, type Queryable } from "@ttip/runtime";
import type { Cursor, PageRow } from "./page.js";

/** Filters both searches share; empty ones match all. The caller has checked that the ranges make sense. */
export interface CommonSearch {
  from?: Date;
  to?: Date;
  minAmountMinor: bigint;
  maxAmountMinor: bigint;
  resultCode: string;
  workerId: string;
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
  where(): string {
    return this.clauses.length ? `WHERE ${this.clauses.join(" AND ")}` : "";
  }
  next(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
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
  if (cursor) f.add(`(created_at, ${idColumn}) < (?::timestamptz, ?::uuid)`, cursor.at, cursor.id);
  const { rows } = await db.query<PageRow<R>>(
    `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.${table} ${f.where()} ORDER BY created_at DESC, ${idColumn} DESC LIMIT ${f.next(limit)}`,
    f.params,
  );
  return rows;
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
  const { rows } = await db.query<PageRow<R>>(
    `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.${table} WHERE worker_id = $1 AND ($2::text IS NULL OR status = $2)
       AND ($3::timestamptz IS NULL OR (created_at, ${idColumn}) < ($3::timestamptz, $4::uuid))
     ORDER BY created_at DESC, ${idColumn} DESC LIMIT $5`,
    [workerId, status, cursor?.at ?? null, cursor?.id ?? null, limit],
  );
  return rows;
}
