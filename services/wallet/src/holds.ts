import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AlreadyExistsError, b2cFee, buildEvent, type BusMessage, decimalAmount, DomainError, fieldError, IdempotencyConflictError, InsufficientFundsError, InvalidStateError, money, MPESA_LIMITS, NAIROBI_OFFSET_MS, NotFoundError, optionalTimestamp, outboxCte, type Queryable } from "@ttip/runtime";
import { PayoutHeldSchema, PayoutReleasedSchema, PayoutSettledSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  AccountKind,
  HoldSchema,
  HoldStatus,
  LimitKind,
  OwnerKind,
  UserTier,
  WithdrawalLimitSchema,
  type Hold,
  type JournalEntry,
  type WithdrawalLimit,
} from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { causeOf, getAccount, loadEntry, postEntry, systemAccount, type AccountRow } from "./ledger.js";
import { currentSchedule } from "./fees.js";

interface HoldRow {
  hold_id: string;
  account_id: string;
  amount_minor: bigint;
  currency: string;
  payout_id: string;
  idempotency_key: string;
  status: number;
  settle_entry_id: string | null;
  reason: string;
  created_at: Date;
  resolved_at: Date | null;
}

/** Every column of wallet.holds, named so that the statements naming them are prepared (the runtime's db.ts). */
const HOLD_COLUMNS = "hold_id, account_id, amount_minor, currency, payout_id, idempotency_key, status, settle_entry_id, reason, created_at, resolved_at";

function toHold(r: HoldRow): Hold {
  return create(HoldSchema, {
    holdId: r.hold_id,
    accountId: r.account_id,
    amount: money(r.amount_minor, r.currency.trim()),
    payoutId: r.payout_id,
    status: r.status,
    createdAt: timestampFromDate(r.created_at),
    resolvedAt: optionalTimestamp(r.resolved_at),
  });
}

/**
 * A withdrawal limit would be passed: RESOURCE_EXHAUSTED (payment tells it
 * apart from insufficient funds by that code) with the limit as a detail.
 */
export class WithdrawalLimitError extends DomainError {
  readonly code = Code.ResourceExhausted;
  readonly reason = "LIMIT_EXCEEDED";

  constructor(
    message: string,
    readonly limit: WithdrawalLimit,
  ) {
    super(message, { kind: LimitKind[limit.kind] });
  }

  override toConnectError(): ConnectError {
    const err = super.toConnectError();
    err.details.push({ desc: WithdrawalLimitSchema, value: this.limit });
    return err;
  }
}

/** Limit days and months start at midnight in Nairobi. */
export function eatPeriodStarts(now = new Date()): { day: Date; month: Date } {
  const local = new Date(now.getTime() + NAIROBI_OFFSET_MS);
  const day = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()) - NAIROBI_OFFSET_MS;
  const month = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), 1) - NAIROBI_OFFSET_MS;
  return { day: new Date(day), month: new Date(month) };
}

/**
 * Every withdrawal limit of an owner's account with what is used and left;
 * held and settled withdrawals count. An owner without an account yet has
 * used nothing.
 */
export async function withdrawalLimits(
  db: Queryable,
  account: Pick<AccountRow, "owner_id" | "currency"> & { account_id?: string },
  now = new Date(),
): Promise<{ tier: UserTier; limits: WithdrawalLimit[] }> {
  const currency = account.currency.trim();
  const { day, month } = eatPeriodStarts(now);
  // One round trip: the owner's tier (basic unless set), what its holds used, and the tier's limits.
  const { rows: [{ tier, used_day: usedDay, used_month: usedMonth, ...t }] } = await db.query<{
    tier: number; used_day: bigint; used_month: bigint; per_transaction_minor: bigint | null; daily_minor: bigint | null; monthly_minor: bigint | null;
  }>(
    `SELECT o.tier, u.used_day, u.used_month, l.per_transaction_minor, l.daily_minor, l.monthly_minor
       FROM (SELECT coalesce((SELECT tier FROM wallet.user_tiers WHERE owner_id = $1), $2::smallint) AS tier) o
       CROSS JOIN (SELECT coalesce(sum(amount_minor) FILTER (WHERE created_at >= $4), 0)::bigint AS used_day, coalesce(sum(amount_minor), 0)::bigint AS used_month
                     FROM wallet.holds WHERE account_id = $3 AND status <> $6 AND created_at >= $5) u
       LEFT JOIN wallet.tier_limits l ON l.tier = o.tier AND l.currency = $7`,
    [account.owner_id, UserTier.BASIC, account.account_id ?? null, day, month, HoldStatus.RELEASED, currency],
  );
  const limit = (kind: LimitKind, amount: bigint, usedMinor: bigint) =>
    create(WithdrawalLimitSchema, {
      kind,
      limit: money(amount, currency),
      used: money(usedMinor, currency),
      remaining: money(amount > usedMinor ? amount - usedMinor : 0n, currency),
    });
  const limits: WithdrawalLimit[] = [];
  if (t.per_transaction_minor !== null && t.daily_minor !== null && t.monthly_minor !== null) {
    limits.push(
      limit(LimitKind.PER_TRANSACTION, t.per_transaction_minor, 0n),
      limit(LimitKind.DAILY, t.daily_minor, usedDay),
      limit(LimitKind.MONTHLY, t.monthly_minor, usedMonth),
    );
  }
  if (currency === "KES") {
    limits.push(limit(LimitKind.MPESA_PER_TRANSACTION, MPESA_LIMITS.perTransactionMinor, 0n), limit(LimitKind.MPESA_DAILY, MPESA_LIMITS.dailyMinor, usedDay));
  }
  return { tier, limits };
}

/** "KES 1500.00": the amount as statements show it (the currency's own digits, no grouping). */
function formatMinor(m: bigint, currency: string): string {
  return `${currency} ${decimalAmount(m, currency)}`;
}

const LIMIT_WORDS: Record<number, string> = {
  [LimitKind.PER_TRANSACTION]: "per-withdrawal limit",
  [LimitKind.DAILY]: "daily withdrawal limit",
  [LimitKind.MONTHLY]: "monthly withdrawal limit",
  [LimitKind.MPESA_PER_TRANSACTION]: "M-Pesa per-transaction limit",
  [LimitKind.MPESA_DAILY]: "M-Pesa daily limit",
};

export interface PlaceHoldInput {
  accountId: string;
  amountMinor: bigint;
  currency: string;
  payoutId: string;
  idempotencyKey: string;
}

/**
 * Reserves money for a withdrawal once per key (and once per payout). The
 * account row is locked first, so concurrent holds see each other's usage
 * when limits and the available balance are checked.
 */
export async function placeHold(tx: Queryable, input: PlaceHoldInput): Promise<{ hold: Hold; account: AccountRow }> {
  // With the key's and the payout's locks (the account's covers neither: one key may come for two accounts), so the
  // look below sees a hold placed under either by a transaction that got there first. Only this takes them.
  const account = await getAccount(tx, input.accountId, true, [`wallet.hold-key.${input.idempotencyKey}`, `wallet.hold-payout.${input.payoutId}`]);
  if (!account) throw new NotFoundError(`account_id: no account ${input.accountId}`);
  const prior = await tx.query<HoldRow>(`SELECT ${HOLD_COLUMNS} FROM wallet.holds WHERE idempotency_key = $1 OR payout_id = $2`, [input.idempotencyKey, input.payoutId]);
  if (prior.rows[0]) {
    const p = prior.rows[0];
    if (p.idempotency_key === input.idempotencyKey && p.account_id === input.accountId && p.amount_minor === input.amountMinor && p.payout_id === input.payoutId) {
      return { hold: toHold(p), account };
    }
    if (p.idempotency_key === input.idempotencyKey) throw new IdempotencyConflictError(input.idempotencyKey, "withdrawal hold");
    throw new AlreadyExistsError(`payout_id: payout ${input.payoutId} already has a hold`);
  }
  if (account.kind !== AccountKind.WORKER_WALLET && account.kind !== AccountKind.VENUE_POOL) {
    throw new InvalidStateError("account_id: only worker wallets and venue pools are withdrawn from");
  }
  const currency = account.currency.trim();
  if (currency !== input.currency) throw fieldError("amount.currency", `the account holds ${currency}, not ${input.currency}`);
  const available = account.balance_minor - account.held_minor;
  if (available < input.amountMinor) {
    throw new InsufficientFundsError(
      `insufficient funds: available ${formatMinor(available, currency)}, asked ${formatMinor(input.amountMinor, currency)}`,
      { available: formatMinor(available, currency), asked: formatMinor(input.amountMinor, currency) },
    );
  }
  const { limits } = await withdrawalLimits(tx, account);
  for (const l of limits) {
    if (input.amountMinor > l.remaining!.amountMinor) {
      const perTx = l.kind === LimitKind.PER_TRANSACTION || l.kind === LimitKind.MPESA_PER_TRANSACTION;
      throw new WithdrawalLimitError(
        perTx
          ? `${LIMIT_WORDS[l.kind]} is ${formatMinor(l.limit!.amountMinor, currency)}; withdraw at most that at once`
          : `${LIMIT_WORDS[l.kind]} of ${formatMinor(l.limit!.amountMinor, currency)} reached: ${formatMinor(l.remaining!.amountMinor, currency)} left`,
        l,
      );
    }
  }
  const holdId = randomUUID();
  const event = buildEvent("wallet", PayoutHeldSchema, {
    holdId,
    payoutId: input.payoutId,
    accountId: account.account_id,
    ownerId: account.owner_id,
    amount: money(input.amountMinor, currency),
  }, input.payoutId);
  // One statement: the amount held on the account, the hold, its event (outbox); the account's balance and
  // held amount as they are now for the answer (an owned account: its balance is its row's).
  const announced = outboxCte("wallet", [event], 8);
  const { rows: [placed] } = await tx.query<HoldRow & { balance_minor: bigint; held_minor: bigint }>(
    `WITH held AS (
       UPDATE wallet.accounts SET held_minor = held_minor + $3 WHERE account_id = $2 RETURNING balance_minor, held_minor),
     placed AS (
       INSERT INTO wallet.holds (hold_id, account_id, amount_minor, currency, payout_id, idempotency_key, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${HOLD_COLUMNS}),
     ${announced.sql}
     SELECT ${HOLD_COLUMNS}, (SELECT balance_minor FROM held) AS balance_minor, (SELECT held_minor FROM held) AS held_minor FROM placed`,
    [holdId, account.account_id, input.amountMinor, currency, input.payoutId, input.idempotencyKey, HoldStatus.HELD, ...announced.values],
  );
  const { balance_minor: balanceMinor, held_minor: heldMinor, ...hold } = placed;
  return { hold: toHold(hold), account: { ...account, balance_minor: balanceMinor, held_minor: heldMinor } };
}

interface TakenHold extends HoldRow {
  float_account_id: string | null;
  fees_account_id: string | null;
}

/**
 * Locks the hold and, if it is still held, frees its amount on the account (held_minor), in one
 * statement: settling and releasing both start so, and a hold resolved already changes nothing. Also
 * reads the ids of the platform accounts a settlement posts to (null before their first use). Locks the
 * hold's row, then the account's, as settling and releasing always have.
 */
const TAKE_HOLD = `WITH h AS (SELECT ${HOLD_COLUMNS} FROM wallet.holds WHERE hold_id = $1 FOR UPDATE),
freed AS (
  UPDATE wallet.accounts a SET held_minor = a.held_minor - h.amount_minor,
    debt_allowed_minor = CASE WHEN $6::boolean THEN LEAST(a.debt_allowed_minor, GREATEST(0, a.held_minor - h.amount_minor - a.balance_minor)) ELSE a.debt_allowed_minor END
    FROM h WHERE a.account_id = h.account_id AND h.status = $2)
SELECT h.*,
       (SELECT f.account_id FROM wallet.accounts f WHERE f.kind = $3 AND f.owner_kind = $5 AND f.owner_id = '' AND f.currency = h.currency) AS float_account_id,
       (SELECT f.account_id FROM wallet.accounts f WHERE f.kind = $4 AND f.owner_kind = $5 AND f.owner_id = '' AND f.currency = h.currency) AS fees_account_id
  FROM h`;

/**
 * `releasing`: a debt allowed while the hold stood (a lost chargeback meanwhile) was the hold's shortfall; what
 * it no longer holds the wallet may no longer owe, or a later plain debit could take it below zero. Settling
 * keeps the allowance: its withdrawal is the debit that uses it.
 */
async function takeHold(tx: Queryable, holdId: string, releasing: boolean): Promise<TakenHold> {
  const { rows } = await tx.query<TakenHold>(TAKE_HOLD, [holdId, HoldStatus.HELD, AccountKind.PAYOUT_CLEARING, AccountKind.PLATFORM_FEES, OwnerKind.PLATFORM, releasing]);
  if (!rows[0]) throw new NotFoundError(`hold_id: no hold ${holdId}`);
  return rows[0];
}

/**
 * The hold's outcome and its event (outbox, same transaction), in one statement; the event is written
 * only if the UPDATE, guarded on the hold being held, changed it. The caller's row lock (takeHold) means
 * it does; if it ever did not, the outcome is refused and the transaction (the settlement's entry with
 * it) rolls back rather than announce what did not happen.
 */
async function resolveHold(tx: Queryable, hold: HoldRow, status: HoldStatus, reason: string, settleEntryId: string | null, event: BusMessage): Promise<HoldRow> {
  const announced = outboxCte("wallet", [event], 6, "resolved");
  const { rows } = await tx.query<HoldRow>(
    `WITH resolved AS (
       UPDATE wallet.holds SET status = $2, settle_entry_id = $3, reason = $4, resolved_at = now() WHERE hold_id = $1 AND status = $5 RETURNING ${HOLD_COLUMNS}),
     ${announced.sql}
     SELECT ${HOLD_COLUMNS} FROM resolved`,
    [hold.hold_id, status, settleEntryId, reason, HoldStatus.HELD, ...announced.values],
  );
  if (!rows[0]) throw new InvalidStateError(`hold ${hold.hold_id} is no longer held; it was resolved meanwhile`);
  return rows[0];
}

/**
 * B2C paid: the held amount leaves the wallet for the B2C float (payout
 * clearing), and the transfer fee, paid by the platform, too. Settling twice
 * returns the first settlement. Three statements when the caller names the fee
 * (payment does): the hold taken, the entry posted, the hold resolved.
 */
export async function settleHold(tx: Queryable, holdId: string, externalReference: string, transferFee?: bigint, feeCurrency?: string): Promise<{ hold: Hold; entry: JournalEntry }> {
  if (transferFee !== undefined && transferFee < 0n) throw fieldError("transfer_fee", "must not be negative");
  const hold = await takeHold(tx, holdId, false);
  if (hold.status === HoldStatus.SETTLED) return { hold: toHold(hold), entry: (await loadEntry(tx, hold.settle_entry_id!))! };
  if (hold.status === HoldStatus.RELEASED) throw new InvalidStateError(`hold ${holdId} was released; it cannot be settled`);
  const currency = hold.currency.trim();
  if (feeCurrency !== undefined && feeCurrency !== currency) throw fieldError("transfer_fee.currency", `the hold is in ${currency}`);
  let transferFeeMinor = transferFee;
  if (transferFeeMinor === undefined) {
    const schedule = await currentSchedule(tx, currency);
    transferFeeMinor = schedule.mpesaB2cBands.length ? b2cFee(schedule, hold.amount_minor) : 0n;
  }
  const float = hold.float_account_id ?? (await systemAccount(tx, AccountKind.PAYOUT_CLEARING, currency)).account_id;
  const postings = [
    { accountId: hold.account_id, amountMinor: -hold.amount_minor, currency, memo: "withdrawal" },
    { accountId: float, amountMinor: hold.amount_minor, currency, memo: `B2C ${externalReference}` },
  ];
  if (transferFeeMinor > 0n) {
    const fees = hold.fees_account_id ?? (await systemAccount(tx, AccountKind.PLATFORM_FEES, currency)).account_id;
    postings.push(
      { accountId: fees, amountMinor: -transferFeeMinor, currency, memo: "B2C charge" },
      { accountId: float, amountMinor: transferFeeMinor, currency, memo: "B2C charge" },
    );
  }
  const { entry } = await postEntry(tx, {
    idempotencyKey: `hold:${holdId}:settle`,
    cause: causeOf("payoutId", hold.payout_id),
    postings,
    description: `Withdrawal to M-Pesa (${externalReference})`,
  });
  const event = buildEvent("wallet", PayoutSettledSchema, {
    holdId,
    payoutId: hold.payout_id,
    entryId: entry.entryId,
    amount: money(hold.amount_minor, currency),
  }, hold.payout_id);
  return { hold: toHold(await resolveHold(tx, hold, HoldStatus.SETTLED, externalReference, entry.entryId, event)), entry };
}

/** B2C failed: the held money is available again. Releasing twice returns the first release. Two statements. */
export async function releaseHold(tx: Queryable, holdId: string, reason: string): Promise<Hold> {
  const hold = await takeHold(tx, holdId, true);
  if (hold.status === HoldStatus.RELEASED) return toHold(hold);
  if (hold.status === HoldStatus.SETTLED) throw new InvalidStateError(`hold ${holdId} was settled; it cannot be released`);
  const event = buildEvent("wallet", PayoutReleasedSchema, {
    holdId,
    payoutId: hold.payout_id,
    amount: money(hold.amount_minor, hold.currency.trim()),
    reason,
  }, hold.payout_id);
  return toHold(await resolveHold(tx, hold, HoldStatus.RELEASED, reason, null, event));
}
