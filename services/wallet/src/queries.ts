import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { decimalAmount, decodePageToken, encodePageToken, InvalidStateError, money, nairobiMonthBounds, positionParts, type Queryable } from "@ttip/runtime";
import {
  AccountKind,
  BalanceSchema,
  StatementRowSchema,
  TransactionKind,
  TransactionSchema,
  TrialBalanceLineSchema,
  type Balance,
  type StatementRow,
  type Transaction,
  type TrialBalanceLine,
} from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { causeOf, type AccountRow } from "./ledger.js";

export function toBalance(a: AccountRow): Balance {
  const currency = a.currency.trim();
  return create(BalanceSchema, {
    accountId: a.account_id,
    ledger: money(a.balance_minor, currency),
    held: money(a.held_minor, currency),
    // Never below zero (the contract): a debt from a lost chargeback shows in `ledger`.
    available: money(a.balance_minor - a.held_minor > 0n ? a.balance_minor - a.held_minor : 0n, currency),
  });
}

/** How a line reads in a worker's history, from what caused it and where it landed. */
export function transactionKind(causeKind: string, accountKind: number): TransactionKind {
  switch (causeKind) {
    case "reversedEntryId":
      return TransactionKind.REVERSAL;
    case "adjustmentTicket":
      return TransactionKind.ADJUSTMENT;
    case "payoutId":
      return TransactionKind.PAYOUT;
    case "poolDistributionId":
      return TransactionKind.POOL_SHARE;
    default:
      return accountKind === AccountKind.PLATFORM_FEES ? TransactionKind.FEE : TransactionKind.TIP;
  }
}

const KIND_CAUSES: Record<number, string[]> = {
  [TransactionKind.TIP]: ["tipAttemptId", "mpesaReceipt", "stripePaymentId"],
  [TransactionKind.FEE]: ["tipAttemptId", "mpesaReceipt", "stripePaymentId"],
  [TransactionKind.PAYOUT]: ["payoutId"],
  [TransactionKind.POOL_SHARE]: ["poolDistributionId"],
  [TransactionKind.REVERSAL]: ["reversedEntryId"],
  [TransactionKind.ADJUSTMENT]: ["adjustmentTicket"],
};

/** The position of the last row served (postings.posted_seq, line), from a page token. */
export function decodeHistoryToken(token: string | undefined): { seq: bigint; line: number } | undefined {
  return decodePageToken(token, ([seq, line, ...rest]) => {
    const s = positionParts.integer(seq);
    const l = positionParts.integer(line);
    // line is a smallint: a larger one, compared with the column, was PostgreSQL's out-of-range error (INTERNAL).
    return s !== undefined && l !== undefined && l <= 32_767n && rest.length === 0 ? { seq: s, line: Number(l) } : undefined;
  });
}

interface LineRow {
  entry_id: string;
  line: number;
  amount_minor: bigint;
  currency: string;
  balance_after: bigint;
  memo: string;
  posted_seq: bigint;
  posted_at: Date;
  cause_kind: string;
  cause_ref: string;
  description: string;
  account_kind: number;
}

export interface HistoryFilter {
  accountIds: string[];
  kinds: TransactionKind[];
  from?: Date;
  to?: Date;
  pageSize: number;
  cursor?: { seq: bigint; line: number };
}

/** History newest first, one row per posting on the given accounts, with a keyset cursor. */
export async function listTransactions(db: Queryable, f: HistoryFilter): Promise<{ transactions: Transaction[]; next: string }> {
  const causes = f.kinds.length ? [...new Set(f.kinds.flatMap((k) => KIND_CAUSES[k] ?? []))] : null;
  const { rows } = await db.query<LineRow>(
    `SELECT p.entry_id, p.line, p.amount_minor, p.currency, p.balance_after, p.memo, p.posted_seq, p.posted_at,
            e.cause_kind, e.cause_ref, e.description, a.kind AS account_kind
       FROM wallet.postings p
       JOIN wallet.entries e ON e.entry_id = p.entry_id
       JOIN wallet.accounts a ON a.account_id = p.account_id
      WHERE p.account_id = ANY($1::uuid[])
        AND ($2::text[] IS NULL OR e.cause_kind = ANY($2))
        AND ($3::timestamptz IS NULL OR p.posted_at >= $3)
        AND ($4::timestamptz IS NULL OR p.posted_at < $4)
        AND ($5::bigint IS NULL OR (p.posted_seq, p.line) < ($5, $6))
      ORDER BY p.posted_seq DESC, p.line DESC
      LIMIT $7`,
    [f.accountIds, causes, f.from ?? null, f.to ?? null, f.cursor?.seq ?? null, f.cursor?.line ?? 0, f.pageSize + 1],
  );
  const page = rows.slice(0, f.pageSize);
  const transactions = page
    .map((r) =>
      create(TransactionSchema, {
        entryId: r.entry_id,
        amount: money(r.amount_minor, r.currency.trim()),
        balanceAfter: money(r.balance_after, r.currency.trim()),
        kind: transactionKind(r.cause_kind, r.account_kind),
        description: r.description || r.memo,
        cause: causeOf(r.cause_kind, r.cause_ref),
        postedAt: timestampFromDate(r.posted_at),
      }),
    )
    .filter((t) => !f.kinds.length || f.kinds.includes(t.kind));
  const last = page[page.length - 1];
  return { transactions, next: rows.length > f.pageSize && last ? encodePageToken([last.posted_seq, last.line]) : "" };
}

export interface Statement {
  opening: bigint;
  closing: bigint;
  rows: StatementRow[];
}

export async function statement(db: Queryable, account: AccountRow, year: number, month: number): Promise<Statement> {
  const { start, end } = nairobiMonthBounds(year, month);
  if (start.getTime() > Date.now()) throw new InvalidStateError(`${year}-${String(month).padStart(2, "0")} has not started yet`);
  const currency = account.currency.trim();
  const opening = await db.query<{ balance_after: bigint }>(
    `SELECT balance_after FROM wallet.postings WHERE account_id = $1 AND posted_at < $2 ORDER BY posted_seq DESC, line DESC LIMIT 1`,
    [account.account_id, start],
  );
  // A worker's wallet is owned: every line of it has balance_after, and says so to use the owned lines' time index.
  const { rows } = await db.query<LineRow>(
    `SELECT p.entry_id, p.amount_minor, p.balance_after, p.memo, p.posted_at, e.description
       FROM wallet.postings p JOIN wallet.entries e ON e.entry_id = p.entry_id
      WHERE p.account_id = $1 AND p.posted_at >= $2 AND p.posted_at < $3 AND p.balance_after IS NOT NULL
      ORDER BY p.posted_seq, p.line`,
    [account.account_id, start, end],
  );
  const openingMinor = opening.rows[0]?.balance_after ?? 0n;
  return {
    opening: openingMinor,
    closing: rows.length ? rows[rows.length - 1].balance_after : openingMinor,
    rows: rows.map((r) =>
      create(StatementRowSchema, {
        postedAt: timestampFromDate(r.posted_at),
        entryId: r.entry_id,
        description: r.description || r.memo,
        amount: money(r.amount_minor, currency),
        balanceAfter: money(r.balance_after, currency),
      }),
    ),
  };
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** RFC 4180 CSV (CRLF line ends), amounts as decimals in the account's currency. */
export function statementCsv(s: Statement, currency: string): string {
  const lines = [["posted_at", "entry_id", "description", `amount_${currency}`, `balance_after_${currency}`].join(",")];
  lines.push(["", "", "opening balance", "", decimalAmount(s.opening, currency)].join(","));
  for (const r of s.rows) {
    const at = new Date(Number(r.postedAt!.seconds) * 1000 + Math.floor(r.postedAt!.nanos / 1e6)).toISOString();
    lines.push([at, r.entryId, csvField(r.description), decimalAmount(r.amount!.amountMinor, currency), decimalAmount(r.balanceAfter!.amountMinor, currency)].join(","));
  }
  lines.push(["", "", "closing balance", "", decimalAmount(s.closing, currency)].join(","));
  return `${lines.join("\r\n")}\r\n`;
}

/**
 * Sums every posting per currency up to `asOf`. Also checks each account's
 * kept balance against the sum of its postings: a mismatch would mean a lost
 * update, and makes the ledger unbalanced.
 */
export async function trialBalance(db: Queryable, asOf?: Date): Promise<{ lines: TrialBalanceLine[]; balanced: boolean }> {
  const { rows } = await db.query<{ currency: string; debits: bigint; credits: bigint; accounts: bigint }>(
    `SELECT currency,
            coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::bigint AS debits,
            coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::bigint AS credits,
            count(DISTINCT account_id)::bigint AS accounts
       FROM wallet.postings WHERE ($1::timestamptz IS NULL OR posted_at <= $1)
      GROUP BY currency ORDER BY currency`,
    [asOf ?? null],
  );
  let balanced = true;
  if (!asOf) {
    const drift = await db.query(
      `SELECT a.account_id FROM wallet.accounts a
         LEFT JOIN (SELECT account_id, sum(amount_minor) AS total FROM wallet.postings GROUP BY account_id) p USING (account_id)
        WHERE NOT a.may_go_negative AND a.balance_minor <> coalesce(p.total, 0) LIMIT 1`,
    );
    if (drift.rows.length) balanced = false;
  }
  const lines = rows.map((r) => {
    if (r.debits !== r.credits) balanced = false;
    return create(TrialBalanceLineSchema, {
      currency: r.currency.trim(),
      totalDebitsMinor: r.debits,
      totalCreditsMinor: r.credits,
      netMinor: r.credits - r.debits,
      accountCount: r.accounts,
    });
  });
  return { lines, balanced };
}
