import { createHash, randomUUID } from "node:crypto";
import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AlreadyReversedError, assertCurrency, buildEvent, type BusMessage, fieldError, IdempotencyConflictError, InsufficientFundsError, NotFoundError, outboxCte, type Queryable } from "@ttip/runtime";
import { WalletCreditedSchema, WalletDebitedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  AccountKind,
  AccountSchema,
  EntryCauseSchema,
  FxConversionSchema,
  JournalEntrySchema,
  OwnerKind,
  PostingSchema,
  type Account,
  type EntryCause,
  type FxConversion,
  type JournalEntry,
} from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { money } from "./money.js";

/** System accounts carry the other side of every entry and may go below zero. */
const SYSTEM_KINDS = new Set([
  AccountKind.PLATFORM_FEES,
  AccountKind.MPESA_CLEARING,
  AccountKind.STRIPE_CLEARING,
  AccountKind.PAYPAL_CLEARING,
  AccountKind.PAYOUT_CLEARING,
  AccountKind.SUSPENSE,
  AccountKind.FX_POSITION,
]);

export interface AccountRow {
  account_id: string;
  kind: number;
  owner_kind: number;
  owner_id: string;
  currency: string;
  balance_minor: bigint;
  held_minor: bigint;
  created_at: Date;
}

export function toAccount(r: AccountRow): Account {
  return create(AccountSchema, {
    accountId: r.account_id,
    kind: r.kind,
    ownerKind: r.owner_kind,
    ownerId: r.owner_id,
    currency: r.currency.trim(),
    createdAt: timestampFromDate(r.created_at),
  });
}

/** Finds or creates the account with this natural key. */
export async function ensureAccount(db: Queryable, kind: AccountKind, ownerKind: OwnerKind, ownerId: string, currency: string): Promise<AccountRow> {
  assertCurrency(currency, "currency");
  const system = SYSTEM_KINDS.has(kind);
  if (system && (ownerKind !== OwnerKind.PLATFORM || ownerId !== "")) {
    throw fieldError("owner_kind", `${AccountKind[kind]} accounts belong to the platform, with no owner_id`);
  }
  if (kind === AccountKind.WORKER_WALLET && (ownerKind !== OwnerKind.WORKER || !ownerId)) {
    throw fieldError("owner_id", "a worker wallet needs owner_kind WORKER and the worker's id");
  }
  if (kind === AccountKind.VENUE_POOL && (ownerKind !== OwnerKind.VENUE || !ownerId)) {
    throw fieldError("owner_id", "a venue pool needs owner_kind VENUE and the venue's id");
  }
  await db.query(
    `INSERT INTO wallet.accounts (account_id, kind, owner_kind, owner_id, currency, may_go_negative)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, owner_kind, owner_id, currency) DO NOTHING`,
    [randomUUID(), kind, ownerKind, ownerId, currency, system],
  );
  const { rows } = await db.query<AccountRow>(
    `SELECT * FROM wallet.accounts WHERE kind = $1 AND owner_kind = $2 AND owner_id = $3 AND currency = $4`,
    [kind, ownerKind, ownerId, currency],
  );
  return rows[0];
}

/** A platform account (fees, clearing, suspense, FX position) in one currency. */
export function systemAccount(db: Queryable, kind: AccountKind, currency: string): Promise<AccountRow> {
  return ensureAccount(db, kind, OwnerKind.PLATFORM, "", currency);
}

export async function getAccount(db: Queryable, accountId: string, lock = false): Promise<AccountRow | undefined> {
  const { rows } = await db.query<AccountRow & { may_go_negative: boolean }>(
    `SELECT * FROM wallet.accounts WHERE account_id = $1${lock ? " FOR UPDATE" : ""}`,
    [accountId],
  );
  const account = rows[0];
  if (account?.may_go_negative) account.balance_minor = await accountBalance(db, accountId);
  return account;
}

/** A system account's balance: the sum of its postings (it keeps no running balance). */
export async function accountBalance(db: Queryable, accountId: string): Promise<bigint> {
  const { rows } = await db.query<{ total: bigint }>(
    `SELECT coalesce(sum(amount_minor), 0)::bigint AS total FROM wallet.postings WHERE account_id = $1`,
    [accountId],
  );
  return rows[0].total;
}

export interface PostingInput {
  accountId: string;
  amountMinor: bigint;
  currency: string;
  memo?: string;
}

export interface EntryInput {
  idempotencyKey: string;
  cause: EntryCause;
  postings: PostingInput[];
  conversions?: FxConversion[];
  description?: string;
  /** Set only by reverseEntry. */
  reversesEntryId?: string;
  /** A lost card chargeback: owned balances may go below zero (see migration 0002). */
  allowOwnerDebt?: boolean;
}

export interface PostResult {
  entry: JournalEntry;
  created: boolean;
}

/** Only what the caller asked for, so a retry with the same key matches and a different request does not. */
function fingerprint(input: EntryInput): string {
  const canonical = JSON.stringify({
    cause: toJsonString(EntryCauseSchema, input.cause),
    postings: input.postings.map((p) => [p.accountId, p.amountMinor.toString(), p.currency, p.memo ?? ""]),
    conversions: (input.conversions ?? []).map((c) => toJsonString(FxConversionSchema, c)),
    description: input.description ?? "",
    reverses: input.reversesEntryId ?? "",
    // Only when set, so keys posted before the field existed keep their fingerprint.
    ...(input.allowOwnerDebt ? { debt: true } : {}),
  });
  return createHash("sha256").update(canonical).digest("hex");
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function invalid(field: string, why: string) {
  return fieldError(field, why);
}

/** The entry's shape before anything is written: a cause, two or more non-zero lines, balanced per currency. */
function checkBalanced(input: EntryInput): void {
  if (!input.cause.cause.case) throw invalid("cause", "say what caused the entry");
  if (input.postings.length < 2) throw invalid("postings", "an entry needs at least two postings");
  const nets = new Map<string, bigint>();
  input.postings.forEach((p, i) => {
    if (!UUID.test(p.accountId)) throw invalid(`postings[${i}].account_id`, "must be a UUID");
    if (p.amountMinor === 0n) throw invalid(`postings[${i}].amount`, "must not be zero");
    assertCurrency(p.currency, `postings[${i}].amount.currency`);
    nets.set(p.currency, (nets.get(p.currency) ?? 0n) + p.amountMinor);
  });
  for (const [currency, net] of nets) {
    if (net !== 0n) throw invalid("postings", `do not balance in ${currency}: debits and credits differ by ${net} minor units`);
  }
}

/** Moves each owned account's balance under its row lock, in id order; `accounts` gets the new balances. */
async function moveOwnedBalances(tx: Queryable, deltas: Map<string, bigint>, accounts: Map<string, PostingAccount>, allowOwnerDebt: boolean): Promise<void> {
  for (const accountId of [...deltas.keys()].filter((id) => !accounts.get(id)!.may_go_negative).sort()) {
    try {
      const { rows } = await tx.query<{ balance_minor: bigint }>(
        // The debt allowance follows the balance: raised only by an entry allowed to
        // (a lost chargeback), lowered by anything else, never raised by it.
        `UPDATE wallet.accounts SET balance_minor = balance_minor + $2::bigint,
           debt_allowed_minor = CASE WHEN $3::boolean THEN GREATEST(debt_allowed_minor, held_minor - (balance_minor + $2::bigint))
             ELSE LEAST(debt_allowed_minor, GREATEST(0, held_minor - (balance_minor + $2::bigint))) END
         WHERE account_id = $1 RETURNING balance_minor`,
        [accountId, deltas.get(accountId), allowOwnerDebt],
      );
      accounts.get(accountId)!.balance_minor = rows[0].balance_minor;
    } catch (err) {
      if ((err as { constraint?: string }).constraint === "available_not_negative") {
        throw new InsufficientFundsError(`account ${accountId}: available balance is too low for this entry`);
      }
      throw err;
    }
  }
}

/** Owners hear about their money moving; system accounts (no balance after) are not announced. */
function movementEvents(entryId: string, causeId: string, lines: PostedLine[]): BusMessage[] {
  return lines.filter((l) => l.after !== null).map((l) => {
    const init = {
      accountId: l.accountId,
      ownerId: l.account.owner_id,
      entryId,
      amount: money(l.amountMinor < 0n ? -l.amountMinor : l.amountMinor, l.currency),
      balanceAfter: money(l.after!, l.currency),
      causeId,
    };
    return l.amountMinor > 0n ? buildEvent("wallet", WalletCreditedSchema, init, causeId) : buildEvent("wallet", WalletDebitedSchema, init, causeId);
  });
}

/**
 * Posts a balanced entry exactly once per idempotency key, inside `tx`.
 *
 * Account rows are locked in id order (no deadlocks between entries that
 * touch the same accounts) and their balances moved in the same statement
 * that checks them, so concurrent postings never lose an update; the
 * database refuses a worker or pool balance below its holds.
 */
export async function postEntry(tx: Queryable, input: EntryInput): Promise<PostResult> {
  checkBalanced(input);
  const entryId = randomUUID();
  const claim = await claimEntryKey(tx, input, entryId);
  if (!claim.claimed) return replayedEntry(tx, input, claim.hash);
  const { deltas, accounts } = accountsOfPostings(input, claim.accounts);
  // Owned accounts (worker wallets, venue pools) are moved and checked under
  // their row lock, in id order. System accounts stand on nearly every entry:
  // locking them would serialise the whole platform, so their balance is the
  // sum of their postings instead (see accountBalance).
  await moveOwnedBalances(tx, deltas, accounts, input.allowOwnerDebt === true);
  const lines = linesWithBalances(input.postings, accounts, deltas);
  const postedAt = await insertPostings(tx, entryId, lines, movementEvents(entryId, String(input.cause.cause.value), lines));
  await insertConversions(tx, entryId, input.conversions ?? [], postedAt);
  return { entry: journalEntryOf(entryId, input, lines, postedAt), created: true };
}

/** Every column of wallet.accounts, named so that the statements naming them are prepared (the runtime's db.ts). */
const ACCOUNT_COLUMNS = ["account_id", "kind", "owner_kind", "owner_id", "currency", "may_go_negative", "balance_minor", "held_minor", "created_at", "debt_allowed_minor"];

/**
 * Inserts the entry's header under its idempotency key and, in the same round
 * trip, reads the accounts its postings name (unlocked: the owned ones are
 * locked by the balance moves). `claimed`: this call made the entry.
 */
async function claimEntryKey(tx: Queryable, input: EntryInput, entryId: string): Promise<{ claimed: boolean; hash: string; accounts: PostingAccount[] }> {
  const hash = fingerprint(input);
  const { rows } = await tx.query<PostingAccount & { claimed_entry_id: string | null }>(
    `WITH claimed AS (
       INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref, description, reverses_entry_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING entry_id)
     SELECT k.claimed_entry_id, ${ACCOUNT_COLUMNS.map((c) => `a.${c}`).join(", ")}
       FROM (SELECT (SELECT entry_id FROM claimed) AS claimed_entry_id) k
       LEFT JOIN wallet.accounts a ON a.account_id = ANY($8::uuid[])`,
    [entryId, input.idempotencyKey, hash, input.cause.cause.case, String(input.cause.cause.value), input.description ?? "", input.reversesEntryId ?? null,
      [...new Set(input.postings.map((p) => p.accountId))]],
  );
  const accounts = rows.filter((r) => r.account_id !== null).map(({ claimed_entry_id: _, ...a }) => a as PostingAccount);
  return { claimed: rows[0].claimed_entry_id !== null, hash, accounts };
}

/** A replay of the same request gets the entry posted first; a different request under the key is refused. */
async function replayedEntry(tx: Queryable, input: EntryInput, hash: string): Promise<PostResult> {
  const prior = await tx.query<{ entry_id: string; request_hash: string }>(
    `SELECT entry_id, request_hash FROM wallet.entries WHERE idempotency_key = $1`,
    [input.idempotencyKey],
  );
  if (prior.rows[0].request_hash !== hash) {
    throw new IdempotencyConflictError(input.idempotencyKey, "journal entry");
  }
  return { entry: (await loadEntry(tx, prior.rows[0].entry_id))!, created: false };
}

type PostingAccount = AccountRow & { may_go_negative: boolean };

/** The net change per account and the accounts themselves, each checked to exist and to hold the posting's currency. */
function accountsOfPostings(input: EntryInput, found: PostingAccount[]): { deltas: Map<string, bigint>; accounts: Map<string, PostingAccount> } {
  const deltas = new Map<string, bigint>();
  for (const p of input.postings) deltas.set(p.accountId, (deltas.get(p.accountId) ?? 0n) + p.amountMinor);
  const accounts = new Map(found.map((a) => [a.account_id, a]));
  input.postings.forEach((p, i) => {
    const account = accounts.get(p.accountId);
    if (!account) throw new NotFoundError(`postings[${i}].account_id: no account ${p.accountId}`);
    if (account.currency.trim() !== p.currency) {
      throw invalid(`postings[${i}].amount.currency`, `account ${p.accountId} holds ${account.currency.trim()}, not ${p.currency}`);
    }
  });
  return { deltas, accounts };
}

type PostedLine = PostingInput & { line: number; after: bigint | null; account: PostingAccount };

/**
 * Balance after each line of an owned account, walking the lines in order from its opening
 * balance (the moved balance less the entry's net change); null for system accounts.
 */
function linesWithBalances(postings: PostingInput[], accounts: Map<string, PostingAccount>, deltas: Map<string, bigint>): PostedLine[] {
  const running = new Map([...accounts].map(([id, a]) => [id, a.balance_minor - deltas.get(id)!]));
  return postings.map((p, i) => {
    const account = accounts.get(p.accountId)!;
    const after = account.may_go_negative ? null : running.get(p.accountId)! + p.amountMinor;
    if (after !== null) running.set(p.accountId, after);
    return { ...p, line: i, after, account };
  });
}

/**
 * Inserts every line and the owners' events, and returns their posting time. One sequence
 * number and time for every line of the entry, taken in the same statement as the insert,
 * and the events in it too: round trips less while the owners' rows are locked.
 */
async function insertPostings(tx: Queryable, entryId: string, lines: PostedLine[], events: BusMessage[]): Promise<Date> {
  const announced = outboxCte("wallet", events, 8);
  const { rows: [{ posted_at: postedAt }] } = await tx.query<{ posted_at: Date }>(
    `WITH s AS (SELECT nextval('wallet.posting_seq') AS seq, clock_timestamp() AS posted_at),
     posted AS (
       INSERT INTO wallet.postings (entry_id, line, account_id, amount_minor, currency, balance_after, memo, posted_seq, posted_at)
       SELECT $1, l, a, amt, c, b, m, s.seq, s.posted_at
         FROM unnest($2::smallint[], $3::uuid[], $4::bigint[], $5::text[], $6::bigint[], $7::text[]) AS t(l, a, amt, c, b, m), s
       RETURNING posted_at),
     ${announced.sql}
     SELECT posted_at FROM posted LIMIT 1`,
    [
      entryId,
      lines.map((l) => l.line),
      lines.map((l) => l.accountId),
      lines.map((l) => l.amountMinor.toString()),
      lines.map((l) => l.currency),
      lines.map((l) => (l.after === null ? null : l.after.toString())),
      lines.map((l) => l.memo ?? ""),
      ...announced.values,
    ],
  );
  return postedAt;
}

/** The FX conversions behind the entry; one without a rate time is dated at posting. */
async function insertConversions(tx: Queryable, entryId: string, conversions: FxConversion[], postedAt: Date): Promise<void> {
  for (const [i, c] of conversions.entries()) {
    if (!c.from || !c.to) throw invalid(`conversions[${i}]`, "needs from and to amounts");
    await tx.query(
      `INSERT INTO wallet.entry_conversions VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [entryId, i, c.from.amountMinor, c.from.currency, c.to.amountMinor, c.to.currency, c.rate, c.rateSource,
        c.rateTime ? timestampDate(c.rateTime) : postedAt],
    );
  }
}

function journalEntryOf(entryId: string, input: EntryInput, lines: PostedLine[], postedAt: Date): JournalEntry {
  return create(JournalEntrySchema, {
    entryId,
    idempotencyKey: input.idempotencyKey,
    cause: input.cause,
    postings: lines.map((l) => create(PostingSchema, { accountId: l.accountId, amount: money(l.amountMinor, l.currency), memo: l.memo ?? "" })),
    conversions: input.conversions ?? [],
    description: input.description ?? "",
    postedAt: timestampFromDate(postedAt),
  });
}

interface EntryRow {
  entry_id: string;
  idempotency_key: string;
  cause_kind: string;
  cause_ref: string;
  description: string;
  posted_at: Date;
  reversed_by: string | null;
}

export async function loadEntry(db: Queryable, entryId: string): Promise<JournalEntry | undefined> {
  const { rows } = await db.query<EntryRow>(
    `SELECT e.*, r.entry_id AS reversed_by,
            (SELECT posted_at FROM wallet.postings p WHERE p.entry_id = e.entry_id LIMIT 1) AS posted_at
       FROM wallet.entries e
       LEFT JOIN wallet.entries r ON r.reverses_entry_id = e.entry_id
      WHERE e.entry_id = $1`,
    [entryId],
  );
  const e = rows[0];
  if (!e) return undefined;
  const postings = await db.query<{ account_id: string; amount_minor: bigint; currency: string; memo: string }>(
    `SELECT account_id, amount_minor, currency, memo FROM wallet.postings WHERE entry_id = $1 ORDER BY line`,
    [entryId],
  );
  const conversions = await db.query(`SELECT * FROM wallet.entry_conversions WHERE entry_id = $1 ORDER BY line`, [entryId]);
  return create(JournalEntrySchema, {
    entryId: e.entry_id,
    idempotencyKey: e.idempotency_key,
    cause: causeOf(e.cause_kind, e.cause_ref),
    postings: postings.rows.map((p) =>
      create(PostingSchema, { accountId: p.account_id, amount: money(p.amount_minor, p.currency.trim()), memo: p.memo }),
    ),
    conversions: conversions.rows.map((c) =>
      create(FxConversionSchema, {
        from: money(c.from_minor, c.from_currency.trim()),
        to: money(c.to_minor, c.to_currency.trim()),
        rate: c.rate,
        rateSource: c.rate_source,
        rateTime: timestampFromDate(c.rate_time),
      }),
    ),
    description: e.description,
    postedAt: timestampFromDate(e.posted_at),
    reversedByEntryId: e.reversed_by ?? "",
  });
}

export function causeOf(kind: string, ref: string): EntryCause {
  return create(EntryCauseSchema, { cause: { case: kind, value: ref } as EntryCause["cause"] });
}

/** Posts the mirror image of an entry, once; the database allows one reversal per entry. */
export async function reverseEntry(tx: Queryable, entryId: string, idempotencyKey: string, reason: string): Promise<PostResult> {
  const original = await loadEntry(tx, entryId);
  if (!original) throw new NotFoundError(`entry_id: no entry ${entryId}`);
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`wallet.reverse.${entryId}`]);
  const existing = await tx.query<{ entry_id: string; idempotency_key: string }>(
    `SELECT entry_id, idempotency_key FROM wallet.entries WHERE reverses_entry_id = $1`,
    [entryId],
  );
  if (existing.rows[0] && existing.rows[0].idempotency_key !== idempotencyKey) {
    throw new AlreadyReversedError(`entry ${entryId} was already reversed by ${existing.rows[0].entry_id}`, { reversal_entry_id: existing.rows[0].entry_id });
  }
  return postEntry(tx, {
    idempotencyKey,
    cause: causeOf("reversedEntryId", entryId),
    postings: original.postings.map((p) => ({
      accountId: p.accountId,
      amountMinor: -p.amount!.amountMinor,
      currency: p.amount!.currency,
      memo: `reversal: ${p.memo}`.slice(0, 200),
    })),
    description: `Reversal of ${entryId}: ${reason}`,
    reversesEntryId: entryId,
  });
}
