import { createHash, randomUUID } from "node:crypto";
import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AlreadyReversedError, assertCurrency, buildEvent, type BusMessage, currentTraceparent, fieldError, IdempotencyConflictError, ident, InsufficientFundsError, InvalidStateError, isUuid, lockForTransaction, money, NotFoundError, type Queryable, timeOrderedUuid } from "@ttip/runtime";
import { MoneySchema } from "@ttip/proto/ttip/common/v1/money_pb.js";
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

/** Every column of wallet.accounts, named so that the statements naming them are prepared (the runtime's db.ts). */
export const ACCOUNT_COLUMNS = "account_id, kind, owner_kind, owner_id, currency, may_go_negative, balance_minor, held_minor, created_at, debt_allowed_minor";

/**
 * How long EnsureAccount's statement may wait for a lock: it waits only for another transaction
 * making the same account (a pool period's, which commits in moments). A call (payment's, which
 * sets no deadline) is then answered ABORTED, to try again, instead of held for as long as that
 * transaction stays open.
 */
export const ENSURE_ACCOUNT_LOCK_TIMEOUT_MS = 2_000;

/**
 * Finds or creates the account with this natural key. `lockTimeoutMs`: the statement's lock wait
 * bounded (its own, as an autocommit statement: not for a caller's transaction, whose later
 * statements would inherit it).
 */
export async function ensureAccount(db: Queryable, kind: AccountKind, ownerKind: OwnerKind, ownerId: string, currency: string, lockTimeoutMs?: number): Promise<AccountRow> {
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
  // One round trip: the account found, or else made. Made by another call after this
  // statement's snapshot, it is neither (ON CONFLICT saw it, the snapshot does not): read again.
  const { rows } = await db.query<AccountRow>(
    `WITH found AS (
       SELECT ${ACCOUNT_COLUMNS} FROM wallet.accounts WHERE kind = $2 AND owner_kind = $3 AND owner_id = $4 AND currency = $5),
     made AS (
       INSERT INTO wallet.accounts (account_id, kind, owner_kind, owner_id, currency, may_go_negative)
       SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM found)${lockTimeoutMs === undefined ? "" : BOUNDED_WAIT}
       ON CONFLICT (kind, owner_kind, owner_id, currency) DO NOTHING
       RETURNING ${ACCOUNT_COLUMNS})
     SELECT ${ACCOUNT_COLUMNS} FROM found UNION ALL SELECT ${ACCOUNT_COLUMNS} FROM made`,
    [randomUUID(), kind, ownerKind, ownerId, currency, system, ...(lockTimeoutMs === undefined ? [] : [`${lockTimeoutMs}ms`])],
  );
  if (rows[0]) return rows[0];
  const again = await db.query<AccountRow>(
    `SELECT ${ACCOUNT_COLUMNS} FROM wallet.accounts WHERE kind = $1 AND owner_kind = $2 AND owner_id = $3 AND currency = $4`,
    [kind, ownerKind, ownerId, currency],
  );
  return again.rows[0];
}

/**
 * ensureAccount's lock wait bounded: lock_timeout set for the statement's own transaction
 * (is_local; an autocommit statement is one), by the row source of the insert, which runs
 * before the insert can wait. A wait past it is 55P03, which the runtime answers ABORTED.
 */
const BOUNDED_WAIT = ` AND (SELECT set_config('lock_timeout', $7, true)) IS NOT NULL`;

/** A platform account (fees, clearing, suspense, FX position) in one currency. */
export function systemAccount(db: Queryable, kind: AccountKind, currency: string): Promise<AccountRow> {
  return ensureAccount(db, kind, OwnerKind.PLATFORM, "", currency);
}

/**
 * An account, its row locked when `lock`; `advisoryLocks`: names whose transaction-long advisory locks the same
 * statement takes (one round trip), so the caller's next statement sees what their holders committed.
 */
export async function getAccount(db: Queryable, accountId: string, lock = false, advisoryLocks: readonly string[] = []): Promise<AccountRow | undefined> {
  const locks = advisoryLocks.map((_, i) => `, pg_advisory_xact_lock(hashtext($${i + 2}))`).join("");
  const { rows } = await db.query<AccountRow & { may_go_negative: boolean }>(
    `SELECT ${ACCOUNT_COLUMNS}${locks} FROM wallet.accounts WHERE account_id = $1${lock ? " FOR UPDATE" : ""}`,
    [accountId, ...advisoryLocks],
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
export function fingerprint(input: EntryInput): string {
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


function invalid(field: string, why: string) {
  return fieldError(field, why);
}

/** The entry's shape before anything is written: a cause, two or more non-zero lines, balanced per currency. */
function checkBalanced(input: EntryInput): void {
  if (!input.cause.cause.case) throw invalid("cause", "say what caused the entry");
  if (input.postings.length < 2) throw invalid("postings", "an entry needs at least two postings");
  const nets = new Map<string, bigint>();
  input.postings.forEach((p, i) => {
    if (!isUuid(p.accountId)) throw invalid(`postings[${i}].account_id`, "must be a UUID");
    if (p.amountMinor === 0n) throw invalid(`postings[${i}].amount`, "must not be zero");
    assertCurrency(p.currency, `postings[${i}].amount.currency`);
    nets.set(p.currency, (nets.get(p.currency) ?? 0n) + p.amountMinor);
  });
  for (const [currency, net] of nets) {
    if (net !== 0n) throw invalid("postings", `do not balance in ${currency}: debits and credits differ by ${net} minor units`);
  }
}

/**
 * System accounts this process has posted to. An account's kind (may_go_negative) is set once, when it
 * is made, so a system account stays one: its lines need no event. Bounded: past the limit, lines of
 * accounts not listed are encoded as before and dropped by the statement.
 */
const knownSystemAccounts = new Set<string>();
const KNOWN_SYSTEM_ACCOUNTS_MAX = 10_000;

export function rememberSystemAccounts(accountIds: string[] | null): void {
  for (const id of accountIds ?? []) if (knownSystemAccounts.size < KNOWN_SYSTEM_ACCOUNTS_MAX) knownSystemAccounts.add(id);
}

/**
 * Each line's wallet.credited/debited event without its owner and balance
 * after: the posting statement appends those (wallet.movement_event_tail) to
 * the lines of owned accounts and drops the others (system accounts keep no
 * balance and are not announced). Lines of known system accounts get none
 * (null): an owned line without one would fail the outbox's NOT NULL, never
 * go unannounced.
 */
export function movementEventHeads(entryId: string, causeId: string, postings: PostingInput[]): (BusMessage | null)[] {
  return postings.map((p) => {
    if (knownSystemAccounts.has(p.accountId)) return null;
    const init = { accountId: p.accountId, entryId, amount: money(p.amountMinor < 0n ? -p.amountMinor : p.amountMinor, p.currency), causeId };
    return p.amountMinor > 0n ? buildEvent("wallet", WalletCreditedSchema, init, causeId) : buildEvent("wallet", WalletDebitedSchema, init, causeId);
  });
}

// The SQL appends owner_id and balance_after by their field numbers (migration 0003): a contract that moved them would corrupt events.
for (const schema of [WalletCreditedSchema, WalletDebitedSchema]) {
  if (schema.field.ownerId.number !== 3 || schema.field.balanceAfter.number !== 6) throw new Error(`${schema.typeName}: owner_id must be field 3 and balance_after 6 (wallet.movement_event_tail)`);
}
if (MoneySchema.field.amountMinor.number !== 1 || MoneySchema.field.currency.number !== 2) throw new Error("Money: amount_minor must be field 1 and currency 2 (wallet.movement_event_tail)");

/**
 * Posts a balanced entry exactly once per idempotency key, in one statement
 * (postingStatement): run alone it is its own transaction, one round trip; inside a
 * caller's transaction it is one of its statements. A replay of a key already
 * committed is answered by the same statement (the first entry, read back).
 *
 * Owned accounts (worker wallets, venue pools) are locked in id order (no
 * deadlocks between entries that touch the same accounts) and their balances
 * moved in the statement that checks them, so concurrent postings never lose
 * an update; the database refuses a worker or pool balance below its holds.
 * System accounts stand on nearly every entry: locking them would serialise
 * the whole platform, so their balance is the sum of their postings instead
 * (see accountBalance).
 */
export async function postEntry(db: Queryable, input: EntryInput, claim: EntryClaim = "in-transaction"): Promise<PostResult> {
  return postPreparedEntry(db, preparedEntry(input), claim);
}

/**
 * How a posting statement claims its key. "in-transaction" (any caller): INSERT ... ON CONFLICT DO
 * NOTHING, which writes a confirmation record to the WAL after every insert it makes (speculative
 * insertion). "alone": for a statement that is its own transaction (run on the pool, not inside a
 * caller's): the insert runs only where no entry has the key, with no ON CONFLICT; an entry under
 * the key that commits while the statement waits on it fails the statement (23505, nothing
 * written) and it runs again as "in-transaction", whose snapshot then finds that entry (runPosting).
 */
export type EntryClaim = "in-transaction" | "alone";

/** The error of a statement that lost its key to an entry committed while it waited on it: it wrote nothing. */
function lostKeyRace(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string };
  return e.code === "23505" && e.constraint === "entries_idempotency_key_key";
}

/** postEntry for an entry preparedEntry has checked already (a batch's): not checked and fingerprinted again. */
export async function postPreparedEntry(db: Queryable, entry: PreparedEntry, claim: EntryClaim = "in-transaction"): Promise<PostResult> {
  const posted = await runPosting(db, entry, claim).catch((err: unknown) => {
    if (claim === "alone" && lostKeyRace(err)) return runPosting(db, entry, "in-transaction");
    throw err;
  });
  rememberSystemAccounts(posted.unannounced_accounts);
  return entryPosted(db, entry, posted);
}

/** An entry checked and ready for a posting statement: its new id and its request's fingerprint. */
export interface PreparedEntry {
  input: EntryInput;
  entryId: string;
  hash: string;
  conversions: FxConversion[];
}

/** The entry's shape checked (INVALID_ARGUMENT naming the field), before anything is written. */
export function preparedEntry(input: EntryInput): PreparedEntry {
  checkBalanced(input);
  const conversions = input.conversions ?? [];
  conversions.forEach((c, i) => {
    if (!c.from || !c.to) throw invalid(`conversions[${i}]`, "needs from and to amounts");
  });
  // In time order: entries_pkey and postings_pkey grow at their end; random ids wrote a full-page
  // image per entry after each checkpoint on a grown ledger (bench/wallet-entry-ids.ts).
  return { input, entryId: timeOrderedUuid(), hash: fingerprint(input), conversions };
}

/** What a posting statement did with one entry, as the entry's columns of its answer. */
export interface EntryPosting {
  claimed_entry_id: string | null;
  claimed_posted_at: Date | null;
  refused_line: number | null;
  refused_held: string | null;
  prior: EntryJson | null;
}

/** The entry posted, the first one under its key, or the refusal: as postEntry answers it, whether it was posted alone or in a batch. */
export async function entryPosted(db: Queryable, { input, entryId, hash }: PreparedEntry, posted: EntryPosting): Promise<PostResult> {
  if (posted.claimed_entry_id !== null) return { entry: journalEntryOf(entryId, input, posted.claimed_posted_at!), created: true };
  // Nothing was written (a refused line claims nothing either). A key already used answers as a replay
  // would, whatever the lines: the first entry, or ALREADY_EXISTS. The statement read it, unless it was
  // committed after the statement's snapshot (a concurrent first posting the claim waited for): read again.
  const prior = posted.prior !== null ? entryRowOfJson(posted.prior) : await entryRow(db, { key: input.idempotencyKey });
  if (prior) return replayedEntry(input, hash, prior);
  if (posted.refused_line !== null) throw refusedLine(input, posted.refused_line, posted.refused_held);
  throw new Error(`entry key ${input.idempotencyKey} was neither claimed nor found`);
}

/**
 * An entry as one row, as wallet.entry_read returns it (migration 0005): one statement per entry read.
 * Its columns named, not `*`, so the statements reading it are prepared (the runtime's db.ts).
 */
export const ENTRY_READ_COLUMNS = `entry_id, idempotency_key, request_hash, cause_kind, cause_ref, description, reversed_by, posted_at,
  accounts, amounts, currencies, memos, from_minor, from_currency, to_minor, to_currency, rate, rate_source, rate_time`;
interface EntryRow {
  entry_id: string;
  idempotency_key: string;
  request_hash: string;
  cause_kind: string;
  cause_ref: string;
  description: string;
  reversed_by: string | null;
  posted_at: Date;
  accounts: string[];
  amounts: string[];
  currencies: string[];
  memos: string[];
  from_minor: string[] | null;
  from_currency: string[] | null;
  to_minor: string[] | null;
  to_currency: string[] | null;
  rate: string[] | null;
  rate_source: string[] | null;
  rate_time: Date[] | null;
}

/** The entry with this id, or else this idempotency key, in one statement. */
async function entryRow(db: Queryable, by: { id: string } | { key: string }): Promise<EntryRow | undefined> {
  const { rows } = await db.query<EntryRow>(`SELECT ${ENTRY_READ_COLUMNS} FROM wallet.entry_read($1, $2)`, "id" in by ? [by.id, null] : [null, by.key]);
  return rows[0];
}

function entryOfRow(e: EntryRow): JournalEntry {
  return create(JournalEntrySchema, {
    entryId: e.entry_id,
    idempotencyKey: e.idempotency_key,
    cause: causeOf(e.cause_kind, e.cause_ref),
    postings: e.accounts.map((accountId, i) =>
      create(PostingSchema, { accountId, amount: money(BigInt(e.amounts[i]), e.currencies[i].trim()), memo: e.memos[i] }),
    ),
    conversions: (e.from_minor ?? []).map((from, i) =>
      create(FxConversionSchema, {
        from: money(BigInt(from), e.from_currency![i].trim()),
        to: money(BigInt(e.to_minor![i]), e.to_currency![i].trim()),
        rate: e.rate![i],
        rateSource: e.rate_source![i],
        rateTime: timestampFromDate(e.rate_time![i]),
      }),
    ),
    description: e.description,
    postedAt: timestampFromDate(e.posted_at),
    reversedByEntryId: e.reversed_by ?? "",
  });
}

/**
 * The whole posting. Its CTEs run in the order their data needs:
 * - refused: the first line whose account is missing or holds another currency; if any, nothing is written
 *   (postings have no foreign keys: this is what guarantees their accounts exist, migration 0006);
 * - claimed: the entry's header under its idempotency key (a repeat claims nothing, and then nothing moves; EntryClaim says how);
 * - prior: on a repeat, the key's entry (wallet.entry_read, answered as one JSON column; a replay costs this one statement);
 * - locked: the owned accounts, locked in id order: PostgreSQL's LockRows runs above the Sort, so the
 *   rows are locked in the order they are sorted (see SELECT, "The Locking Clause"); NO KEY UPDATE is the
 *   lock the UPDATE takes itself. Only where two owned accounts may be on the entry (lockAhead): with one,
 *   the UPDATE's own lock is the only one the statement takes, and no order is needed (one WAL record and
 *   a scan fewer: a tip, once the clearing and fee accounts are known as system ones);
 * - moved: their balances, checked by the table's constraint (available_not_negative);
 *   refused and moved name the lines' ids ($10) again, so the accounts are read by index and not scanned
 *   while the table is small enough for a scan to look cheaper to the planner;
 * - s: the posting sequence and time, taken after every lock is held (it counts moved first), so per
 *   account posted_seq follows the order balances really moved in (history order, pool periods);
 * - posted, announced, converted: the lines with each owned line's balance after, the owners' events
 *   (outbox, same transaction; its name quoted as the runtime spells it, so the commit wakes the
 *   relay: onOutboxCommitted), the FX conversions (a conversion without a rate time is dated at posting).
 * It also answers which lines' events were encoded for nothing (system accounts: rememberSystemAccounts).
 */
const postingStatement = (lockAhead: boolean, claim: EntryClaim) => `WITH lines AS (
  SELECT * FROM unnest($9::smallint[], $10::uuid[], $11::bigint[], $12::text[], $13::text[], $14::uuid[], $15::text[], $16::bytea[], $17::text[])
    AS t(line, account_id, amount_minor, currency, memo, event_id, subject, event_head, traceparent)),
refused AS (
  SELECT l.line, a.currency::text AS held
    FROM lines l LEFT JOIN (SELECT account_id, currency FROM wallet.accounts WHERE account_id = ANY($10::uuid[])) a ON a.account_id = l.account_id
   WHERE a.account_id IS NULL OR a.currency::text <> l.currency
   ORDER BY l.line LIMIT 1),
claimed AS (
  INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref, description, reverses_entry_id)
  SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM refused) ${claimCondition(claim, "$2")}
  ${claimConflict(claim)}
  RETURNING entry_id),
prior AS (
  SELECT ${ENTRY_READ_COLUMNS} FROM wallet.entry_read(NULL, $2) WHERE NOT EXISTS (SELECT 1 FROM claimed)),
${lockAhead ? `locked AS MATERIALIZED (
  SELECT a.account_id FROM wallet.accounts a
   WHERE a.account_id = ANY($10::uuid[]) AND NOT a.may_go_negative AND EXISTS (SELECT 1 FROM claimed)
   ORDER BY a.account_id
   FOR NO KEY UPDATE),
` : ""}moved AS (
  UPDATE wallet.accounts a SET balance_minor = a.balance_minor + d.delta,
    -- The debt allowance follows the balance: raised only by an entry allowed to
    -- (a lost chargeback), lowered by anything else, never raised by it.
    debt_allowed_minor = CASE WHEN $8::boolean THEN GREATEST(a.debt_allowed_minor, a.held_minor - (a.balance_minor + d.delta))
      ELSE LEAST(a.debt_allowed_minor, GREATEST(0, a.held_minor - (a.balance_minor + d.delta))) END
    FROM ${lockAhead ? "locked k JOIN " : ""}(SELECT account_id, sum(amount_minor)::bigint AS delta FROM lines GROUP BY account_id) d${lockAhead ? " ON d.account_id = k.account_id" : ""}
   WHERE ${lockAhead ? "a.account_id = k.account_id" : "a.account_id = d.account_id AND NOT a.may_go_negative AND EXISTS (SELECT 1 FROM claimed)"} AND a.account_id = ANY($10::uuid[])
  RETURNING a.account_id, a.owner_id, a.balance_minor - d.delta AS opening),
s AS (
  SELECT nextval('wallet.posting_seq') AS seq, clock_timestamp() AS posted_at
    FROM (SELECT count(*) FROM moved) m WHERE EXISTS (SELECT 1 FROM claimed)),
lines_after AS (
  SELECT l.line, l.account_id, l.amount_minor, l.currency, l.memo, l.event_id, l.subject, l.event_head, l.traceparent, mv.owner_id,
         (mv.opening + sum(l.amount_minor) OVER (PARTITION BY l.account_id ORDER BY l.line))::bigint AS balance_after
    FROM lines l LEFT JOIN moved mv ON mv.account_id = l.account_id),
posted AS (
  INSERT INTO wallet.postings (entry_id, line, account_id, amount_minor, currency, balance_after, memo, posted_seq, posted_at)
  SELECT c.entry_id, x.line, x.account_id, x.amount_minor, x.currency, x.balance_after, x.memo, s.seq, s.posted_at
    FROM claimed c, s, lines_after x),
announced AS (
  INSERT INTO ${ident("wallet")}.outbox (event_id, subject, payload, traceparent)
  SELECT x.event_id, x.subject, x.event_head || wallet.movement_event_tail(x.owner_id, x.balance_after, x.currency), x.traceparent
    FROM claimed c, lines_after x WHERE x.balance_after IS NOT NULL),
converted AS (
  INSERT INTO wallet.entry_conversions (entry_id, line, from_minor, from_currency, to_minor, to_currency, rate, rate_source, rate_time)
  SELECT c.entry_id, x.n - 1, x.from_minor, x.from_currency, x.to_minor, x.to_currency, x.rate, x.rate_source, coalesce(x.rate_time, s.posted_at)
    FROM claimed c, s,
         unnest($18::bigint[], $19::text[], $20::bigint[], $21::text[], $22::text[], $23::text[], $24::timestamptz[])
           WITH ORDINALITY AS x(from_minor, from_currency, to_minor, to_currency, rate, rate_source, rate_time, n))
SELECT (SELECT entry_id FROM claimed) AS claimed_entry_id, (SELECT posted_at FROM s) AS claimed_posted_at,
       (SELECT line FROM refused) AS refused_line, (SELECT held FROM refused) AS refused_held,
       (SELECT array_agg(DISTINCT x.account_id::text) FROM claimed c, lines_after x WHERE x.event_head IS NOT NULL AND x.balance_after IS NULL) AS unannounced_accounts,
       (SELECT row_to_json(p) FROM prior p) AS prior`;
const POSTING = {
  "in-transaction": { lockingAhead: postingStatement(true, "in-transaction"), oneOwner: postingStatement(false, "in-transaction") },
  alone: { lockingAhead: postingStatement(true, "alone"), oneOwner: postingStatement(false, "alone") },
};

/** A claiming INSERT ... SELECT's condition on the key `key` (an SQL expression), after its WHERE's own: "alone" inserts only where no entry has it. */
function claimCondition(claim: EntryClaim, key: string): string {
  return claim === "alone" ? `AND NOT EXISTS (SELECT 1 FROM wallet.entries x WHERE x.idempotency_key = ${key})` : "";
}
/** A claiming INSERT's conflict clause: "in-transaction" skips a conflict on the key. */
function claimConflict(claim: EntryClaim): string {
  return claim === "alone" ? "" : "ON CONFLICT (idempotency_key) DO NOTHING";
}

/**
 * The statement's one row: the posting's outcome and, on a repeat, the key's entry. The entry comes as one
 * JSON column, so a posting that claims its key (nearly all) answers six columns, not twenty-four that
 * the driver describes and parses on every call only for a replay's sake.
 */
interface PostingOutcome extends EntryPosting {
  unannounced_accounts: string[] | null;
}

/** An EntryRow as row_to_json writes it: its times as ISO 8601 text. */
export type EntryJson = Omit<EntryRow, "posted_at" | "rate_time"> & { posted_at: string; rate_time: string[] | null };

function entryRowOfJson(j: EntryJson): EntryRow {
  return { ...j, posted_at: new Date(j.posted_at), rate_time: j.rate_time?.map((t) => new Date(t)) ?? null };
}

async function runPosting(db: Queryable, { input, entryId, hash, conversions }: PreparedEntry, claim: EntryClaim): Promise<PostingOutcome> {
  const { postings } = input;
  const events = movementEventHeads(entryId, String(input.cause.cause.value), postings);
  const traceparent = currentTraceparent() ?? null;
  try {
    // Every account not known as a system one may be owned: the entry locks ahead unless one at most is.
    const mayBeOwned = new Set(postings.filter((p) => !knownSystemAccounts.has(p.accountId)).map((p) => p.accountId));
    const { rows } = await db.query<PostingOutcome>(mayBeOwned.size > 1 ? POSTING[claim].lockingAhead : POSTING[claim].oneOwner, [
      entryId, input.idempotencyKey, hash, input.cause.cause.case, String(input.cause.cause.value), input.description ?? "", input.reversesEntryId ?? null,
      input.allowOwnerDebt === true,
      postings.map((_, i) => i),
      postings.map((p) => p.accountId),
      postings.map((p) => p.amountMinor.toString()),
      postings.map((p) => p.currency),
      postings.map((p) => p.memo ?? ""),
      events.map((e) => e?.id ?? null),
      events.map((e) => e?.subject ?? null),
      events.map((e) => (e ? Buffer.from(e.data) : null)),
      events.map((e) => (e ? traceparent : null)),
      conversions.map((c) => c.from!.amountMinor.toString()),
      conversions.map((c) => c.from!.currency),
      conversions.map((c) => c.to!.amountMinor.toString()),
      conversions.map((c) => c.to!.currency),
      conversions.map((c) => c.rate),
      conversions.map((c) => c.rateSource),
      conversions.map((c) => (c.rateTime ? timestampDate(c.rateTime) : null)),
    ]);
    return rows[0];
  } catch (err) {
    if ((err as { constraint?: string }).constraint === "available_not_negative") {
      throw new InsufficientFundsError(`account ${refusedAccount(err, postings)}: available balance is too low for this entry`);
    }
    throw err;
  }
}

/** The account the balance check refused: the row PostgreSQL names (its first column is account_id), else the lines that take money out. */
function refusedAccount(err: unknown, postings: PostingInput[]): string {
  const named = /Failing row contains \(([0-9a-f-]{36}),/i.exec((err as { detail?: string }).detail ?? "")?.[1];
  return named ?? [...new Set(postings.filter((p) => p.amountMinor < 0n).map((p) => p.accountId))].join(" or ");
}

/** Why the statement refused line `line`: its account does not exist, or holds another currency. */
function refusedLine(input: EntryInput, line: number, held: string | null): Error {
  const p = input.postings[line];
  if (held === null) return new NotFoundError(`postings[${line}].account_id: no account ${p.accountId}`);
  return invalid(`postings[${line}].amount.currency`, `account ${p.accountId} holds ${held.trim()}, not ${p.currency}`);
}

/** A replay of the same request gets the entry posted first; a different request under the key is refused. */
function replayedEntry(input: EntryInput, hash: string, prior: EntryRow): PostResult {
  if (prior.request_hash !== hash) throw new IdempotencyConflictError(input.idempotencyKey, "journal entry");
  return { entry: entryOfRow(prior), created: false };
}

function journalEntryOf(entryId: string, input: EntryInput, postedAt: Date): JournalEntry {
  return create(JournalEntrySchema, {
    entryId,
    idempotencyKey: input.idempotencyKey,
    cause: input.cause,
    postings: input.postings.map((p) => create(PostingSchema, { accountId: p.accountId, amount: money(p.amountMinor, p.currency), memo: p.memo ?? "" })),
    conversions: input.conversions ?? [],
    description: input.description ?? "",
    postedAt: timestampFromDate(postedAt),
  });
}

/** One entry, in one statement. */
export async function loadEntry(db: Queryable, entryId: string): Promise<JournalEntry | undefined> {
  const row = await entryRow(db, { id: entryId });
  return row && entryOfRow(row);
}

/** The entry posted under this idempotency key, in one statement. */
export async function loadEntryByKey(db: Queryable, idempotencyKey: string): Promise<JournalEntry | undefined> {
  const row = await entryRow(db, { key: idempotencyKey });
  return row && entryOfRow(row);
}

/** The entries posted under these keys (each key's unique index), oldest first, in one statement; a key with none is left out. */
export async function entriesUnderKeys(db: Queryable, keys: string[]): Promise<JournalEntry[]> {
  const { rows } = await db.query<EntryRow>(
    `SELECT ${ENTRY_READ_COLUMNS} FROM unnest($1::text[]) AS k(key), LATERAL wallet.entry_read(NULL, k.key) ORDER BY posted_at, entry_id`, [keys]);
  return rows.map(entryOfRow);
}

export function causeOf(kind: string, ref: string): EntryCause {
  return create(EntryCauseSchema, { cause: { case: kind, value: ref } as EntryCause["cause"] });
}

/**
 * An entry taking money back (cause reversedEntryId) whose mirror would pay it out again: a pool split's reversal,
 * which freed the split's period (it may have been split again since: the same tips split twice; the venue splits
 * again), and a take-back payment posted for a tip's refund or reversal (by PostEntry, not by a reversal: the payer
 * has the money back, and its mirror paid the recipient again; payment undoes its own by the tip's flow). An
 * admin's reversal of another entry may be undone.
 */
async function refuseReversingATakeBack(db: Queryable, entryId: string): Promise<void> {
  const { rows: [r] } = await db.query<{ split: string | null; take_back: boolean }>(
    `SELECT (SELECT entry_id FROM wallet.pool_distributions WHERE reversal_entry_id = $1) AS split,
            (SELECT reverses_entry_id IS NULL FROM wallet.entries WHERE entry_id = $1) AS take_back`, [entryId]);
  if (r.split) throw new InvalidStateError(`entry_id: ${entryId} reverses pool split ${r.split}, whose period it freed; split the period again instead`);
  if (r.take_back) throw new InvalidStateError(`entry_id: ${entryId} took a tip's credit back for its refund (the payer has the money); it is not reversed in the ledger`);
}

/**
 * A hold's settlement (cause payoutId): M-Pesa paid the payout, and its mirror put the amount back in the wallet
 * while the hold stayed settled, to be withdrawn again. Payment's to undo, by the payout's own flow.
 */
async function refuseReversingAPaidPayout(db: Queryable, entryId: string): Promise<void> {
  const { rows } = await db.query<{ payout_id: string }>("SELECT payout_id FROM wallet.holds WHERE settle_entry_id = $1 LIMIT 1", [entryId]);
  if (rows[0]) throw new InvalidStateError(`entry_id: ${entryId} settled payout ${rows[0].payout_id}, which M-Pesa paid; it is not reversed in the ledger`);
}

/** The causes payment posts a tip's money under: its credit, then that tip's aftercare under the same cause. */
const TIP_CAUSES: ReadonlySet<string> = new Set(["tipAttemptId", "mpesaReceipt", "stripePaymentId"]);
const CLEARING_KINDS = [AccountKind.MPESA_CLEARING, AccountKind.STRIPE_CLEARING, AccountKind.PAYPAL_CLEARING];
const RECIPIENT_KINDS = [AccountKind.WORKER_WALLET, AccountKind.VENUE_POOL];

/**
 * A tip's entry that gives money back to the payer (it credits a provider's clearing: a card refund, a lost
 * dispute, a paybill refund from suspense) or takes it from the recipient (it debits a wallet or a pool: a dispute's
 * set-aside). Its mirror paid the recipient again for money the payer had back, or handed back what a dispute
 * holds. Payment undoes its own by the tip's flow. The tip's credits (to the recipient, to suspense, from suspense
 * on approval or a paybill match) stay an admin's to reverse.
 */
async function refuseReversingATipsTakeBack(db: Queryable, entryId: string, cause: { case: string; value: string }): Promise<void> {
  const { rows: [r] } = await db.query<{ takes_back: boolean | null }>(
    `SELECT bool_or((a.kind = ANY($2::smallint[]) AND p.amount_minor > 0) OR (a.kind = ANY($3::smallint[]) AND p.amount_minor < 0)) AS takes_back
       FROM wallet.postings p JOIN wallet.accounts a USING (account_id) WHERE p.entry_id = $1`,
    [entryId, CLEARING_KINDS, RECIPIENT_KINDS]);
  if (r?.takes_back) {
    throw new InvalidStateError(`entry_id: ${entryId} took the tip ${cause.case} ${cause.value} back from its recipient or gave it back to the payer (a refund, a dispute); payment undoes it by the tip's own flow, not the ledger`);
  }
}

/** Posts the mirror image of an entry, once; the database allows one reversal per entry. */
export async function reverseEntry(tx: Queryable, entryId: string, idempotencyKey: string, reason: string): Promise<PostResult> {
  const original = await loadEntry(tx, entryId);
  if (!original) throw new NotFoundError(`entry_id: no entry ${entryId}`);
  // Only these causes can take money back (a take-back, a tip's aftercare) or settle a hold: other entries need no look.
  const cause = original.cause?.cause;
  if (cause?.case === "reversedEntryId") await refuseReversingATakeBack(tx, entryId);
  if (cause?.case === "payoutId") await refuseReversingAPaidPayout(tx, entryId);
  if (cause?.case && TIP_CAUSES.has(cause.case)) await refuseReversingATipsTakeBack(tx, entryId, cause as { case: string; value: string });
  await lockForTransaction(tx, `wallet.reverse.${entryId}`);
  const existing = await tx.query<{ entry_id: string; idempotency_key: string }>(
    `SELECT entry_id, idempotency_key FROM wallet.entries WHERE reverses_entry_id = $1`,
    [entryId],
  );
  const prior = existing.rows[0];
  if (prior && prior.idempotency_key !== idempotencyKey) {
    throw new AlreadyReversedError(`entry ${entryId} was already reversed by ${prior.entry_id}`, { reversal_entry_id: prior.entry_id });
  }
  // A retry is answered with the reversal its key posted, whatever reason it gives now: the reason is the
  // description's words, and a caller whose first answer was lost (venue's split reversed, its record not
  // made) asking again in other words was refused as a different request, for good.
  if (prior) return { entry: (await loadEntry(tx, prior.entry_id))!, created: false };
  const reversal = await postEntry(tx, {
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
  // A reversed pool split no longer claims its period, whichever RPC reversed it (an admin's ReverseEntry
  // too), so the period can be split again. Splits alone have this cause (postPoolDistribution); run on a
  // replay as well, where it changes nothing.
  if (original.cause?.cause.case === "poolDistributionId") await tx.query(`UPDATE wallet.pool_distributions SET reversal_entry_id = $2 WHERE entry_id = $1 AND reversal_entry_id IS NULL`, [entryId, reversal.entry.entryId]);
  return reversal;
}
